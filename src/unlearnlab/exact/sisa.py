"""SISA training (Bourtoule et al. 2021, "Machine Unlearning"): Sharded, Isolated, Sliced, Aggregated.

The data is split into S disjoint shards, each into R slices. Shard s's model is trained incrementally: stage r
trains on slices 0..r for e' = 2e/(R+1) epochs (the paper's equal-cost rule) and saves a checkpoint. Deleting a
record purges every checkpoint of its shard from its slice on and retrains only that shard from the checkpoint
before that slice, so the result is bit-for-bit the model trained without the record. Records are assigned to
(shard, slice) by a seeded hash of their id, so a fresh fit on the remaining records gives the same shards.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import config as C
from ..config import param
from ..data.core import ArrayDataset
from ..errors import ConfigError, DataError
from ..models.tasks import ClassifierTask
from ..models.zoo import build_model, data_init
from ..seeding import derive_seed
from ..train import TrainConfig, resolve_device, train
from .base import (
    STATE_FILE,
    DeletionScheme,
    as_numpy,
    check_labels,
    check_record_ids,
    load_arrays,
    read_state,
    register_scheme,
    save_arrays,
    save_resident,
    write_json,
)
from .sisa_io import (
    assign,
    ckpt_name,
    ckpt_path,
    clear_journal,
    load_state,
    purge_checkpoints,
    read_journal,
    save_state,
    softmax_np,
    stale_data_files,
    write_journal,
)


@dataclasses.dataclass(frozen=True)
class SISAConfig:
    """SISA layout and aggregation (Bourtoule et al. 2021, "Machine Unlearning", IEEE S&P)."""

    shards: int = param(5, "S: disjoint shards, one isolated model each (Bourtoule et al. 2021)", low=1)
    slices: int = param(4, "R: slices per shard; a checkpoint is saved after training on each", low=1)
    model: str = param("mlp:hidden=64", "model-zoo spec used for every shard (e.g. mlp, cnn:width=16)")
    aggregation: str = param("vote", "vote: majority of the shards' labels (the paper's default); "
                                     "mean: mean of the shards' probabilities", choices=("vote", "mean"))
    batch_predict: int = param(1024, "rows per forward pass at inference", low=1)


def stage_epochs(epochs: int, slices: int) -> int:
    """Epochs per slice stage, e' = 2e/(R+1), so sliced training costs about as much as e epochs unsliced."""
    return max(1, round(2 * epochs / (slices + 1)))


@register_scheme
class SISA(DeletionScheme):
    """S shard models over R slices each, per-slice checkpoints; deletion retrains one shard from one slice."""

    name = "sisa"
    guarantee = "exact"

    def __init__(self, directory: str | os.PathLike, cfg: SISAConfig | None = None, *,
                 recipe: TrainConfig | None = None, seed: int = 0, device: str = "cpu", num_classes: int | None = None,
                 **overrides: Any):
        super().__init__()
        self.cfg = cfg if cfg is not None else C.build(SISAConfig, overrides, what="sisa")
        if cfg is not None and overrides:
            self.cfg = dataclasses.replace(cfg, **overrides)
        self.recipe = recipe or TrainConfig(epochs=20, lr=0.05, batch_size=64)
        self.seed = int(seed)
        self.directory = Path(directory)
        self.device = resolve_device(device)
        self.on_stage: Callable[[int, int], None] | None = None  # called after each checkpoint write
        self.recovered: dict[str, Any] | None = None             # evidence of a deletion finished by load()
        self.num_classes = num_classes
        self._models: list[nn.Module] = []
        self._data_version = 0

    # -- data bookkeeping -------------------------------------------------------------------------
    @property
    def _data_file(self) -> str:
        return f"data-{self._data_version:06d}.safetensors"

    def _set_rows(self, x: torch.Tensor, y: np.ndarray, ids: list[str]) -> None:
        self._x, self._y, self._ids = x, y, ids
        self._pos = {r: i for i, r in enumerate(ids)}
        self._shard, self._slice = assign(ids, self.seed, self.cfg.shards, self.cfg.slices)

    def _stage_rows(self, shard: int, sl: int) -> np.ndarray:
        return np.flatnonzero((self._shard == shard) & (self._slice <= sl))

    def _new_model(self, shard: int) -> nn.Module:
        m = build_model(self.cfg.model, self.input_shape, self.num_classes, seed=derive_seed(self.seed, "shard", shard))
        return m.to(self.device)

    @property
    def task(self) -> ClassifierTask:
        """The classifier task used to train every shard."""
        return ClassifierTask(self.num_classes, self.device)

    # -- training -----------------------------------------------------------------------------------
    def _train_stage(self, model: nn.Module, shard: int, sl: int) -> None:
        idx = torch.as_tensor(self._stage_rows(shard, sl))
        if len(idx):
            cfg = dataclasses.replace(self.recipe, epochs=stage_epochs(self.recipe.epochs, self.cfg.slices))
            train(model, ArrayDataset(self._x[idx], torch.as_tensor(self._y[idx])), cfg, self.task, seed=self.seed,
                  key=f"sisa/shard{shard}/slice{sl}", what=f"SISA shard {shard} slice {sl}")
        model.eval()
        save_state(ckpt_path(self.directory, shard, sl), model)
        if self.on_stage is not None:
            self.on_stage(shard, sl)

    def _train_shard(self, shard: int, first: int) -> nn.Module:
        """Train shard `shard` from the checkpoint before slice `first` (or its initialisation) to the last slice."""
        model = self._new_model(shard)
        if first > 0:
            load_state(ckpt_path(self.directory, shard, first - 1), model)  # incl. a data-derived stem
        else:  # a data-dependent init (FastCNN's whitening) sees only the first slice, so a deletion stays exact
            rows = torch.as_tensor(self._stage_rows(shard, 0))
            if len(rows):
                data_init(model, ArrayDataset(self._x[rows], torch.as_tensor(self._y[rows])))
        for sl in range(first, self.cfg.slices):
            self._train_stage(model, shard, sl)
        return model

    def fit(self, x: Any, y: Any, record_ids: Sequence[str]) -> SISA:
        """Assign records to shards/slices by id hash, train every shard slice by slice, save all checkpoints."""
        xt = torch.as_tensor(as_numpy(x, np.float32))
        if xt.dim() < 2:
            raise DataError(f"x must have one row per record (shape [n, ...]); got shape {tuple(xt.shape)}.")
        ids = check_record_ids(record_ids, len(xt))
        labels, self.num_classes = check_labels(y, len(xt), self.num_classes)
        self.input_shape = tuple(xt.shape[1:])
        if self.directory.exists() and any(self.directory.iterdir()):
            raise ConfigError(f"SISA directory {self.directory} is not empty; fit into a new directory or "
                              "open the existing scheme with SISA.load().")
        self._set_rows(xt, labels, ids)
        self._models = [self._train_shard(s, 0) for s in range(self.cfg.shards)]
        save_arrays(self.directory / self._data_file, {"x": self._x, "y": self._y})
        self._write_state()
        return self

    # -- state -------------------------------------------------------------------------------------
    def _write_state(self) -> None:
        write_json(self.directory / STATE_FILE, {
            "scheme": self.name, "guarantee": self.guarantee, "config": dataclasses.asdict(self.cfg),
            "recipe": dataclasses.asdict(self.recipe), "seed": self.seed, "num_classes": self.num_classes,
            "input_shape": list(self.input_shape), "data_file": self._data_file, "records": self._ids,
            "deleted_hashes": sorted(self._deleted_hashes),
        })

    @property
    def records(self) -> list[str]:
        """Record ids currently held."""
        return list(getattr(self, "_ids", []))

    def shard_models(self) -> list[nn.Module]:
        """The current final model of every shard (index = shard id)."""
        self._require_fitted(bool(self._models))
        return self._models

    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Record -> the checkpoints of its shard from its slice on (they all saw it) and the stored data."""
        self._require_fitted(bool(self._models))
        present, _ = self._resolve(record_ids, self._pos, allow_deleted=False)
        out = {}
        for r in present:
            s, sl = int(self._shard[self._pos[r]]), int(self._slice[self._pos[r]])
            out[r] = [ckpt_name(s, k) for k in range(sl, self.cfg.slices)] + ["sisa/data"]
        return out

    def _plan(self, present: list[str]) -> dict[int, int]:
        """Shard -> earliest slice holding a record in `present` (each shard is retrained once)."""
        plan: dict[int, int] = {}
        for r in present:
            s, sl = int(self._shard[self._pos[r]]), int(self._slice[self._pos[r]])
            plan[s] = min(plan.get(s, sl), sl)
        return plan

    # -- deletion ----------------------------------------------------------------------------------
    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Journal the batch, drop the rows, purge tainted checkpoints, retrain each affected shard once."""
        t0 = time.perf_counter()
        self._require_fitted(bool(self._models))
        present, gone = self._resolve(record_ids, self._pos, allow_deleted=True)
        if not present:
            return self.evidence([], gone, t0, retrained_from_scratch=False, shards_retrained=[])
        plan = self._plan(present)
        write_journal(self.directory, {"op": "delete", "ids": present, "already_deleted": gone,
                                       "plan": {str(s): r for s, r in plan.items()}, "purged": []})
        return self._apply(read_journal(self.directory), t0)

    def _drop_rows(self, ids: list[str]) -> list[str]:
        """Write a new data version without `ids`, switch scheme.json to it, delete the old version."""
        if not ids:
            return []
        keep = np.ones(len(self._ids), dtype=bool)
        keep[[self._pos[r] for r in ids]] = False
        kidx = np.flatnonzero(keep)
        old = self.directory / self._data_file
        self._data_version += 1
        self._set_rows(self._x[torch.as_tensor(kidx)], self._y[kidx], [self._ids[i] for i in kidx])
        self._forget_ids(ids)
        save_arrays(self.directory / self._data_file, {"x": self._x, "y": self._y})
        self._write_state()
        old.unlink(missing_ok=True)
        return [str(old)]

    def _apply(self, journal: dict[str, Any], t0: float) -> dict[str, Any]:
        """Carry out (or finish after a crash) the journalled deletion; safe to repeat."""
        plan = {int(s): int(r) for s, r in journal["plan"].items()}
        purged = list(journal.get("purged", []))
        purged += self._drop_rows([r for r in journal["ids"] if r in self._pos])
        purged += purge_checkpoints(self.directory, plan, self.cfg.slices)
        write_journal(self.directory, {**journal, "purged": purged})
        retrained, samples = [], 0
        ep = stage_epochs(self.recipe.epochs, self.cfg.slices)
        for s, first in sorted(plan.items()):
            samples += ep * sum(len(self._stage_rows(s, k)) for k in range(first, self.cfg.slices))
            self._models[s] = self._train_shard(s, first)
            retrained += [ckpt_name(s, k) for k in range(first, self.cfg.slices)]
        clear_journal(self.directory)
        return self.evidence(list(journal["ids"]), list(journal.get("already_deleted", [])), t0,
                             artefacts_retrained=retrained, purged_files=purged, retrained_from_scratch=False,
                             shards_retrained=sorted(plan), restart_slice={str(s): r for s, r in plan.items()},
                             samples_retrained=samples)

    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Sample-epochs to retrain the affected shards vs retraining one unsharded model on all held data."""
        self._require_fitted(bool(self._models))
        present, _ = self._resolve(record_ids, self._pos, allow_deleted=True)
        plan = self._plan(present)
        gone = np.zeros(len(self._ids), dtype=bool)
        gone[[self._pos[r] for r in present]] = True
        ep = stage_epochs(self.recipe.epochs, self.cfg.slices)
        samples = ep * sum(int((~gone[self._stage_rows(s, k)]).sum()) for s, f in plan.items()
                           for k in range(f, self.cfg.slices))
        full = max(1, (len(self._ids) - len(present)) * self.recipe.epochs)
        return {"samples_to_retrain": samples, "shards": sorted(plan),
                "restart_slice": {str(s): r for s, r in plan.items()}, "relative_to_full": samples / full}

    # -- inference ---------------------------------------------------------------------------------
    def _active_shards(self) -> list[int]:
        counts = np.bincount(self._shard, minlength=self.cfg.shards)
        active = [s for s in range(self.cfg.shards) if counts[s] > 0]
        if not active:
            raise DataError("Every SISA shard is empty (all records were deleted); re-fit the scheme on new data.")
        return active

    @torch.no_grad()
    def predict_proba(self, x: Any) -> np.ndarray:
        """Aggregate the non-empty shards: label vote shares ('vote') or mean probabilities ('mean')."""
        self._require_fitted(bool(self._models))
        xt = torch.as_tensor(as_numpy(x, np.float32))
        if tuple(xt.shape[1:]) != tuple(self.input_shape):
            raise DataError(f"x rows have shape {tuple(xt.shape[1:])}; the scheme was trained on {self.input_shape}.")
        active = self._active_shards()
        out = np.zeros((len(xt), self.num_classes))
        for s in active:
            m = self._models[s].eval()
            logits = torch.cat([m(xt[i:i + self.cfg.batch_predict].to(self.device)).cpu()
                                for i in range(0, len(xt), self.cfg.batch_predict)])
            if self.cfg.aggregation == "vote":
                out[np.arange(len(xt)), logits.argmax(1).numpy()] += 1.0
            else:
                out += softmax_np(logits)
        return out / len(active)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """The scheme always lives on disk; saving elsewhere copies its directory (checkpoints, data, state)."""
        self._require_fitted(bool(self._models))
        save_resident(self, directory, "SISA")

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str = "cpu") -> SISA:
        """Open a saved scheme; a deletion interrupted by a crash is finished first (see `recovered`)."""
        d, st = read_state(directory, cls.name)
        self = cls(d, SISAConfig(**st["config"]), recipe=TrainConfig(**st["recipe"]), seed=st["seed"], device=device)
        self.num_classes, self.input_shape = int(st["num_classes"]), tuple(st["input_shape"])
        self._data_version = int(st["data_file"].split("-")[1].split(".")[0])
        stale = stale_data_files(d, st["data_file"])
        for p in stale:
            p.unlink()
        arrays = load_arrays(d / st["data_file"])
        self._set_rows(torch.from_numpy(arrays["x"].copy()), arrays["y"].astype(np.int64), list(st["records"]))
        self._deleted_hashes = set(st["deleted_hashes"])
        journal = read_journal(d)
        if journal is not None:
            journal["purged"] = list(journal.get("purged", [])) + [str(p) for p in stale]
            self._models = [self._new_model(s) for s in range(self.cfg.shards)]
            self.recovered = self._apply(journal, time.perf_counter())
        last = self.cfg.slices - 1
        self._models = [load_state(ckpt_path(d, s, last), self._new_model(s)).eval() for s in range(self.cfg.shards)]
        return self
