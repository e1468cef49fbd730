"""Analytic (closed-form) head over frozen features: ridge W = R XᵀY, exact deletion by a Woodbury downdate.

Zhuang et al. 2024, "Analytic Continual Unlearning" (ACU): keep R = (XᵀX + γI)⁻¹ in float64; forgetting rows
X_u, Y_u updates R ← R + R X_uᵀ (I − X_u R X_uᵀ)⁻¹ X_u R and W ← W − R_new X_uᵀ (Y_u − X_u W), which equals the
ridge solution refit without those rows, at a cost O(m·d² + m³) independent of the number N of rows kept.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from .. import config as C
from ..config import param
from ..errors import ConfigError, DataError
from .base import (
    STATE_FILE,
    DeletionScheme,
    check_labels,
    check_record_ids,
    extract_features,
    load_arrays,
    read_state,
    register_scheme,
    resave,
    save_arrays,
    write_json,
)

ARRAYS_FILE = "analytic_head.safetensors"
ARTEFACTS = ("analytic_head/W", "analytic_head/R", "analytic_head/features")


@dataclasses.dataclass(frozen=True)
class AnalyticHeadConfig:
    """Analytic ridge head (Zhuang et al. 2024, Analytic Continual Unlearning)."""

    gamma: float = param(1.0, "ridge regulariser γ in R = (XᵀX + γI)⁻¹ (ACU, Zhuang et al. 2024); must be > 0",
                         low=0.0)
    bias: bool = param(True, "append a constant 1 to every feature vector (an intercept row in W)")
    check: str = param("auto", "after each delete compare the downdated head with a refit without the rows: "
                               "on, off, or auto (on while N <= check_max_n)", choices=("auto", "on", "off"))
    check_max_n: int = param(5000, "largest N for which check='auto' runs the O(N·d²) refit check", low=0)


def _onehot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((len(y), k), dtype=np.float64)
    out[np.arange(len(y)), y] = 1.0
    return out


def ridge_fit(x: np.ndarray, y_onehot: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(R, W) with R = (XᵀX + γI)⁻¹ and W = R XᵀY, in float64 via a Cholesky factorisation."""
    d = x.shape[1]
    a = x.T @ x
    a[np.diag_indices(d)] += gamma
    cf = scipy.linalg.cho_factor(a, lower=True)
    r = scipy.linalg.cho_solve(cf, np.eye(d))
    r = (r + r.T) / 2
    return r, r @ (x.T @ y_onehot)


def woodbury_downdate(r: np.ndarray, w: np.ndarray, xu: np.ndarray, yu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove rows (xu, yu) from a ridge head: the ACU/Woodbury update of R and W (cost independent of N)."""
    rxt = r @ xu.T                                        # d x m
    k = np.eye(len(xu)) - xu @ rxt                         # I − X_u R X_uᵀ, positive definite when γ > 0
    r_new = r + rxt @ np.linalg.solve(k, rxt.T)
    r_new = (r_new + r_new.T) / 2
    w_new = w - r_new @ (xu.T @ (yu - xu @ w))
    return r_new, w_new


@register_scheme
class AnalyticHead(DeletionScheme):
    """Frozen feature extractor + ridge head; deletions are exact for the head (Woodbury downdate)."""

    name = "analytic_head"
    guarantee = "exact"

    def __init__(self, cfg: AnalyticHeadConfig | None = None, *, feature_fn: Callable | None = None,
                 num_classes: int | None = None, **overrides: Any):
        super().__init__()
        self.cfg = cfg if cfg is not None else C.build(AnalyticHeadConfig, overrides, what="analytic_head")
        if cfg is not None and overrides:
            self.cfg = dataclasses.replace(cfg, **overrides)
        if self.cfg.gamma <= 0:
            raise ConfigError(f"gamma must be > 0 so that XᵀX + γI is invertible. Got {self.cfg.gamma} instead.")
        self.feature_fn = feature_fn
        self.num_classes = num_classes
        self.directory: Path | None = None
        self._r: np.ndarray | None = None
        self._w: np.ndarray | None = None

    # -- training ----------------------------------------------------------------------------------
    def _design(self, feats: np.ndarray) -> np.ndarray:
        return np.hstack([feats, np.ones((len(feats), 1))]) if self.cfg.bias else feats

    def fit(self, x: Any, y: Any, record_ids: Sequence[str]) -> AnalyticHead:
        """Extract features of `x`, fit the ridge head in closed form, remember each record's row."""
        feats = extract_features(self.feature_fn, x)
        ids = check_record_ids(record_ids, len(feats))
        labels, self.num_classes = check_labels(y, len(feats), self.num_classes)
        self._x = self._design(feats)
        self._y = labels
        self._alive = np.ones(len(ids), dtype=bool)
        self._ids = ids
        self._row = {r: i for i, r in enumerate(ids)}
        self._r, self._w = ridge_fit(self._x, _onehot(labels, self.num_classes), self.cfg.gamma)
        return self

    def refit(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, W) refit from scratch on the rows currently held (the reference for the exactness check)."""
        self._require_fitted(self._r is not None)
        x, y = self._x[self._alive], self._y[self._alive]
        return ridge_fit(x, _onehot(y, self.num_classes), self.cfg.gamma)

    @property
    def W(self) -> np.ndarray:
        """Head weights [d(+1), num_classes] (float64)."""
        self._require_fitted(self._w is not None)
        return self._w

    @property
    def R(self) -> np.ndarray:
        """(XᵀX + γI)⁻¹ over the rows held (float64)."""
        self._require_fitted(self._r is not None)
        return self._r

    @property
    def records(self) -> list[str]:
        """Record ids currently held."""
        return [] if self._r is None else [r for r, a in zip(self._ids, self._alive, strict=True) if a]

    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every held record was seen by the head (W, R) and its feature row."""
        self._require_fitted(self._r is not None)
        present, _ = self._resolve(record_ids, self._row, allow_deleted=False)
        return {r: list(ARTEFACTS) for r in present}

    # -- deletion ----------------------------------------------------------------------------------
    def _check_enabled(self) -> bool:
        return self.cfg.check == "on" or (self.cfg.check == "auto" and int(self._alive.sum()) <= self.cfg.check_max_n)

    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Downdate R and W for all `record_ids` at once; optionally verify against a refit."""
        t0 = time.perf_counter()
        self._require_fitted(self._r is not None)
        present, gone = self._resolve(record_ids, self._row, allow_deleted=True)
        extra: dict[str, Any] = {"rows_downdated": len(present), "head_check_max_abs_diff": None,
                                 "downdate_seconds": 0.0}
        if not present:
            return self.evidence([], gone, t0, **extra)
        if len(present) >= int(self._alive.sum()):
            raise DataError(f"Deleting {len(present)} record(s) would leave the head with no training rows; "
                            "keep at least one record or discard the scheme.")
        rows = np.fromiter((self._row[r] for r in present), dtype=np.int64, count=len(present))
        t1 = time.perf_counter()
        self._r, self._w = woodbury_downdate(self._r, self._w, self._x[rows],
                                             _onehot(self._y[rows], self.num_classes))
        extra["downdate_seconds"] = time.perf_counter() - t1
        self._x[rows] = 0.0                                # the features of deleted rows are not kept
        self._alive[rows] = False
        for r in present:
            del self._row[r]
        self._forget_ids(present)
        if self._check_enabled():
            r_ref, w_ref = self.refit()
            extra["head_check_max_abs_diff"] = float(max(np.abs(self._w - w_ref).max(), np.abs(self._r - r_ref).max()))
        purged = resave(self, ARRAYS_FILE)
        return self.evidence(present, gone, t0, artefacts_retrained=list(ARTEFACTS[:2]), purged_files=purged,
                             **extra)

    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Flops of the downdate vs a closed-form refit; nothing is retrained by SGD."""
        self._require_fitted(self._r is not None)
        present, _ = self._resolve(record_ids, self._row, allow_deleted=True)
        m, d, n = len(present), self._x.shape[1], int(self._alive.sum())
        down = 3 * m * d * d + m ** 3 + 2 * m * d * self.num_classes
        full = n * d * d + d ** 3 + n * d * self.num_classes
        return {"samples_to_retrain": 0, "rows_downdated": m, "artefacts": list(ARTEFACTS[:2]),
                "flops": down, "relative_to_full": down / full}

    # -- inference ---------------------------------------------------------------------------------
    def decision_function(self, x: Any) -> np.ndarray:
        """Ridge scores X W for each class."""
        self._require_fitted(self._w is not None)
        feats = extract_features(self.feature_fn, x)
        if feats.shape[1] + int(self.cfg.bias) != self._w.shape[0]:
            raise DataError(f"x gives {feats.shape[1]} features but the head was fit on "
                            f"{self._w.shape[0] - int(self.cfg.bias)}; use the same feature extractor.")
        return self._design(feats) @ self._w

    def predict_proba(self, x: Any) -> np.ndarray:
        """Softmax of the ridge scores (the scores regress one-hot targets; the argmax is the prediction)."""
        s = self.decision_function(x)
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write analytic_head.safetensors (R, W, held features, labels) then scheme.json, atomically."""
        self._require_fitted(self._r is not None)
        d = Path(directory)
        keep = self._alive
        save_arrays(d / ARRAYS_FILE, {"R": self._r, "W": self._w, "X": self._x[keep], "y": self._y[keep]})
        write_json(d / STATE_FILE, {
            "scheme": self.name, "guarantee": self.guarantee, "config": dataclasses.asdict(self.cfg),
            "num_classes": self.num_classes, "records": self.records, "deleted_hashes": sorted(self._deleted_hashes),
        })
        self.directory = d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, feature_fn: Callable | None = None) -> AnalyticHead:
        """Re-open a saved head; pass the same `feature_fn` used at fit time to predict on raw inputs."""
        d, state = read_state(directory, cls.name)
        arrays = load_arrays(d / ARRAYS_FILE)
        self = cls(AnalyticHeadConfig(**state["config"]), feature_fn=feature_fn, num_classes=state["num_classes"])
        self._r, self._w, self._x, self._y = arrays["R"], arrays["W"], arrays["X"].copy(), arrays["y"]
        self._ids = list(state["records"])
        if len(self._ids) != len(self._x):
            raise DataError(f"{d}: {len(self._ids)} record ids but {len(self._x)} feature rows; the save is corrupt.")
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._row = {r: i for i, r in enumerate(self._ids)}
        self._deleted_hashes = set(state["deleted_hashes"])
        self.directory = d
        return self
