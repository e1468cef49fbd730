"""Metrics of a class-conditional generator judged by a classifier: per-class judge accuracy on samples (UA on the
forgotten class), retained-class accuracy, and the Frechet distance in the judge's penultimate features per class.

The Frechet distance here is computed in the features of our small judge CNN, NOT in Inception-v3's: it is
comparable only between models scored by the same judge, never with published FID numbers.
"""
from __future__ import annotations

import numpy as np
import torch

JUDGE_ARCH = "cnn:width=16"
JUDGE_RECIPE = {"epochs": 15, "lr": 0.05, "batch_size": 64, "weight_decay": 5e-4}


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
    acc, fd, counts = [], [], []
    for c in range(num_classes):
        sel = labels == c
        acc.append(float(100 * (pred[sel] == c).mean()) if sel.any() else float("nan"))
        fd.append(frechet_distance(feats[sel], real_feats[c]) if sel.sum() > 1 and c in real_feats else float("nan"))
        counts.append(np.bincount(pred[sel], minlength=num_classes).tolist())
    kept = [c for c in range(num_classes) if c not in forget]
    metrics = {"UA": 100.0 - float(np.mean([acc[c] for c in forget])), "RA": float(np.nanmean([acc[c] for c in kept])),
               "FD": float(np.nanmean([fd[c] for c in kept])), "FD_forget": float(np.nanmean([fd[c] for c in forget]))}
    details = {"per_class_sample_acc": acc, "per_class_fd": fd, "judge_counts": counts,
               "samples_per_class": [int((labels == c).sum()) for c in range(num_classes)],
               "fd_note": "Frechet distance in the judge CNN's penultimate features, not Inception FID"}
    return metrics, details


def gap_metrics(metrics: dict[str, float], ref: dict[str, float]) -> dict[str, float]:
    """Avg.Gap to the retrained oracle over UA and RA (the sample-judge analogues of the classifier's gaps)."""
    gaps = [abs(metrics[k] - ref[k]) for k in ("UA", "RA")]
    return {"Avg.Gap": float(np.mean(gaps))}


__all__ = ["JUDGE_ARCH", "JUDGE_RECIPE", "frechet_distance", "gap_metrics", "generation_metrics", "judge_accuracy",
           "judge_outputs"]
