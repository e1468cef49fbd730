"""Representation metrics on frozen features: linear CKA (per layer), linear-probe and k-NN accuracy.

All functions take feature arrays [n_examples, n_features] (and labels) that were computed once by
`Task.features`, and return numbers; nothing here runs a model.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import ConfigError, DataError, check


def _features(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim > 2:
        a = a.reshape(a.shape[0], -1)  # conv maps [n, C, H, W] -> [n, C*H*W]
    check(a.ndim == 2 and a.shape[0] >= 2, DataError,
          f"{name} must be [n_examples >= 2, n_features] (or [n, ...], flattened). Got shape {a.shape} instead.")
    check(bool(np.isfinite(a).all()), DataError, f"{name} contains nan/inf; check the model's features.")
    return a


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), Xc, Yc column-centred, same n rows.

    Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited" (ICML
    2019); google-research/google-research @ 10bf941a `representation_similarity/Demo.ipynb`
    (`feature_space_linear_cka`, biased HSIC). Uses the n x n Gram form when n < the feature count
    (same value). 1 for X vs X; invariant to orthogonal maps and isotropic scaling of either side.
    """
    a, b = _features(x, "x"), _features(y, "y")
    check(a.shape[0] == b.shape[0], DataError, f"CKA compares two representations of the same examples: "
          f"x has {a.shape[0]} rows and y has {b.shape[0]}. Compute both on the same inputs.")
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    if a.shape[0] < a.shape[1] + b.shape[1]:
        ka, kb = a @ a.T, b @ b.T
        num, nx, ny = float(np.sum(ka * kb)), float(np.linalg.norm(ka)), float(np.linalg.norm(kb))
    else:
        num = float(np.linalg.norm(b.T @ a) ** 2)
        nx, ny = float(np.linalg.norm(a.T @ a)), float(np.linalg.norm(b.T @ b))
    check(nx > 0 and ny > 0, DataError,
          "CKA is undefined for a representation that is constant over the examples (zero after centring); "
          "drop that layer or use more varied inputs.")
    return num / (nx * ny)


def cka_per_layer(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Linear CKA of each layer name present in both dicts of features (e.g. unlearned vs retrained)."""
    common = [k for k in a if k in b]
    check(len(common) > 0, DataError, f"No layer name is shared by both feature dicts ({sorted(a)} vs "
          f"{sorted(b)}); extract the same layers from both models.")
    return {k: linear_cka(a[k], b[k]) for k in common}


def _labelled(x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    f, lab = _features(x, f"{name} features"), np.asarray(y).ravel()
    check(len(lab) == len(f), DataError, f"{name}: {len(f)} feature rows but {len(lab)} labels; pass one label "
          "per row.")
    return f, lab


def _accuracies(clf, train_x: np.ndarray, train_y: np.ndarray,
                eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    fx, fy = _labelled(train_x, train_y, "train")
    check(len(np.unique(fy)) >= 2, DataError, "The probe needs at least two classes among the training labels.")
    clf.fit(fx, fy)
    out = {}
    for name, (ex, ey) in eval_sets.items():
        gx, gy = _labelled(ex, ey, name)
        check(gx.shape[1] == fx.shape[1], DataError, f"{name}: {gx.shape[1]} features, the probe was fitted on "
              f"{fx.shape[1]}; use features of the same layer.")
        out[name] = float(np.mean(clf.predict(gx) == gy))
    return out


def linear_probe_accuracy(train_x: np.ndarray, train_y: np.ndarray,
                          eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]], *, c: float = 1.0,
                          max_iter: int = 2000, standardize: bool = True) -> dict[str, float]:
    """Accuracy per held-out set of an L2 logistic regression (lbfgs, deterministic) fitted on frozen features.

    High forget-set accuracy after unlearning means the forgotten labels are still linearly decodable
    from the representation even if the head no longer predicts them.
    """
    check(c > 0 and max_iter >= 1, ConfigError, f"c must be > 0 and max_iter >= 1. Got {c}, {max_iter}.")
    lr = LogisticRegression(C=c, max_iter=max_iter)
    clf = make_pipeline(StandardScaler(), lr) if standardize else lr
    return _accuracies(clf, train_x, train_y, eval_sets)


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 *, k: int = 5, metric: str = "euclidean") -> dict[str, float]:
    """Accuracy per held-out set of a k-nearest-neighbour vote (scikit-learn) in the frozen feature space."""
    check(k >= 1, ConfigError, f"k must be >= 1. Got {k} instead.")
    check(k <= len(np.asarray(train_y).ravel()), DataError,
          f"k = {k} exceeds the {len(np.asarray(train_y).ravel())} training examples; lower k.")
    return _accuracies(KNeighborsClassifier(n_neighbors=k, metric=metric), train_x, train_y, eval_sets)
