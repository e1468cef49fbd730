"""Per-example outputs of one run, stored as an artifact so population metrics never re-run a model.

Every classifier run record carries `outputs`: the SHA-256 of an .npz holding, per evaluated split, the logits
(float32), the labels and the index of each example (its row in the training set for forget / retain, its row in
the split otherwise). Audits (LiRA, U-LiRA, RMIA, KLoM, the challenge score, the privacy score) read these.
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..errors import StoreError

FIELDS = ("logits", "labels", "index")


def split_index(data: Any, split: str, n: int) -> np.ndarray:
    """Row of each example of `split` in its source: training-set rows for forget / retain, 0..n-1 otherwise."""
    if split == "forget":
        return np.asarray(data.forget_idx, dtype=np.int64)
    if split == "retain":
        return np.asarray(data.retain_idx, dtype=np.int64)
    return np.arange(n, dtype=np.int64)


def pack(outs: dict[str, dict[str, np.ndarray]], data: Any) -> bytes:
    """The .npz bytes of per-split logits, labels and indices."""
    arrays: dict[str, np.ndarray] = {}
    for split, o in outs.items():
        logits = np.asarray(o["logits"], dtype=np.float32)
        arrays[f"{split}/logits"] = logits
        arrays[f"{split}/labels"] = np.asarray(o["labels"], dtype=np.int64)
        arrays[f"{split}/index"] = split_index(data, split, len(logits))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_outputs(store: Any, outs: dict[str, dict[str, np.ndarray]], data: Any) -> str:
    """Store the outputs of one run as an artifact; returns its digest (identical outputs are stored once)."""
    return store.put_bytes(pack(outs, data))


def load_outputs(store: Any, record_or_digest: dict | str) -> dict[str, dict[str, np.ndarray]]:
    """{split: {logits, labels, index}} of a stored run (its record, or the digest in its `outputs`)."""
    digest = record_or_digest.get("outputs") if isinstance(record_or_digest, dict) else record_or_digest
    if not digest:
        rid = record_or_digest.get("id", "?") if isinstance(record_or_digest, dict) else "?"
        raise StoreError(f"Run {rid} has no stored per-example outputs (it predates them or is a language-model "
                         "run); run it again (`unlearnlab run ... --no-resume`) to audit it.")
    with np.load(store.artifact_path(digest), allow_pickle=False) as z:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            split, field = key.split("/", 1)
            out.setdefault(split, {})[field] = z[key]
    return out


__all__ = ["FIELDS", "load_outputs", "pack", "save_outputs", "split_index"]
