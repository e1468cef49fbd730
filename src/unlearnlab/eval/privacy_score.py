"""Unlearning Comparator privacy score: worst case over entropy and confidence threshold attacks.

Lee, Yu, Jang, Woo, Jo, "Unlearning Comparator: A Visual Analytics System for Comparative Evaluation of
Machine Unlearning Methods" (2025); gnueaj/Machine-Unlearning-Comparator @ 0e3ce99d
`backend/app/utils/attack.py` (`process_attack_metrics`, `calculate_scores`). The two samples are the
forget-class examples' outputs of ONE unlearned and ONE retrained model (not populations of models).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError, check

DELTA = 1e-5
RATE_FLOOR = 1e-10
ENTROPY_RANGE = (0.0, 2.5)
CONFIDENCE_RANGE = (-2.5, 10.0)
N_THRESHOLDS = 51


def comparator_statistics(logits: np.ndarray, t_entropy: float = 2.0,
                          t_confidence: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(entropy, confidence) per row: H(softmax(z / T1)) in nats; log p_max - log(1 - p_max) of softmax(z / T2).

    p_max is the largest probability, not the true-label one (unlike LiRA and the challenge).
    """
    z = np.asarray(logits, dtype=np.float64)
    check(z.ndim == 2 and z.shape[1] >= 2, DataError,
          f"logits must be [n_examples, n_classes >= 2]. Got {z.shape} instead.")
    check(t_entropy > 0 and t_confidence > 0, ConfigError,
          f"temperatures must be > 0. Got {t_entropy}, {t_confidence} instead.")

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p1 = softmax(z / t_entropy)
    ent = -np.sum(np.where(p1 > 0, p1 * np.log(np.where(p1 > 0, p1, 1.0)), 0.0), axis=1)
    pmax = softmax(z / t_confidence).max(axis=1)
    conf = np.log(pmax + 1e-45) - np.log(1.0 - pmax + 1e-45)
    return ent, conf


def threshold_attack_scores(pos: np.ndarray, neg: np.ndarray, thresholds: np.ndarray,
                            delta: float = DELTA) -> np.ndarray:
    """Attack score 1 - 2^-eps per threshold t, predicting "positive" when value >= t.

    TPR = mean(pos >= t), FPR = mean(neg >= t), FNR = 1 - TPR; FPR = FNR = 0 gives score 1; a rate
    >= 1 - delta gives 0; otherwise rates clipped to [1e-10, 1 - delta - 1e-10] and
    eps = max(0, min(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR)).
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    tpr = (pos[None, :] >= t[:, None]).mean(axis=1)
    fpr = (neg[None, :] >= t[:, None]).mean(axis=1)
    fnr = 1.0 - tpr
    sfp = np.clip(fpr, RATE_FLOOR, 1 - delta - RATE_FLOOR)
    sfn = np.clip(fnr, RATE_FLOOR, 1 - delta - RATE_FLOOR)
    eps = np.maximum(0.0, np.minimum(np.log(1 - delta - sfp) - np.log(sfn), np.log(1 - delta - sfn) - np.log(sfp)))
    fq = np.where((fpr == 0) & (fnr == 0), 0.0, np.where((fpr >= 1 - delta) | (fnr >= 1 - delta), 1.0, 2.0 ** -eps))
    return 1.0 - fq


def privacy_score(unlearned_logits: np.ndarray, retrained_logits: np.ndarray, *, t_entropy: float = 2.0,
                  t_confidence: float = 1.0, n_thresholds: int = N_THRESHOLDS,
                  entropy_range: tuple[float, float] = ENTROPY_RANGE,
                  confidence_range: tuple[float, float] = CONFIDENCE_RANGE,
                  decimals: int | None = 2) -> dict[str, float]:
    """PS = 1 - max over 4 attacks (entropy/confidence x which model is positive) of the best threshold score.

    `decimals=2` rounds the statistics as the reference does when it stores them as JSON (None: no
    rounding); then values are clipped to each fixed range, with `n_thresholds` evenly spaced over it. Returns 'ps' (1 =
    indistinguishable from the retrained model, 0 = separable) and each variant's best attack score.
    """
    check(n_thresholds >= 2, ConfigError, f"n_thresholds must be >= 2. Got {n_thresholds} instead.")
    u = np.asarray(unlearned_logits)
    r = np.asarray(retrained_logits)
    check(u.ndim == 2 and r.ndim == 2 and u.shape[1] == r.shape[1] and len(u) and len(r), DataError,
          "privacy_score needs forget-class logits [n, K] of the unlearned and the retrained model with the same "
          f"K. Got {u.shape} and {r.shape} instead.")
    stats_u = comparator_statistics(u, t_entropy, t_confidence)
    stats_r = comparator_statistics(r, t_entropy, t_confidence)
    out: dict[str, float] = {}
    for k, (name, (lo, hi)) in enumerate((("entropy", entropy_range), ("confidence", confidence_range))):
        check(lo < hi, ConfigError, f"{name}_range must be (low, high) with low < high. Got {(lo, hi)}.")
        a, b = stats_u[k], stats_r[k]
        if decimals is not None:
            a, b = np.round(a, decimals), np.round(b, decimals)
        a, b = np.clip(a, lo, hi), np.clip(b, lo, hi)
        t = np.linspace(lo, hi, n_thresholds)
        out[f"{name}_unlearn_positive"] = float(threshold_attack_scores(a, b, t).max())
        out[f"{name}_retrain_positive"] = float(threshold_attack_scores(b, a, t).max())
    out["ps"] = float(np.clip(1.0 - max(out.values()), 0.0, 1.0))
    return out
