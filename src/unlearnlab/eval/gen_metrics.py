"""Metrics of a class-conditional generator judged by a classifier: per-class judge accuracy on samples (UA on the
forgotten class), retained-class accuracy, and the Frechet distance in the judge's penultimate features per class.

The Frechet distance here is computed in the features of our small judge CNN, NOT in Inception-v3's: it is
comparable only between models scored by the same judge, never with published FID numbers.
"""
from __future__ import annotations

import numpy as np
import torch

from ..spec import FAST_CIFAR

JUDGE_ARCH = "cnn:width=16"
JUDGE_RECIPE = {"epochs": 15, "lr": 0.05, "batch_size": 64, "weight_decay": 5e-4}
# Per-dataset judges (arch, recipe) where the default one under-fits (tasks/diffusion_judge.judge_setup). On
# cifar10-dev-gen (16x16 RGB) `cnn:width=16` with JUDGE_RECIPE reached 56.3% real test accuracy (61.6% on train;
# 57.8% with 30 epochs and flips / 2-pixel crops); `fastcnn` with the cifar10-dev classifier recipe (FAST_CIFAR)
# 68.3% (docs/diffusion.md). fastcnn needs >= 16x16 images: smaller sizes keep the default judge.
DATASET_JUDGES: dict[str, tuple[str, dict]] = {"cifar10-dev-gen": ("fastcnn", FAST_CIFAR)}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets (rows = examples)."""
    import warnings

    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # few samples give a singular covariance: sqrtm warns, the value stays usable
        warnings.simplefilter("ignore", RuntimeWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():  # near-singular product: regularise as the reference FID code does
            eps = 1e-6 * np.eye(len(s_a))
            covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * np.real(covmean)))


@torch.no_grad()
def judge_outputs(judge: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, penultimate features) of the judge on images `x`."""
    judge.eval()
    device = next(judge.parameters()).device
    preds, feats = [], []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device)
        f = judge.features(xb)
        preds.append(judge.head(f).argmax(1).cpu())
        feats.append(f.cpu())
    return torch.cat(preds).numpy(), torch.cat(feats).numpy()


def judge_accuracy(judge: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Judge accuracy (%) on labelled images."""
    pred, _ = judge_outputs(judge, x)
    return float(100 * (pred == y.numpy()).mean())


def generation_metrics(pred: np.ndarray, feats: np.ndarray, labels: np.ndarray, real_feats: dict[int, np.ndarray],
                       forget: list[int], num_classes: int) -> tuple[dict[str, float], dict]:
    """Metrics and per-class details of samples whose intended classes are `labels` (judge `pred`, `feats`).

    UA = 100 - judge accuracy (%) on samples of the forgotten classes; RA = mean judge accuracy over retained
    classes; FD = mean Frechet distance (judge features) to the real images of each retained class; FD_forget the
    same on the forgotten classes (a larger value = farther from real forgotten-class images)."""
    acc = [_acc(pred[labels == c] == c) for c in range(num_classes)]
    counts = [np.bincount(pred[labels == c], minlength=num_classes).tolist() for c in range(num_classes)]
    kept = [c for c in range(num_classes) if c not in forget]
    fds, fd = class_fd(feats, labels, real_feats, forget, num_classes)
    metrics = {"UA": 100.0 - float(np.mean([acc[c] for c in forget])), "RA": float(np.nanmean([acc[c] for c in kept])),
               **fds}
    details = {"per_class_sample_acc": acc, "per_class_fd": fd, "judge_counts": counts,
               "samples_per_class": [int((labels == c).sum()) for c in range(num_classes)],
               "fd_note": "Frechet distance in the judge CNN's penultimate features, not Inception FID"}
    return metrics, details


def gap_metrics(metrics: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    """Avg.Gap to the retrained oracle over UA and RA (the sample-judge analogues of the classifier's gaps), or over
    UA, IRA and CRA for two-factor (canvas) metrics."""
    keys = ("UA", "IRA", "CRA") if "IRA" in metrics else ("UA", "RA")
    gaps = [abs(metrics[k] - ref[k]) for k in keys]
    return {"Avg.Gap": float(np.mean(gaps))}


def forgotten_factor(forget: list[int], n_objects: int, n_styles: int) -> tuple[str, int]:
    """('style', s) when `forget` is every condition of style s, ('object', o) when every condition of object o
    (labels y = o * n_styles + s); ValueError otherwise."""
    fs = sorted(set(int(c) for c in forget))
    for s in range(n_styles):
        if fs == [o * n_styles + s for o in range(n_objects)]:
            return "style", s
    for o in range(n_objects):
        if fs == [o * n_styles + s for s in range(n_styles)]:
            return "object", o
    raise ValueError(f"forget conditions {fs} are neither all conditions of one style nor of one object.")


def _acc(ok: np.ndarray) -> float:
    return float(100 * ok.mean()) if len(ok) else float("nan")


def canvas_metrics(obj_pred: np.ndarray, style_pred: np.ndarray, labels: np.ndarray, n_objects: int,
                   n_styles: int, forget: list[int]) -> tuple[dict[str, float], dict]:
    """UnlearnCanvas's UA / IRA / CRA (in %) from the object and style judges' predictions on samples whose intended
    conditions are `labels` (y = object * n_styles + style), for forgetting one style or one object.

    Style s forgotten: UA = 100 - style accuracy on samples of style s (all objects); IRA = mean style accuracy over
    the other styles; CRA = object accuracy on samples of the other styles. Object o forgotten: the same with the
    factors swapped (UA and IRA by the object judge, CRA = style accuracy on samples of the other objects)."""
    labels = np.asarray(labels)
    obj, sty = labels // n_styles, labels % n_styles
    obj_ok, sty_ok = np.asarray(obj_pred) == obj, np.asarray(style_pred) == sty
    per_style = [_acc(sty_ok[sty == s]) for s in range(n_styles)]
    per_object = [_acc(obj_ok[obj == o]) for o in range(n_objects)]
    factor, f = forgotten_factor(forget, n_objects, n_styles)
    own, own_acc, other_ok = (sty, per_style, obj_ok) if factor == "style" else (obj, per_object, sty_ok)
    metrics = {"UA": 100.0 - own_acc[f], "IRA": float(np.nanmean([a for i, a in enumerate(own_acc) if i != f])),
               "CRA": _acc(other_ok[own != f])}
    details = {"forgotten": {"factor": factor, "index": f},
               "per_style_sample_acc": per_style, "per_object_sample_acc": per_object,
               "per_condition_style_acc": [_acc(sty_ok[labels == c]) for c in range(n_objects * n_styles)],
               "per_condition_object_acc": [_acc(obj_ok[labels == c]) for c in range(n_objects * n_styles)],
               "style_judge_counts": [np.bincount(np.asarray(style_pred)[sty == s], minlength=n_styles).tolist()
                                      for s in range(n_styles)],
               "object_judge_counts": [np.bincount(np.asarray(obj_pred)[obj == o], minlength=n_objects).tolist()
                                       for o in range(n_objects)],
               "samples_per_condition": np.bincount(labels, minlength=n_objects * n_styles).tolist()}
    return metrics, details


def class_fd(feats: np.ndarray, labels: np.ndarray, real_feats: dict[int, np.ndarray], forget: list[int],
             num_classes: int) -> tuple[dict[str, float], list[float]]:
    """FD (mean over retained classes) and FD_forget (over forgotten ones) of judge features, and the per-class
    values: the Frechet distance between each class's samples and its real train images."""
    fd = [frechet_distance(feats[labels == c], real_feats[c]) if (labels == c).sum() > 1 and c in real_feats
          else float("nan") for c in range(num_classes)]
    kept = [c for c in range(num_classes) if c not in forget]
    return ({"FD": float(np.nanmean([fd[c] for c in kept])), "FD_forget": float(np.nanmean([fd[c] for c in forget]))},
            fd)


__all__ = ["DATASET_JUDGES", "JUDGE_ARCH", "JUDGE_RECIPE", "canvas_metrics", "class_fd", "forgotten_factor",
           "frechet_distance", "gap_metrics", "generation_metrics", "judge_accuracy", "judge_outputs"]
