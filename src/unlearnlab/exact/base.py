"""Deletion-scheme contract: train with lineage, delete records exactly or with a certificate, persist safely."""
from __future__ import annotations

import abc
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError, UnlearnLabError
from ..models.checkpoint import atomic_write
from ..registry import Registry

GUARANTEES = ("exact", "certified", "empirical")
SCHEMES: Registry = Registry("deletion scheme", "unlearnlab.exact")
STATE_FILE = "scheme.json"


class UnknownRecordError(UnlearnLabError):
    """Some record ids are not held by the scheme (never trained on, or already deleted where that matters)."""

    def __init__(self, unknown: Iterable[str], *, held: int = 0, deleted: Iterable[str] = ()):
        self.unknown = list(unknown)
        self.deleted = list(deleted)
        show = ", ".join(repr(r) for r in self.unknown[:10])
        more = f" (and {len(self.unknown) - 10} more)" if len(self.unknown) > 10 else ""
        note = (f" {len(self.deleted)} of them were deleted earlier." if self.deleted else "")
        super().__init__(
            f"Unknown record id(s): {show}{more}.{note} The scheme holds {held} record(s), the ids given to fit() "
            "minus those deleted since; check the ids against scheme.records or the lineage recorded at training."
        )


class NotFittedError(UnlearnLabError):
    """The scheme is used before fit() (or load())."""


def register_scheme(cls: type[DeletionScheme]) -> type[DeletionScheme]:
    """Class decorator registering a DeletionScheme subclass under its `name`."""
    if cls.guarantee not in GUARANTEES:
        raise ConfigError(f"Scheme {cls.name!r} has guarantee {cls.guarantee!r}; it must be one of {GUARANTEES}.")
    SCHEMES.add(cls.name, cls)
    return cls


def load_scheme(directory: str | os.PathLike) -> DeletionScheme:
    """Re-open any saved scheme: reads `scheme.json` in `directory` and dispatches to the right class."""
    state = read_json(Path(directory) / STATE_FILE)
    if "scheme" not in state:
        raise DataError(f"{Path(directory) / STATE_FILE} has no 'scheme' field; it was not written by a scheme.")
    return SCHEMES.get(state["scheme"]).load(directory)


# ----------------------------------------------------------------------------- atomic files

def copy_scheme_dir(source: Path, target: str | os.PathLike, what: str) -> None:
    """Copy a directory-resident scheme to an empty `target` (atomically, without its pending journal)."""
    import shutil

    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} is not empty; save the {what} scheme into a new directory.")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    (tmp / "journal.json").unlink(missing_ok=True)
    if target.exists():
        target.rmdir()
    os.replace(tmp, target)


def read_state(directory: str | os.PathLike, scheme: str) -> tuple[Path, dict[str, Any]]:
    """(folder, scheme.json) of a saved scheme, checking it is a `scheme` one."""
    d = Path(directory)
    st = read_json(d / STATE_FILE)
    if st.get("scheme") != scheme:
        raise DataError(f"{d} holds a {st.get('scheme')!r} scheme, not {scheme!r}; use load_scheme().")
    return d, st


def save_resident(scheme: Any, directory: str | os.PathLike, what: str) -> None:
    """save() of a scheme that lives in its own folder: rewrite its state in place, or copy the folder."""
    target = Path(directory)
    if target.resolve() == scheme.directory.resolve():
        scheme._write_state()
        return
    copy_scheme_dir(scheme.directory, target, what)


def resave(scheme: Any, arrays_file: str) -> list[str]:
    """Re-save an in-memory scheme to the folder it was loaded from / saved to (none: nothing); the array file
    written, for the deletion evidence."""
    if scheme.directory is None:
        return []
    scheme.save(scheme.directory)
    return [str(scheme.directory / arrays_file)]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON."""
    return atomic_write(path, lambda t: Path(t).write_text(json.dumps(obj, indent=1, sort_keys=True)))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist; save the scheme there first (scheme.save(directory)).")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON ({e}); restore it from a backup or re-fit the scheme.") from None


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray | torch.Tensor]) -> Path:
    """Atomically write named arrays/tensors as safetensors (no pickle)."""
    from safetensors.torch import save_file

    tensors = {k: torch.as_tensor(np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v).detach().cpu()
               .contiguous() for k, v in arrays.items()}
    return atomic_write(path, lambda t: save_file(tensors, t))


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file into numpy arrays (dtype preserved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return {k: v.numpy() for k, v in load_file(str(path)).items()}
    except (SafetensorError, FileNotFoundError, OSError) as e:
        raise DataError(f"Cannot read arrays from {path}: {e}. Re-save or re-fit the scheme.") from None


# ----------------------------------------------------------------------------- input checks

def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy view/copy of a tensor, array or sequence."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_record_ids(record_ids: Sequence[str], n: int | None = None, *, unique: bool = True) -> list[str]:
    """Validate ids: strings, optionally unique and matching `n` rows; returns a list."""
    if isinstance(record_ids, str):
        raise DataError(f"record_ids must be a sequence of strings, not one string {record_ids!r}; wrap it in a list.")
    ids = [str(r) for r in record_ids]
    if n is not None and len(ids) != n:
        raise DataError(f"record_ids has {len(ids)} entries but the data has {n} rows; give one id per row.")
    if unique and len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = [r for r in ids if r in seen or seen.add(r)]
        raise DataError(f"record_ids must be unique; duplicated: {dup[:5]}. Give each training row its own id.")
    return ids


def id_hash(record_id: str) -> str:
    """SHA-256 of a record id: deleted ids are remembered only as hashes (for idempotent re-deletes)."""
    return hashlib.sha256(record_id.encode()).hexdigest()


class DeletionScheme(abc.ABC):
    """A training scheme whose deletions are exact or certified; see docs/deletion_cost.md for costs."""

    name: str = ""
    guarantee: str = "exact"

    def __init__(self) -> None:
        self._deleted_hashes: set[str] = set()

    # -- abstract API --------------------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, x: torch.Tensor | np.ndarray, y: Any, record_ids: Sequence[str]) -> DeletionScheme:
        """Train on rows `x`, labels `y`; record lineage record_id -> artefacts that saw it."""

    @abc.abstractmethod
    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Record id -> names of the artefacts (shards, slices, checkpoints, heads) that saw it."""

    @abc.abstractmethod
    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Remove all `record_ids` in one batch; return the evidence dict (see `evidence`)."""

    @abc.abstractmethod
    def predict_proba(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Class probabilities, shape [n, num_classes]."""

    @abc.abstractmethod
    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """What deleting `record_ids` would cost: samples to retrain, artefacts touched, fraction of a full refit."""

    @abc.abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Persist the scheme under `directory` (safetensors + JSON, atomic writes, never pickle)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | os.PathLike) -> DeletionScheme:
        """Re-open a scheme saved with `save`."""

    @property
    @abc.abstractmethod
    def records(self) -> list[str]:
        """Record ids currently held (trained on and not deleted)."""

    # -- shared behaviour ----------------------------------------------------------------------
    def predict(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """Predicted class per row."""
        return self.predict_proba(x).argmax(axis=1)

    def _require_fitted(self, fitted: bool) -> None:
        if not fitted:
            raise NotFittedError(f"The {self.name} scheme is not trained; call fit(x, y, record_ids) or load(dir).")

    def _resolve(self, record_ids: Sequence[str], held: dict[str, Any], *,
                 allow_deleted: bool) -> tuple[list[str], list[str]]:
        """Split ids into (held, already deleted); unknown ids raise UnknownRecordError listing them all."""
        ids = list(dict.fromkeys(check_record_ids(record_ids, unique=False)))
        present, gone, unknown = [], [], []
        for r in ids:
            if r in held:
                present.append(r)
            elif id_hash(r) in self._deleted_hashes:
                gone.append(r)
            else:
                unknown.append(r)
        if unknown or (gone and not allow_deleted):
            raise UnknownRecordError(unknown + ([] if allow_deleted else gone), held=len(held),
                                     deleted=[] if allow_deleted else gone)
        return present, gone

    def _forget_ids(self, ids: Iterable[str]) -> None:
        self._deleted_hashes.update(id_hash(r) for r in ids)

    def evidence(self, deleted: list[str], already: list[str], t0: float, **extra: Any) -> dict[str, Any]:
        """The evidence dict every delete() returns (scheme-specific keys go in `extra`)."""
        out: dict[str, Any] = {
            "scheme": self.name, "guarantee": self.guarantee, "deleted": list(deleted),
            "already_deleted": list(already), "artefacts_retrained": [], "purged_files": [],
            "seconds": time.perf_counter() - t0,
        }
        out.update(extra)
        return out



def extract_features(feature_fn: Callable[[torch.Tensor], torch.Tensor] | None, x: Any,
                     batch_size: int = 1024) -> np.ndarray:
    """Rows of `x` mapped through a frozen `feature_fn` (batched, no grad) as a float64 [n, d] array."""
    if feature_fn is None:
        arr = as_numpy(x, np.float64)
        if arr.ndim == 1:
            raise DataError(f"x must have one row per record (shape [n, ...]); got shape {arr.shape}.")
        return arr.reshape(len(arr), -1)
    xt = torch.as_tensor(as_numpy(x) if not isinstance(x, torch.Tensor) else x)
    if isinstance(feature_fn, torch.nn.Module):
        feature_fn.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(xt), batch_size):
            xb = xt[s:s + batch_size].float()
            outs.append(torch.as_tensor(feature_fn(xb)).reshape(len(xb), -1))
    if not outs:
        raise DataError("x is empty; give at least one row.")
    return torch.cat(outs).double().numpy()


def check_labels(y: Any, n: int, num_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Integer labels of length `n` in [0, num_classes); returns (labels, num_classes)."""
    yy = as_numpy(y)
    if yy.ndim != 1 or len(yy) != n:
        raise DataError(f"y must be a 1-D array of {n} class ids; got shape {yy.shape}.")
    if not np.issubdtype(yy.dtype, np.integer) and not np.all(np.equal(np.mod(yy, 1), 0)):
        raise DataError("y must hold integer class ids; got non-integer values.")
    yy = yy.astype(np.int64)
    k = int(num_classes) if num_classes else int(yy.max()) + 1
    if yy.min() < 0 or yy.max() >= k:
        raise DataError(f"class ids must lie in [0, {k}); got values from {yy.min()} to {yy.max()}.")
    return yy, k


__all__ = [
    "GUARANTEES",
    "SCHEMES",
    "STATE_FILE",
    "DeletionScheme",
    "NotFittedError",
    "UnknownRecordError",
    "as_numpy",
    "atomic_write",
    "check_labels",
    "check_record_ids",
    "extract_features",
    "id_hash",
    "load_arrays",
    "load_scheme",
    "read_json",
    "register_scheme",
    "save_arrays",
    "write_json",
]
