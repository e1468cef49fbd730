"""LiRA and U-LiRA: per-example Gaussian likelihood-ratio attacks from shadow-model statistics.

LiRA: Carlini, Chien, Nasr, Song, Terzis, Tramer, "Membership Inference Attacks From First Principles"
(IEEE S&P 2022); official code tensorflow/privacy @ 3d499e69 `research/mi_lira_2021/plot.py`
(`generate_ours`, `generate_ours_offline`, `sweep`, `do_plot`). U-LiRA: Hayes, Shumailov, Triantafillou,
Khalifa, Papernot, "Inexact Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy"
(arXiv 2403.01218): the same test with "trained then unlearned" shadows as the positive population and
"retrained without the example" shadows as the negative one (no official code was found).
Statistics are `population.logit_scaled_confidence`, [n_models, n_examples] or [n_models, n_examples,
n_augmentations]; a score is higher when the target looks more like the positive population.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.metrics import auc, roc_curve

from ..errors import ConfigError, DataError, check

STD_FLOOR = 1e-30
LOW_FPRS = (0.01, 0.001)


def _as3d(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    check(a.ndim in (2, 3), DataError, f"{name} must be [n_models, n_examples] or [n_models, n_examples, "
          f"n_augmentations]. Got shape {a.shape} instead.")
    return a[..., None] if a.ndim == 2 else a


def _fit(stats: np.ndarray, fix_variance: bool, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-example median and std over models (nan = model absent), or one pooled std when fix_variance."""
    counts = np.sum(~np.isnan(stats[..., 0]), axis=0)
    check(bool((counts >= 1).all()), DataError,
          f"Every example needs at least one {name} shadow model; {int((counts == 0).sum())} example(s) have "
          "none. Train more shadow models or drop those examples.")
    mu = np.nanmedian(stats, axis=0)
    sd = np.full_like(mu, np.nanstd(stats)) if fix_variance else np.nanstd(stats, axis=0)
    return mu, sd


def gaussian_lr_scores(target: np.ndarray, positive: np.ndarray | None, negative: np.ndarray, *,
                       fix_variance: bool = False, offline: str = "one_sided") -> np.ndarray:
    """Per (target model, example) score from Gaussians fitted per example to shadow statistics.

    Online (positive given): mean over augmentations of log N(x; mu+, s+) - log N(x; mu-, s-), with
    mu = median and s = std (ddof 0, + 1e-30) over shadows, as `generate_ours`. Offline (positive None):
    offline="one_sided" (paper): log Phi((x - mu-) / s-), large x = positive; offline="pdf" (released
    `generate_ours_offline`): -log N(x; mu-, s-). fix_variance pools one std over all examples per
    population (the code's online variant pools the IN std for both; here each population has its own).
    Shadows absent for an example are nan. Deviation: all available shadows are used per example; the
    code truncates every example to the smallest count.
    """
    check(offline in ("one_sided", "pdf"), ConfigError,
          f"offline must be 'one_sided' (paper) or 'pdf' (released code). Got {offline!r} instead.")
    x = _as3d(target, "target")
    neg = _as3d(negative, "negative shadows")
    check(neg.shape[1:] == x.shape[1:], DataError, f"shadow and target statistics must share [n_examples, "
          f"n_augmentations]. Got {neg.shape[1:]} and {x.shape[1:]} instead.")
    mu_n, sd_n = _fit(neg, fix_variance, "negative")
    if positive is None:
        if offline == "pdf":
            return -norm.logpdf(x, mu_n, sd_n + STD_FLOOR).mean(axis=2)
        return norm.logcdf((x - mu_n) / (sd_n + STD_FLOOR)).mean(axis=2)
    pos = _as3d(positive, "positive shadows")
    check(pos.shape[1:] == x.shape[1:], DataError, f"shadow and target statistics must share [n_examples, "
          f"n_augmentations]. Got {pos.shape[1:]} and {x.shape[1:]} instead.")
    mu_p, sd_p = _fit(pos, fix_variance, "positive")
    return (norm.logpdf(x, mu_p, sd_p + STD_FLOOR) - norm.logpdf(x, mu_n, sd_n + STD_FLOOR)).mean(axis=2)


def lira_scores(target: np.ndarray, shadow: np.ndarray, keep: np.ndarray, *, online: bool = True,
                fix_variance: bool = False, offline: str = "one_sided") -> np.ndarray:
    """LiRA membership scores [n_targets, n_examples]; keep[k, i] = example i was in shadow k's training set."""
    s = _as3d(shadow, "shadow")
    kp = np.asarray(keep, dtype=bool)
    check(kp.shape == s.shape[:2], DataError, f"keep must be [n_shadow, n_examples] = {s.shape[:2]}. "
          f"Got {kp.shape} instead.")
    members = np.where(kp[..., None], s, np.nan)
    non_members = np.where(kp[..., None], np.nan, s)
    return gaussian_lr_scores(target, members if online else None, non_members,
                              fix_variance=fix_variance, offline=offline)


def ulira_scores(target: np.ndarray, unlearned_shadow: np.ndarray, retrained_shadow: np.ndarray, *,
                 online: bool = True, fix_variance: bool = False, offline: str = "one_sided") -> np.ndarray:
    """U-LiRA scores [n_targets, n_examples]: high = the target looks "trained then unlearned", not retrained.

    unlearned_shadow / retrained_shadow: statistics of shadows that saw the example and unlearned it with
    the same method and hyper-parameters as the target, and of shadows never trained on it (nan where a
    shadow does not qualify for an example).
    """
    return gaussian_lr_scores(target, unlearned_shadow if online else None, retrained_shadow,
                              fix_variance=fix_variance, offline=offline)


def rmia_scores(target_x: np.ndarray, ref_x: np.ndarray, target_z: np.ndarray, ref_z: np.ndarray, *,
                gamma: float = 1.0, offline_a: float | None = None) -> np.ndarray:
    """RMIA scores of one target model (Zarifzadeh, Liu, Shokri, ICML 2024): per example x, the fraction of
    population points z with LR(x, z) = (p(x|target) / Pr(x)) / (p(z|target) / Pr(z)) >= gamma.

    target_x [n] / target_z [m]: p(true label) under the target for the audited and the population points;
    ref_x [R, n] / ref_z [R, m]: the same under reference models (nan = a reference excluded for that point).
    Pr(.) = mean over references (online: IN and OUT references). With `offline_a` (OUT references only), Pr(x) =
    0.5 * ((1 + a) * mean_OUT + (1 - a)) as the paper's offline approximation; the population z keeps the plain mean.
    """
    tx, tz = np.asarray(target_x, dtype=np.float64), np.asarray(target_z, dtype=np.float64)
    rx, rz = np.asarray(ref_x, dtype=np.float64), np.asarray(ref_z, dtype=np.float64)
    check(tx.ndim == 1 and tz.ndim == 1 and rx.shape[1:] == tx.shape and rz.shape[1:] == tz.shape and len(tz),
          DataError, f"rmia_scores needs target_x [n], ref_x [R, n], target_z [m], ref_z [R, m]. Got {tx.shape}, "
          f"{rx.shape}, {tz.shape}, {rz.shape}.")
    check(gamma > 0, ConfigError, f"gamma must be > 0. Got {gamma}.")
    pr_x = np.nanmean(rx, axis=0)
    if offline_a is not None:
        check(0.0 < offline_a <= 1.0, ConfigError, f"offline_a must be in (0, 1]. Got {offline_a}.")
        pr_x = 0.5 * ((1 + offline_a) * pr_x + (1 - offline_a))
    ratio_x = tx / np.maximum(pr_x, 1e-300)
    ratio_z = np.sort(tz / np.maximum(np.nanmean(rz, axis=0), 1e-300))
    # LR(x, z) >= gamma  <=>  ratio_z <= ratio_x / gamma
    return np.searchsorted(ratio_z, ratio_x / gamma, side="right") / len(ratio_z)


def attack_metrics(scores: np.ndarray, labels: np.ndarray, fprs: tuple[float, ...] = LOW_FPRS) -> dict[str, float]:
    """AUC, balanced accuracy and TPR at low FPR of a score (higher = positive) against 0/1 labels.

    As `plot.py:sweep`/`do_plot`: sklearn roc_curve; acc = max(1 - (FPR + 1 - TPR) / 2); TPR@f is the
    TPR of the last ROC point with FPR strictly below f (a step, not an interpolation; 0 if none).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    check(s.shape == y.shape and y.any() and (~y).any(), DataError,
          f"attack_metrics needs one label per score and both classes present. Got {s.shape} scores, "
          f"{y.shape} labels with {int(y.sum())} positives.")
    check(bool(np.isfinite(s).all()), DataError, "attack scores contain nan/inf; check the shadow statistics.")
    fpr, tpr, _ = roc_curve(y, s)
    out = {"auc": float(auc(fpr, tpr)), "accuracy": float(np.max(1 - (fpr + (1 - tpr)) / 2))}
    for f in fprs:
        below = np.flatnonzero(fpr < f)
        out[f"tpr@{f:g}"] = float(tpr[below[-1]]) if len(below) else 0.0
    return out


def per_example_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example vulnerability: AUC over target models of column i's scores (nan if one class is missing)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    check(s.ndim == 2 and s.shape == y.shape, DataError,
          f"scores and labels must both be [n_targets, n_examples]. Got {s.shape} and {y.shape} instead.")
    out = np.full(s.shape[1], np.nan)
    for i in range(s.shape[1]):
        pos, neg = s[y[:, i], i], s[~y[:, i], i]
        if len(pos) and len(neg):
            greater = (pos[:, None] > neg[None, :]).mean()
            ties = (pos[:, None] == neg[None, :]).mean()
            out[i] = greater + 0.5 * ties
    return out
