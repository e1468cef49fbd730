"""S3T (Chowdhury et al., ICLR 2025, "Towards Scalable Exact Machine Unlearning Using Parameter-Efficient
Fine-Tuning"): Sequence-aware Sharded Sliced Training of LoRA adapters on a frozen language model.

Records go to S shards x L slices by a seeded hash of their id (as in SISA). Each shard trains B orderings
("sequences") of its slices, the first B cyclic rotations of (0..L-1). Along a sequence, stage k adds one LoRA
adapter (by default on the k-th block of decoder layers from the top) and trains only it, on the slices at
positions 0..k of the sequence (the paper's S_{1:k}; `cumulative=False` uses slice k alone), with the adapters
of positions < k active and frozen. So the adapter at position k depends only on the slices at positions <= k.

Deleting a record in slice j deactivates, in every sequence of its shard, the adapter at j's position and all
later ones, and deletes their files: no training. Each shard serves its sequence with the longest surviving
prefix (ties: the lower sequence index); a shard whose sequences all lost position 0 serves the bare base
model. Inference averages the shards' next-token probabilities of the answer. The frozen base and its
tokenizer must not derive from deletable records (pass `texts` from a public corpus for the tiny model).
Deviations from the paper: no LoRA dropout, warm-up or gradient clipping (train.py has none); budgets B > L
(the paper's recursive rotations) are not offered.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import config as C
from ..config import param
from ..data.core import batches
from ..errors import ConfigError, DataError
from ..train import TrainConfig, resolve_device, train
from . import s3t_io as io
from .base import STATE_FILE, DeletionScheme, check_record_ids, read_state, register_scheme, write_json
from .sisa_io import assign

RECORDS = "s3t/records"


@dataclasses.dataclass(frozen=True)
class S3TConfig:
    """S3T layout and recipe (Chowdhury et al. 2025, ICLR; public code github.com/brcsomnath/S3T)."""

    shards: int = param(4, "S: disjoint shards, each with its own adapter stacks (S3T, as in SISA)", low=1)
    slices: int = param(4, "L: slices per shard = adapters per sequence (S3T LLM runs: 4)", low=1)
    sequences: int = param(4, "B: slice orderings trained per shard, cyclic rotations, 1 <= B <= L "
                              "(S3T's budget; B = L lets every slice lead one sequence)", low=1)
    model: str = param("smollm2", "frozen base LM: 'tiny[:opts]', 'smollm2', or a Hugging Face id / local folder")
    placement: str = param("layers", "layers: the adapter at position k adapts the k-th block of n_layers//L "
                                     "decoder layers from the top (S3T); all: every adapter adapts every layer",
                           choices=("layers", "all"))
    cumulative: bool = param(True, "stage k trains on the slices at positions 0..k (S3T: S_{1:k}); "
                                   "false: on the slice at position k only")
    lora_r: int = param(32, "LoRA rank (S3T Llama runs: 32)", low=1)
    lora_alpha: float = param(64.0, "LoRA alpha (S3T: 2 x rank)", low=0.0)
    rslora: bool = param(True, "rank-stabilised scaling alpha/sqrt(r) (S3T: use_rslora=True)")
    epochs: int = param(3, "epochs per stage (S3T instruction tuning: 3)", low=0)
    lr: float = param(2e-5, "AdamW peak learning rate, linear decay (S3T Llama: 2e-5; tiny models need ~3e-3)",
                      low=0.0)
    batch_size: int = param(16, "examples per step", low=1)
    weight_decay: float = param(0.001, "AdamW weight decay (S3T: 0.001)", low=0.0)
    max_length: int = param(256, "maximum tokens per QA example", low=8)
    store_base: bool = param(True, "copy the frozen base weights into the scheme directory; false stores only "
                                   "the tokenizer and re-loads the base by `model` spec (checked by fingerprint)")
    batch_predict: int = param(32, "rows per forward pass at inference", low=1)


def qa_rows(x: Any, y: Any) -> list[dict[str, Any]]:
    """Validated QA rows (dicts with 'question' and non-empty 'answer'); `y`, if given, replaces the answers."""
    x = getattr(x, "rows", x)  # a QADataset gives its raw rows
    rows = list(x) if not isinstance(x, (str, dict)) else None
    if rows is None or not rows or not all(isinstance(r, dict) and isinstance(r.get("question"), str) for r in rows):
        raise DataError("S3T trains on question/answer rows: x must be a non-empty list of dicts with 'question' "
                        "and 'answer' strings (e.g. unlearnlab.data.qa.generate_qa(...).rows).")
    if y is not None:
        answers = list(y)
        if len(answers) != len(rows) or not all(isinstance(a, str) for a in answers):
            raise DataError(f"y must be None or one answer string per row ({len(rows)}); got {len(answers)} values.")
        rows = [{**r, "answer": a} for r, a in zip(rows, answers, strict=True)]
    bad = [i for i, r in enumerate(rows) if not isinstance(r.get("answer"), str) or not r["answer"].strip()]
    if bad:
        raise DataError(f"Rows {bad[:5]} have no non-empty 'answer'; fill them in, pass y=answers, or drop them.")
    return rows


@register_scheme
class S3T(DeletionScheme):
    """Sharded, sliced LoRA adapter stacks on a frozen LM; deletion deactivates adapters and never trains."""

    name = "s3t"
    guarantee = "exact"

    def __init__(self, directory: str | os.PathLike, cfg: S3TConfig | None = None, *,
                 base: tuple[nn.Module, Any] | None = None, texts: Sequence[str] = (), seed: int = 0,
                 device: str = "cpu", **overrides: Any):
        super().__init__()
        self.cfg = cfg if cfg is not None else C.build(S3TConfig, overrides, what="s3t")
        if cfg is not None and overrides:
            self.cfg = dataclasses.replace(cfg, **overrides)
        io.cyclic_sequences(self.cfg.slices, self.cfg.sequences)  # validates B <= L early
        self.directory, self.seed, self.device = Path(directory), int(seed), resolve_device(device)
        self._given, self._texts = base, list(texts)
        self._pm: nn.Module | None = None
        self._where: dict[str, tuple[int, int]] = {}
        self.stage_seconds: dict[str, float] = {}
        self.recovered: list[str] = []  # stale adapter files purged by load() after a crash mid-deletion

    # -- layout ------------------------------------------------------------------------------------
    def _set_records(self, ids: list[str]) -> None:
        sh, sl = assign(ids, self.seed, self.cfg.shards, self.cfg.slices)
        self._where = {r: (int(a), int(b)) for r, a, b in zip(ids, sh, sl, strict=True)}

    def _art(self, s: int, b: int, k: int) -> str:
        return io.artefact(s, b, k, self._seq[b][k])

    def _alive_names(self, s: int, b: int) -> list[str]:
        return [io.peft_name(s, b, k) for k in range(self._alive[s][b])]

    def served(self) -> list[dict[str, Any]]:
        """Per shard: the sequence it serves (longest surviving prefix), its order, adapters, or 'base'."""
        self._require_fitted(self._pm is not None)
        out = []
        for s, alive in enumerate(self._alive):
            b = int(np.argmax(alive))
            out.append({"shard": s, "sequence": b, "order": self._seq[b], "adapters": alive[b],
                        "serving": "adapters" if alive[b] else "base",
                        "artefacts": [self._art(s, b, k) for k in range(alive[b])]})
        return out

    # -- training ----------------------------------------------------------------------------------
    def _base(self) -> tuple[nn.Module, Any]:
        if self._given is not None:
            model, tok = self._given
            return copy.deepcopy(model).float().eval(), tok
        spec = self.cfg.model
        if (spec == "tiny" or spec.startswith("tiny:")) and not self._texts:
            raise ConfigError("The tiny model's word vocabulary must come from a public corpus, not from records "
                              "that may be deleted: pass texts=[...] (e.g. generate_qa(...).texts()) or "
                              "base=(model, tokenizer).")
        from ..models.lm import load_lm

        return load_lm(spec, texts=self._texts)

    def _recipe(self) -> TrainConfig:
        c = self.cfg
        return TrainConfig(epochs=c.epochs, lr=c.lr, optimizer="adamw", weight_decay=c.weight_decay,
                           batch_size=c.batch_size, schedule="linear")

    def _train_stage(self, ds: Any, shard_of: np.ndarray, slice_of: np.ndarray, s: int, b: int, k: int) -> None:
        """Add the adapter at position k of sequence b of shard s and train it alone, earlier ones frozen."""
        t0 = time.perf_counter()
        name = io.peft_name(s, b, k)
        params = io.add_adapter(self._pm, name, self.cfg, self._blocks[k], self.seed)
        io.activate(self._pm, [io.peft_name(s, b, q) for q in range(k + 1)], train=name)
        used = self._seq[b][: k + 1] if self.cfg.cumulative else [self._seq[b][k]]
        idx = np.flatnonzero((shard_of == s) & np.isin(slice_of, used))
        if len(idx) and self.cfg.epochs > 0:
            train(self._pm, ds.subset(idx), self._recipe(), self._task, seed=self.seed, key=f"s3t/{name}",
                  params=params, what=f"S3T shard {s} sequence {b} position {k}")
        io.activate(self._pm, [])
        io.save_adapter(self._pm, name, io.adapter_path(self.directory, s, b, k))
        self.stage_seconds[self._art(s, b, k)] = time.perf_counter() - t0

    def _setup(self, model: nn.Module, tok: Any) -> None:
        from ..models.lm import LMTask

        self._tok, self._task = tok, LMTask(tok, self.device)
        self._blocks = io.layer_blocks(model.config.num_hidden_layers, self.cfg.slices, self.cfg.placement)
        self._pm = io.wrap(model.to(self.device), self.cfg, self.seed)

    def fit(self, x: Any, y: Any, record_ids: Sequence[str]) -> S3T:
        """Assign records to shards/slices, train every sequence of every shard stage by stage, save adapters."""
        from ..data.qa import QADataset

        rows = qa_rows(x, y)
        ids = check_record_ids(record_ids, len(rows))
        if self.directory.exists() and any(self.directory.iterdir()):
            raise ConfigError(f"S3T directory {self.directory} is not empty; fit into a new directory or open the "
                              "existing scheme with S3T.load().")
        model, tok = self._base()
        io.layer_blocks(model.config.num_hidden_layers, self.cfg.slices, self.cfg.placement)  # fail before writing
        self._spec = getattr(model, "unlearnlab_spec", self.cfg.model)
        self._digest = "" if self.cfg.store_base else io.fingerprint(model)
        self.directory.mkdir(parents=True, exist_ok=True)
        io.save_base(self.directory, model, tok, self.cfg.store_base)
        self._setup(model, tok)
        self._ids = ids
        self._set_records(ids)
        self._seq = io.cyclic_sequences(self.cfg.slices, self.cfg.sequences)
        self._alive = [[self.cfg.slices] * self.cfg.sequences for _ in range(self.cfg.shards)]
        ds = QADataset(rows, tok, max_length=self.cfg.max_length)
        shard_of = np.array([self._where[r][0] for r in ids])
        slice_of = np.array([self._where[r][1] for r in ids])
        for s in range(self.cfg.shards):
            for b in range(self.cfg.sequences):
                for k in range(self.cfg.slices):
                    self._train_stage(ds, shard_of, slice_of, s, b, k)
        self._write_state()
        return self

    # -- state -------------------------------------------------------------------------------------
    def _write_state(self) -> None:
        write_json(self.directory / STATE_FILE, {
            "scheme": self.name, "guarantee": self.guarantee, "config": dataclasses.asdict(self.cfg),
            "seed": self.seed, "spec": self._spec, "base_fingerprint": self._digest, "records": self._ids,
            "sequences": self._seq, "alive": self._alive, "stage_seconds": self.stage_seconds,
            "deleted_hashes": sorted(self._deleted_hashes),
        })

    @property
    def records(self) -> list[str]:
        """Record ids currently held (trained on and not deleted)."""
        return list(getattr(self, "_ids", []))

    @property
    def tokenizer(self) -> Any:
        """The frozen base model's tokenizer."""
        self._require_fitted(self._pm is not None)
        return self._tok

    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Record -> the live adapters that saw it (its slice's position onward, every sequence) + the record index."""
        self._require_fitted(self._pm is not None)
        present, _ = self._resolve(record_ids, self._where, allow_deleted=False)
        out = {}
        for r in present:
            s, j = self._where[r]
            out[r] = [self._art(s, b, k) for b, order in enumerate(self._seq)
                      for k in range(order.index(j), self._alive[s][b])] + [RECORDS]
        return out

    def _plan(self, present: list[str]) -> tuple[list[list[int]], list[tuple[int, int, int]]]:
        """Surviving prefix lengths after deleting `present`, and the (shard, sequence, position) adapters lost."""
        alive = [list(a) for a in self._alive]
        for r in present:
            s, j = self._where[r]
            for b, order in enumerate(self._seq):
                alive[s][b] = min(alive[s][b], order.index(j))
        lost = [(s, b, k) for s in range(self.cfg.shards) for b in range(self.cfg.sequences)
                for k in range(alive[s][b], self._alive[s][b])]
        return alive, lost

    # -- deletion ----------------------------------------------------------------------------------
    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Deactivate and purge every adapter that saw a deleted record; the state file is the commit point."""
        t0 = time.perf_counter()
        self._require_fitted(self._pm is not None)
        present, gone = self._resolve(record_ids, self._where, allow_deleted=True)
        alive, lost = self._plan(present)
        names = [self._art(*a) for a in lost]
        self._alive = alive
        drop = set(present)
        self._ids = [r for r in self._ids if r not in drop]
        for r in present:
            del self._where[r]
        self._forget_ids(present)
        self._write_state()
        purged = []
        for s, b, k in lost:
            path = io.adapter_path(self.directory, s, b, k)
            if path.exists():
                path.unlink()
                purged.append(str(path))
            self._pm.delete_adapter(io.peft_name(s, b, k))
        served = self.served()
        return self.evidence(present, gone, t0, purged_files=purged, adapters_deactivated=names, served=served,
                             base_only_shards=[d["shard"] for d in served if d["serving"] == "base"],
                             training_steps=0, retrain_seconds_avoided=sum(self.stage_seconds.get(n, 0.0)
                                                                           for n in names))

    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Adapters a deletion would deactivate (no training: nothing to retrain) and what each shard would serve."""
        self._require_fitted(self._pm is not None)
        present, _ = self._resolve(record_ids, self._where, allow_deleted=True)
        alive, lost = self._plan(present)
        names = [self._art(*a) for a in lost]
        return {"adapters_lost": len(lost), "adapters": names, "samples_to_retrain": 0, "training_steps": 0,
                "relative_to_full": 0.0, "shards": sorted({s for s, _, _ in lost}),
                "adapters_left": sum(map(sum, alive)), "base_only_shards_after": [s for s, a in enumerate(alive)
                                                                                  if max(a) == 0],
                "retrain_seconds_avoided": sum(self.stage_seconds.get(n, 0.0) for n in names)}

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def answer_token_probs(self, x: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Shard-averaged probability of each answer token [n, T-1] and the answer mask (1 on answer tokens)."""
        from ..data.qa import QADataset

        self._require_fitted(self._pm is not None)
        ds = QADataset(qa_rows(x, None), self._tok, max_length=self.cfg.max_length)
        groups: dict[tuple[str, ...], int] = {}
        for d in self.served():  # shards serving the same adapters (e.g. the bare base) share one forward pass
            key = tuple(self._alive_names(d["shard"], d["sequence"]))
            groups[key] = groups.get(key, 0) + 1
        probs, masks = [], []
        for batch in batches(ds, self.cfg.batch_predict):
            total = None
            for names, count in groups.items():
                io.activate(self._pm, list(names))
                nll, mask = self._task.token_nll(self._pm, batch)
                p = torch.exp(-nll) * mask * count
                total = p if total is None else total + p
            probs.append(total / self.cfg.shards)
            masks.append(mask)
        io.activate(self._pm, [])
        width = max(p.shape[1] for p in probs)
        pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
        return torch.cat([pad(p) for p in probs]).cpu(), torch.cat([pad(m) for m in masks]).cpu()

    def predict_proba(self, x: Any) -> np.ndarray:
        """[n, 2]: column 1 is the geometric mean over answer tokens of the shard-averaged token probability."""
        p, mask = self.answer_token_probs(x)
        logp = (torch.log(p.clamp_min(1e-30)) * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        q = torch.exp(logp).double().numpy()
        return np.stack([1.0 - q, q], axis=1)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """The scheme lives on disk; saving elsewhere copies its directory (base, adapters, state)."""
        self._require_fitted(self._pm is not None)
        target = Path(directory)
        if target.resolve() == self.directory.resolve():
            self._write_state()
            return
        if target.exists() and any(target.iterdir()):
            raise ConfigError(f"{target} is not empty; save an S3T scheme into a new directory.")
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.directory, tmp)
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str = "cpu") -> S3T:
        """Open a saved scheme; adapter files a crash left behind after a deletion are purged (see `recovered`)."""
        d, st = read_state(directory, cls.name)
        self = cls(d, S3TConfig(**st["config"]), seed=st["seed"], device=device)
        self._spec, self._digest = st["spec"], st["base_fingerprint"]
        self._ids, self._seq, self._alive = list(st["records"]), st["sequences"], st["alive"]
        self.stage_seconds, self._deleted_hashes = dict(st["stage_seconds"]), set(st["deleted_hashes"])
        self._set_records(self._ids)
        model, tok = io.load_base(d, self._spec, self.cfg.store_base, self._digest)
        self._setup(model, tok)
        keep = set()
        for s, row in enumerate(self._alive):
            for b, n in enumerate(row):
                for k in range(n):
                    path = io.adapter_path(d, s, b, k)
                    io.load_adapter(self._pm, io.peft_name(s, b, k), path, self.cfg, self._blocks[k], self.seed)
                    keep.add(path)
        for p in io.stale_adapters(d, keep):
            p.unlink()
            self.recovered.append(str(p))
        self._pm.eval()
        return self
