"""Certified removal (Guo, Goldstein, Hannun, van der Maaten 2020, "Certified Data Removal from ML Models").

L2-regularised logistic regression, one-vs-rest (K binary models, labels ±1) on frozen features scaled to
‖x‖ ≤ 1, trained on the perturbed objective L_b(w; D) = Σᵢ ℓ(wᵀxᵢ, yᵢ) + λn/2 ‖w‖² + bᵀw with b ~ N(0, σ²I).
Removing m rows takes one Newton step w ← w + H⁻¹Δ, Δ = mλw + Σᵤ ∇ℓ(wᵀxᵤ, yᵤ), H the Hessian of the remaining
objective. The data-dependent gradient-residual bound γ‖X‖₂‖H⁻¹Δ‖‖XH⁻¹Δ‖ (γ = 1/4) is accumulated over the
classes and removals; while it stays ≤ ε' = σε/c with c = sqrt(2 ln(1.5/δ)), each model is (ε, δ)-certified.
When a removal would exceed the budget, the model is retrained from scratch on fresh noise instead.
The certificate covers the linear model only: the frozen feature extractor must not have been trained on the
removable records (or must itself be differentially private, as in the paper's SVHN experiment).
Deviations: float64 scipy L-BFGS instead of torch L-BFGS; ‖X‖₂ from an exact eigenvalue (power iteration can
under-estimate it); the training gradient residual is counted against the budget (the paper assumes an exact optimum).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.optimize
from scipy.special import expit

from .. import config as C
from ..config import param
from ..errors import ConfigError, DataError
from ..seeding import numpy_rng
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

ARRAYS_FILE = "certified_logreg.safetensors"
ARTEFACTS = ("certified_logreg/w", "certified_logreg/features")
GAMMA = 0.25  # Lipschitz constant of the logistic loss's second derivative used by Guo et al.


@dataclasses.dataclass(frozen=True)
class CertifiedConfig:
    """Certified removal for logistic regression (Guo et al. 2020, ICML)."""

    lam: float = param(1e-3, "L2 strength λ in Σℓ + λn/2‖w‖² (Guo et al. 2020 use 1e-3 on MNIST)", low=0.0)
    sigma: float = param(10.0, "std σ of the objective perturbation b ~ N(0, σ²) (authors' code: --std 10)", low=0.0)
    epsilon: float = param(1.0, "ε of the (ε, δ)-certified removal guarantee (Guo et al. 2020: ε = 1)", low=0.0)
    delta: float = param(1e-4, "δ of the guarantee; c = sqrt(2 ln(1.5/δ)) (Guo et al. 2020: δ = 1e-4)",
                         low=0.0, high=1.0)
    normalize: bool = param(True, "scale every feature row to unit L2 norm (the paper assumes ‖x‖ ≤ 1)")
    max_iter: int = param(1000, "L-BFGS iterations at (re)training", low=1)
    tol: float = param(1e-10, "L-BFGS gradient tolerance on the per-example objective", low=0.0)


def budget(cfg: CertifiedConfig) -> float:
    """ε' = σε/c, the largest total gradient residual norm that keeps (ε, δ)-certified removal."""
    c = math.sqrt(2 * math.log(1.5 / cfg.delta))
    return cfg.sigma * cfg.epsilon / c


def ovr_targets(labels: np.ndarray, k: int) -> np.ndarray:
    """±1 one-vs-rest targets [n, k]."""
    y = -np.ones((len(labels), k))
    y[np.arange(len(labels)), labels] = 1.0
    return y


def ovr_gradient(w: np.ndarray, x: np.ndarray, y: np.ndarray, lam: float, b: np.ndarray) -> np.ndarray:
    """∇L_b(w; D) in the paper's sum form, one column per class."""
    return x.T @ (-expit(-y * (x @ w)) * y) + lam * len(x) * w + b


def train_ovr(x: np.ndarray, y: np.ndarray, lam: float, b: np.ndarray, max_iter: int,
              tol: float) -> tuple[np.ndarray, int]:
    """Minimise L_b jointly over the K classes (L-BFGS on the per-example objective, float64); (w, evaluations)."""
    n, d = x.shape
    k = y.shape[1]

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(d, k)
        m = y * (x @ w)
        f = np.logaddexp(0.0, -m).sum() + lam * n / 2 * (w * w).sum() + (b * w).sum()
        return f / n, (ovr_gradient(w, x, y, lam, b) / n).ravel()

    res = scipy.optimize.minimize(fun, np.zeros(d * k), jac=True, method="L-BFGS-B",
                                  options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-15, "maxcor": 20})
    return res.x.reshape(d, k), int(res.nfev)


def spectral_norm(gram: np.ndarray) -> float:
    """‖X‖₂ from XᵀX: the square root of its largest eigenvalue (exact, so the bound stays an upper bound)."""
    d = len(gram)
    top = scipy.linalg.eigh(gram, eigvals_only=True, subset_by_index=[d - 1, d - 1])[0]
    return math.sqrt(max(float(top), 0.0))


def newton_removal(w: np.ndarray, x_rem: np.ndarray, y_rem: np.ndarray, x_u: np.ndarray, y_u: np.ndarray,
                   lam: float, x_norm: float) -> tuple[np.ndarray, float]:
    """One Newton step removing (x_u, y_u) from every class; returns the new w and the summed residual bound."""
    w_new = w.copy()
    bound = 0.0
    n_rem = len(x_rem)
    for k in range(w.shape[1]):
        wk = w[:, k]
        delta = x_u.T @ (-expit(-y_u[:, k] * (x_u @ wk)) * y_u[:, k]) + len(x_u) * lam * wk
        s = expit(y_rem[:, k] * (x_rem @ wk))
        h = x_rem.T @ ((s * (1 - s))[:, None] * x_rem)
        h[np.diag_indices_from(h)] += lam * n_rem
        step = scipy.linalg.cho_solve(scipy.linalg.cho_factor(h, lower=True), delta)
        w_new[:, k] = wk + step
        bound += GAMMA * x_norm * float(np.linalg.norm(step)) * float(np.linalg.norm(x_rem @ step))
    return w_new, bound


@register_scheme
class CertifiedLogReg(DeletionScheme):
    """One-vs-rest logistic regression with objective perturbation; Newton-step removal, budgeted."""

    name = "certified_logreg"
    guarantee = "certified"

    def __init__(self, cfg: CertifiedConfig | None = None, *, feature_fn: Callable | None = None,
                 num_classes: int | None = None, seed: int = 0, **overrides: Any):
        super().__init__()
        self.cfg = cfg if cfg is not None else C.build(CertifiedConfig, overrides, what="certified_logreg")
        if cfg is not None and overrides:
            self.cfg = dataclasses.replace(cfg, **overrides)
        if self.cfg.lam <= 0 or self.cfg.sigma <= 0 or self.cfg.epsilon <= 0 or not 0 < self.cfg.delta < 1:
            raise ConfigError("lam, sigma and epsilon must be > 0 and delta in (0, 1) for a certified guarantee; "
                              f"got lam={self.cfg.lam}, sigma={self.cfg.sigma}, epsilon={self.cfg.epsilon}, "
                              f"delta={self.cfg.delta}.")
        self.feature_fn, self.num_classes, self.seed = feature_fn, num_classes, int(seed)
        self.directory: Path | None = None
        self.w: np.ndarray | None = None
        self.fit_evals = 0    # objective evaluations of the last (re)training (for cost estimates)
        self.spent = 0.0      # accumulated gradient-residual bound since the last (re)training
        self.draws = 0        # how many noise vectors b were drawn (one per (re)training)

    @property
    def budget(self) -> float:
        """ε' = σε/c."""
        return budget(self.cfg)

    # -- training ----------------------------------------------------------------------------------
    def _features(self, x: Any) -> np.ndarray:
        f = extract_features(self.feature_fn, x)
        norms = np.linalg.norm(f, axis=1)
        if self.cfg.normalize:
            return f / np.maximum(norms, 1e-12)[:, None]
        if norms.max(initial=0.0) > 1 + 1e-9:
            raise DataError(f"Feature rows must have L2 norm <= 1 for the certificate (max is {norms.max():.3g}); "
                            "set normalize=True or rescale the features.")
        return f

    def _retrain(self) -> None:
        """Fresh noise b, train on the held rows, count the training gradient residual against the budget."""
        d, k = self._x.shape[1], self.num_classes
        self.b = self.cfg.sigma * numpy_rng(self.seed, "certified-b", self.draws).standard_normal((d, k))
        self.draws += 1
        y = ovr_targets(self._y, k)
        self.w, self.fit_evals = train_ovr(self._x, y, self.cfg.lam, self.b, self.cfg.max_iter, self.cfg.tol)
        g = ovr_gradient(self.w, self._x, y, self.cfg.lam, self.b)
        self.spent = float(np.linalg.norm(g, axis=0).sum())  # conservative: the paper assumes an exact optimum
        self._gram = self._x.T @ self._x

    def fit(self, x: Any, y: Any, record_ids: Sequence[str]) -> CertifiedLogReg:
        """Normalise features, draw b, train the K one-vs-rest models on the perturbed objective."""
        self._x = self._features(x)
        self._ids = check_record_ids(record_ids, len(self._x))
        self._y, self.num_classes = check_labels(y, len(self._x), self.num_classes)
        self._row = {r: i for i, r in enumerate(self._ids)}
        self._retrain()
        return self

    @property
    def records(self) -> list[str]:
        """Record ids currently held."""
        return list(getattr(self, "_ids", []))

    def lineage(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """Every held record was seen by the weights and is kept as a feature row."""
        self._require_fitted(self.w is not None)
        present, _ = self._resolve(record_ids, self._row, allow_deleted=False)
        return {r: list(ARTEFACTS) for r in present}

    def gradient_residual(self) -> float:
        """‖∇L_b(w; D)‖ summed over classes on the rows held now (what the bound upper-bounds)."""
        self._require_fitted(self.w is not None)
        g = ovr_gradient(self.w, self._x, ovr_targets(self._y, self.num_classes), self.cfg.lam, self.b)
        return float(np.linalg.norm(g, axis=0).sum())

    def refit(self) -> np.ndarray:
        """Weights retrained on the held rows with the same noise b (the reference for the Newton step)."""
        self._require_fitted(self.w is not None)
        return train_ovr(self._x, ovr_targets(self._y, self.num_classes), self.cfg.lam, self.b,
                         self.cfg.max_iter, self.cfg.tol)[0]

    # -- deletion ----------------------------------------------------------------------------------
    def delete(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Newton-step removal of the batch; retrain from scratch when the (ε, δ) budget would be exceeded."""
        t0 = time.perf_counter()
        self._require_fitted(self.w is not None)
        present, gone = self._resolve(record_ids, self._row, allow_deleted=True)
        info = {"epsilon": self.cfg.epsilon, "delta": self.cfg.delta, "budget": self.budget}
        if not present:
            return self.evidence([], gone, t0, grad_residual_bound=0.0, budget_left=self.budget - self.spent,
                                 retrained_from_scratch=False, **info)
        rows = np.fromiter((self._row[r] for r in present), dtype=np.int64, count=len(present))
        if len(rows) >= len(self._ids):
            raise DataError("Deleting every record would leave no training data; keep at least one record.")
        keep = np.ones(len(self._ids), dtype=bool)
        keep[rows] = False
        x_u, y_u = self._x[rows], ovr_targets(self._y[rows], self.num_classes)
        self._gram -= x_u.T @ x_u
        x_rem, lab_rem = self._x[keep], self._y[keep]
        w_new, bound = newton_removal(self.w, x_rem, ovr_targets(lab_rem, self.num_classes), x_u, y_u,
                                      self.cfg.lam, spectral_norm(self._gram))
        self._x, self._y = x_rem, lab_rem
        self._ids = [r for r, k in zip(self._ids, keep, strict=True) if k]
        self._row = {r: i for i, r in enumerate(self._ids)}
        self._forget_ids(present)
        scratch = self.spent + bound > self.budget
        if scratch:
            self._retrain()
        else:
            self.w, self.spent = w_new, self.spent + bound
        purged = resave(self, ARRAYS_FILE)
        return self.evidence(present, gone, t0, artefacts_retrained=[ARTEFACTS[0]], purged_files=purged,
                             grad_residual_bound=bound, budget_spent=self.spent,
                             budget_left=self.budget - self.spent, retrained_from_scratch=scratch, **info)

    def cost_estimate(self, record_ids: Sequence[str]) -> dict[str, Any]:
        """Flops of the Newton step (K Hessians over the rows kept) vs the gradient evaluations of the last training."""
        self._require_fitted(self.w is not None)
        present, _ = self._resolve(record_ids, self._row, allow_deleted=True)
        n, d, k = len(self._ids) - len(present), self._x.shape[1], self.num_classes
        newton = k * (2 * n * d * d + d ** 3 / 3)
        full = 4 * self.fit_evals * (n + len(present)) * d * k
        return {"samples_to_retrain": 0, "newton_rows": n, "flops": newton, "budget_left": self.budget - self.spent,
                "worst_case_bound": 4 * GAMMA * len(present) ** 2 / (self.cfg.lam ** 2 * max(n, 1)) * k,
                "relative_to_full": newton / max(full, 1)}

    # -- inference ---------------------------------------------------------------------------------
    def decision_function(self, x: Any) -> np.ndarray:
        """Margins xᵀw_k of the K binary models."""
        self._require_fitted(self.w is not None)
        f = self._features(x)
        if f.shape[1] != self.w.shape[0]:
            raise DataError(f"x gives {f.shape[1]} features; the model was trained on {self.w.shape[0]}.")
        return f @ self.w

    def predict_proba(self, x: Any) -> np.ndarray:
        """The K one-vs-rest probabilities σ(xᵀw_k), renormalised to sum to one."""
        p = expit(self.decision_function(x))
        return p / p.sum(axis=1, keepdims=True)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write weights, noise, held features and labels (safetensors) then scheme.json, atomically."""
        self._require_fitted(self.w is not None)
        d = Path(directory)
        save_arrays(d / ARRAYS_FILE, {"w": self.w, "b": self.b, "X": self._x, "y": self._y})
        write_json(d / STATE_FILE, {
            "scheme": self.name, "guarantee": self.guarantee, "config": dataclasses.asdict(self.cfg),
            "num_classes": self.num_classes, "seed": self.seed, "spent": self.spent, "draws": self.draws,
            "fit_evals": self.fit_evals,
            "records": self._ids, "deleted_hashes": sorted(self._deleted_hashes),
        })
        self.directory = d

    @classmethod
    def load(cls, directory: str | os.PathLike, *, feature_fn: Callable | None = None) -> CertifiedLogReg:
        """Re-open a saved model; pass the `feature_fn` used at fit time to predict on raw inputs."""
        d, st = read_state(directory, cls.name)
        a = load_arrays(d / ARRAYS_FILE)
        self = cls(CertifiedConfig(**st["config"]), feature_fn=feature_fn, num_classes=st["num_classes"],
                   seed=st["seed"])
        self.w, self.b, self._x, self._y = a["w"], a["b"], a["X"], a["y"]
        self._ids = list(st["records"])
        self._row = {r: i for i, r in enumerate(self._ids)}
        self._deleted_hashes = set(st["deleted_hashes"])
        self.spent, self.draws, self.fit_evals = float(st["spent"]), int(st["draws"]), int(st.get("fit_evals", 0))
        self._gram = self._x.T @ self._x
        self.directory = d
        return self
