"""Approximate deletion: serve a classifier, apply an unlearning method per deletion batch, attach audit metrics.

The guarantee is *empirical*: nothing proves the served model equals one trained without the deleted records.
Each delete() therefore returns the audit of the evaluation layer as its evidence: UA / forget accuracy on the
deleted records, RA on the records kept, TA on a held-out audit set that was never trained on, MIA-Efficacy on
the deleted records (SVC protocol of Jia et al. 2023 / SalUn, eval/mia.py) beside the rate the same attack gives
the holdout itself, and, with reference="retrain", Avg.Gap and KL/JS to a model retrained without the records.

On disk (``directory``)::

    scheme.json                     the commit pointer: served version N, records held, deleted-id hashes
    models/model-vN.safetensors     the served model (one version live; older ones are purged)
    data/data-vN.safetensors        the rows held (the retain set of the next deletion)
    holdout.safetensors             the audit holdout (never trained on, never deleted from)
    journal.json                    a deletion in flight (ids, target version, staged evidence)

A deletion writes model-v(N+1) and data-v(N+1) atomically, stages its evidence in the journal, then switches
scheme.json to N+1 (the commit point), purges every older version and clears the journal. A crash before the
switch leaves version N served and load() re-runs the batch from N once (seeded, so the same result); a crash
after it only finishes the purge.
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
from ..data.core import ArrayDataset, UnlearnData
from ..errors import CheckpointError, ConfigError, DataError
from ..methods import MethodContext, get_method, run_method
from ..models.tasks import ClassifierTask
from ..models.zoo import build_model, data_init
from ..seeding import derive_seed
from ..train import TrainConfig, resolve_device, train
from .approximate_audit import audit, holdout_rows
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
from .sisa_io import clear_journal, read_journal, write_journal

HOLDOUT_FILE = "holdout.safetensors"
STATEMENT = ("Empirical guarantee only: the deleted records were removed with the approximate unlearning method "
             "named here, and nothing proves that the served model equals one trained without them. The audit "
             "metrics in this evidence (forget/retain/holdout accuracy, membership inference, and the gap to a "
             "retrained model when configured) are the only evidence of forgetting.")

Array = np.ndarray | torch.Tensor


@dataclasses.dataclass(frozen=True)
class ApproximateConfig:
    """Served model, unlearning method and audit settings of the approximate (empirical) deletion scheme."""

    method: str = param("salun", "registered unlearning method run on the served model for each deletion batch "
                                 "(default SalUn, Fan et al. 2024, ICLR; any classifier method of `unlearnlab "
                                 "methods` works)")
    model: str = param("mlp", "model-zoo spec of the served classifier (e.g. mlp, mlp:hidden=64, cnn:width=16)")
    reference: str = param("none", "audit oracle: 'retrain' trains a model from scratch without the deleted records "
                                   "and reports Avg.Gap (Fan et al. 2024), KL/JS and the strict attacks that need "
                                   "no population (privacy score, CKA, probe, relearning, head recovery) against "
                                   "it, at the cost of a full training per batch; 'none' skips it",
                     choices=("none", "retrain"))
    batch_predict: int = param(1024, "rows per forward pass at inference", low=1)


def _version_name(kind: str, v: int) -> str:
    return f"{kind}-v{v:06d}"


@register_scheme
class ApproximateScheme(DeletionScheme):
    """One served classifier; a deletion runs an unlearning method on it and reports the audit as evidence."""

    name = "approximate"
    guarantee = "empirical"

    def __init__(self, directory: str | os.PathLike, method: str = "salun",
                 method_overrides: dict[str, Any] | None = None, model: str = "mlp",
                 recipe: TrainConfig | None = None, audit_holdout: tuple[Array, Any] | None = None, *,
                 reference: str = "none", seed: int = 0, device: str = "cpu", num_classes: int | None = None,
                 batch_predict: int = 1024):
        super().__init__()
        self.cfg = C.build(ApproximateConfig, {"method": method, "model": model, "reference": reference,
                                               "batch_predict": batch_predict}, what="approximate")
        m = get_method(self.cfg.method)
        if "classifier" not in m.kinds:
            raise ConfigError(f"Method {m.name!r} works on {', '.join(m.kinds)} models, not classifiers; pick a "
                              "classifier method (see `unlearnlab methods`).")
        self.method_overrides = dict(method_overrides or {})
        C.build(m.config, self.method_overrides, what=m.name)  # fail early on a bad override
        self.recipe = recipe or TrainConfig(epochs=20, lr=0.05, batch_size=64)
        self.directory, self.seed, self.device = Path(directory), int(seed), resolve_device(device)
        self.num_classes = num_classes
        self.audit_holdout = audit_holdout
        self.on_stage: Callable[[str], None] | None = None  # test hook: called with "written", then "switched"
        self.recovered: dict[str, Any] | None = None        # evidence of a deletion finished by load()
        self._model: nn.Module | None = None
        self._version = 0

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def task(self) -> ClassifierTask:
        """The classifier task of the served model."""
        return ClassifierTask(self.num_classes, self.device)

    def _model_path(self, v: int) -> Path:
        return self.directory / "models" / f"{_version_name('model', v)}.safetensors"

    def _data_path(self, v: int) -> Path:
        return self.directory / "data" / f"{_version_name('data', v)}.safetensors"

    def _set_rows(self, x: torch.Tensor, y: np.ndarray, ids: list[str]) -> None:
        self._x, self._y, self._ids = x, y, ids
        self._pos = {r: i for i, r in enumerate(ids)}

    def _train_fresh(self, x: torch.Tensor, y: np.ndarray) -> nn.Module:
        """A zoo model trained from its seeded initialisation on (x, y): the fit, and the retrain oracle."""
        net = build_model(self.cfg.model, self.input_shape, self.num_classes, seed=self.seed).to(self.device)
        ds = ArrayDataset(x, torch.as_tensor(y))
        data_init(net, ds)
        return train(net, ds, self.recipe, self.task, seed=self.seed,
                     key="approximate/fit", what="approximate scheme training").eval()

    def _save_model(self, v: int, model: nn.Module) -> None:
        save_arrays(self._model_path(v), {k: t.detach().cpu() for k, t in model.state_dict().items()})

    def _load_model(self, v: int) -> nn.Module:
        net = build_model(self.cfg.model, self.input_shape, self.num_classes, seed=self.seed)
        state = {k: torch.from_numpy(a.copy()) for k, a in load_arrays(self._model_path(v)).items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{self._model_path(v)} does not match model {self.cfg.model!r} "
                                  f"({str(e).splitlines()[0]}); the scheme directory is damaged.") from None
        return net.to(self.device).eval()

    # -- training ----------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, record_ids: Sequence[str],
            holdout: tuple[Array, Any] | None = None) -> ApproximateScheme:
        """Train the served model on every record; keep `holdout` (or the constructor's audit_holdout) for audits.

        The holdout must be data the model never trains on (e.g. the test split); a slice of the records is not
        accepted, since its rows would later count as 'unseen' while the model had fitted them."""
        xt = torch.as_tensor(as_numpy(x, np.float32))
        if xt.dim() < 2:
            raise DataError(f"x must have one row per record (shape [n, ...]); got shape {tuple(xt.shape)}.")
        ids = check_record_ids(record_ids, len(xt))
        labels, self.num_classes = check_labels(y, len(xt), self.num_classes)
        self.input_shape = tuple(xt.shape[1:])
        hx, hy = holdout_rows(holdout if holdout is not None else self.audit_holdout, xt, self.num_classes)
        if self.directory.exists() and any(self.directory.iterdir()):
            raise ConfigError(f"Directory {self.directory} is not empty; fit into a new directory or open the "
                              "existing scheme with ApproximateScheme.load().")
        self._set_rows(xt, labels, ids)
        self._hx, self._hy = hx, hy
        self._model = self._train_fresh(xt, labels)
        save_arrays(self.directory / HOLDOUT_FILE, {"x": hx, "y": hy})
        self._save_model(0, self._model)
        save_arrays(self._data_path(0), {"x": xt, "y": labels})
        self._version = 0
        self._write_state()
        return self

    # -- state -------------------------------------------------------------------------------------
    def _write_state(self) -> None:
        """Atomically rewrite scheme.json: this is the switch that makes a version live."""
        write_json(self.directory / STATE_FILE, {
            "scheme": self.name, "guarantee": self.guarantee, "config": dataclasses.asdict(self.cfg),
            "method_overrides": self.method_overrides, "recipe": dataclasses.asdict(self.recipe),
            "seed": self.seed, "num_classes": self.num_classes, "input_shape": list(self.input_shape),
            "version": self._version, "records": self._ids, "deleted_hashes": sorted(self._deleted_hashes),
        })

    @property
    def records(self) -> list[str]:
        """Record ids currently held."""
        return list(getattr(self, "_ids", []))

    @property
    def version(self) -> int:
        """Version number of the served model (0 after fit, +1 per deletion batch)."""
        return self._version

    @property
    def model(self) -> nn.Module:
        """The served classifier (eval mode)."""
        self._require_fitted(self._model is not None)
        return self._model

    def artefacts(self) -> list[str]:
        """Names of the artefacts every held record reaches: the served model and the stored rows."""
        return [f"approximate/{_version_name('model', self._version)}",
                f"approximate/{_version_name('data', self._version)}"]

    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every held record -> the single served model version (and the stored copy of its row)."""
        self._require_fitted(self._model is not None)
        present, _ = self._resolve(record_ids, self._pos, allow_deleted=False)
        return {r: self.artefacts() for r in present}

    # -- deletion ----------------------------------------------------------------------------------
    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Journal the batch, unlearn it from the served model, audit, write version N+1, switch, purge N."""
        t0 = time.perf_counter()
        self._require_fitted(self._model is not None)
        present, gone = self._resolve(record_ids, self._pos, allow_deleted=True)
        if not present:
            return self.evidence([], gone, t0, guarantee_statement=STATEMENT, method=self.cfg.method, audit=None)
        if len(present) >= len(self._ids):
            raise DataError(f"Deleting {len(present)} record(s) would leave the model with no training records "
                            "(the retain set would be empty); keep at least one record or retire the model.")
        write_journal(self.directory, {"op": "delete", "ids": present, "already_deleted": gone,
                                       "from_version": self._version, "to_version": self._version + 1})
        return self._apply(read_journal(self.directory), t0)

    def _unlearn(self, ids: list[str], to: int) -> tuple[nn.Module, dict[str, Any]]:
        """Run the method with forget = `ids`, retain = the other held rows; return the new model and its audit."""
        forget = np.fromiter((self._pos[r] for r in ids), dtype=np.int64, count=len(ids))
        keep = np.ones(len(self._ids), dtype=bool)
        keep[forget] = False
        data = UnlearnData(ArrayDataset(self._x, torch.as_tensor(self._y)), ArrayDataset(self._hx,
                           torch.as_tensor(self._hy)), forget, np.flatnonzero(keep), self.num_classes,
                           name="approximate", scenario=f"deletion batch -> v{to}", input_shape=self.input_shape)
        ctx = MethodContext(seed=derive_seed(self.seed, "approximate/delete", to), recipe=self.recipe)
        t1 = time.perf_counter()
        new = run_method(self.cfg.method, self._model, data, self.task, self.method_overrides, ctx)
        method_s = time.perf_counter() - t1
        ref = None
        if self.cfg.reference == "retrain":
            ref = self._train_fresh(self._x[torch.as_tensor(data.retain_idx)], self._y[data.retain_idx])
        report = audit(new, self._model, data, self.task, reference=ref, recipe=self.recipe, seed=ctx.seed)
        report["method_seconds"] = method_s
        return new, report

    def _apply(self, journal: dict[str, Any], t0: float) -> dict[str, Any]:
        """Carry out (or finish after a crash) the journalled deletion; safe to repeat."""
        to, ids = int(journal["to_version"]), list(journal["ids"])
        if self._version != to:  # not switched yet: (re)compute version `to` from the live version
            new, report = self._unlearn(ids, to)
            keep = np.ones(len(self._ids), dtype=bool)
            keep[[self._pos[r] for r in ids]] = False
            kidx = np.flatnonzero(keep)
            x_new, y_new = self._x[torch.as_tensor(kidx)], self._y[kidx]
            self._save_model(to, new)
            save_arrays(self._data_path(to), {"x": x_new, "y": y_new})
            journal = {**journal, "audit": report}
            write_journal(self.directory, journal)
            self._hook("written")
            self._model, self._version = new, to          # the switch: in memory, then on disk
            self._set_rows(x_new, y_new, [self._ids[i] for i in kidx])
            self._forget_ids(ids)
            self._write_state()
            self._hook("switched")
        purged = sorted(set(journal.get("purged", [])) | set(self._purge_stale()))
        clear_journal(self.directory)
        return self.evidence(ids, list(journal.get("already_deleted", [])), t0,
                             artefacts_retrained=[f"approximate/{_version_name('model', to)}"], purged_files=purged,
                             guarantee_statement=STATEMENT, method=self.cfg.method,
                             method_config=C.to_dict(C.build(get_method(self.cfg.method).config,
                                                             self.method_overrides, what=self.cfg.method)),
                             model_version={"from": int(journal["from_version"]), "to": to},
                             audit=journal["audit"])

    def _hook(self, stage: str) -> None:
        if self.on_stage is not None:
            self.on_stage(stage)

    def _purge_stale(self) -> list[str]:
        """Delete every model/data file but the live version's (older versions derive from deleted records)."""
        live = {self._model_path(self._version).name, self._data_path(self._version).name}
        removed = []
        for sub in ("models", "data"):
            folder = self.directory / sub
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                if p.is_file() and p.name not in live:
                    p.unlink()
                    removed.append(str(p))
        return removed

    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Sample passes of the unlearning method (epochs x (|forget| + |retain|)) vs a full retrain."""
        self._require_fitted(self._model is not None)
        present, _ = self._resolve(record_ids, self._pos, allow_deleted=True)
        mcfg = C.build(get_method(self.cfg.method).config, self.method_overrides, what=self.cfg.method)
        epochs = int(getattr(mcfg, "epochs", 1) or 1)
        samples = epochs * len(self._ids) if present else 0
        full = max(1, (len(self._ids) - len(present)) * self.recipe.epochs)
        audit_samples = full if (present and self.cfg.reference == "retrain") else 0
        return {"samples_to_retrain": samples, "audit_samples": audit_samples, "artefacts": self.artefacts(),
                "relative_to_full": samples / full, "estimate": "method epochs x rows held"}

    # -- inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, x: Any) -> np.ndarray:
        """Softmax of the served model's logits, batched."""
        self._require_fitted(self._model is not None)
        xt = torch.as_tensor(as_numpy(x, np.float32))
        if tuple(xt.shape[1:]) != tuple(self.input_shape):
            raise DataError(f"x rows have shape {tuple(xt.shape[1:])}; the model was trained on {self.input_shape}.")
        bs = self.cfg.batch_predict
        logits = torch.cat([self._model(xt[i:i + bs].to(self.device)).cpu() for i in range(0, len(xt), bs)])
        return torch.softmax(logits.double(), dim=1).numpy()

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """The scheme lives on disk; saving elsewhere copies its directory (without any pending journal)."""
        self._require_fitted(self._model is not None)
        save_resident(self, directory, "approximate")

    @classmethod
    def load(cls, directory: str | os.PathLike, *, device: str = "cpu") -> ApproximateScheme:
        """Open a saved scheme; a deletion a crash interrupted is finished or re-run once (see `recovered`)."""
        d, st = read_state(directory, cls.name)
        cfg = st["config"]
        self = cls(d, cfg["method"], st["method_overrides"], cfg["model"], TrainConfig(**st["recipe"]),
                   reference=cfg["reference"], seed=st["seed"], device=device, num_classes=int(st["num_classes"]),
                   batch_predict=cfg["batch_predict"])
        self.input_shape, self._version = tuple(st["input_shape"]), int(st["version"])
        data, hold = load_arrays(self._data_path(self._version)), load_arrays(d / HOLDOUT_FILE)
        if len(data["y"]) != len(st["records"]):
            raise DataError(f"{d}: {len(st['records'])} record ids but {len(data['y'])} stored rows; the save is "
                            "corrupt. Restore it from a backup or re-fit the scheme.")
        self._set_rows(torch.from_numpy(data["x"].copy()), data["y"].astype(np.int64), list(st["records"]))
        self._hx, self._hy = torch.from_numpy(hold["x"].copy()), hold["y"].astype(np.int64)
        self._deleted_hashes = set(st["deleted_hashes"])
        self._model = self._load_model(self._version)
        journal = read_journal(d)
        if journal is not None:
            self.recovered = self._apply(journal, time.perf_counter())
        else:
            self._purge_stale()
        return self
