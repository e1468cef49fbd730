"""TOFU and MUSE metrics as pure functions of cached per-example outputs (p̄, token correctness, ROUGE, AUC).

Sources: TOFU (Maini et al. 2024) and its code (`aggregate_eval_stat.py`), OpenUnlearning
(`src/evals/metrics/{memorization,privacy,utility}.py`), MUSE (Shi et al. 2024). Conventions:
- p̄(a|q) = exp(−mean token NLL of a).
- Truth ratio R = (Π_j p̄(â_j))^{1/m} / p̄(ã): geometric mean over the m perturbed answers over the paraphrased answer
  (TOFU code: exp(mean perturbed NLL − paraphrased NLL) is 1/R; OpenUnlearning stores R = false/true). Where no
  paraphrase exists (real authors, world facts) the answer itself plays ã, as in TOFU.
- Retain-type sets report TR-score = mean max(0, 1 − R); the forget set reports mean min(R, 1/R) (TOFU:
  "closer to 1 is better").
- Forget Quality = p-value of the two-sample KS test between R on D_f for the model and for the retain oracle
  (the KS statistic depends only on ranks, so R or 1/R give the same p-value).
- Model Utility = harmonic mean of {Prob, ROUGE, TR-score} on retain, real authors and world facts (whichever of
  those sets are present).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import ks_2samp

from ..errors import DataError, check
from .lm_outputs import TokenStats

_EPS = 1e-10  # OpenUnlearning's denominator guard


def _mean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else float("nan")


def prob(p_bar: np.ndarray) -> float:
    """TOFU Prob on forget / retain: mean length-normalised answer probability."""
    return _mean(p_bar)


def normalized_prob(p_answer: np.ndarray, p_perturbed: np.ndarray) -> float:
    """TOFU Prob on real authors / world facts: mean of p̄(a) / (p̄(a) + Σ_j p̄(â_j)); p_perturbed is [n, m].

    Rows with fewer than m perturbed answers are NaN-padded; NaN entries are left out of the sum.
    """
    pa, pp = np.asarray(p_answer, dtype=np.float64), np.asarray(p_perturbed, dtype=np.float64)
    check(pp.ndim == 2 and len(pp) == len(pa), DataError,
          f"p_perturbed must be [n, m] with n = {len(pa)}; got shape {pp.shape}.")
    return _mean(pa / (pa + np.nansum(pp, axis=1) + _EPS))


def truth_ratio(p_paraphrased: np.ndarray, p_perturbed: np.ndarray) -> np.ndarray:
    """Per-example R = geometric mean of p̄(perturbed) / p̄(paraphrased); p_perturbed is [n, m], NaN-padded."""
    para, pp = np.asarray(p_paraphrased, dtype=np.float64), np.asarray(p_perturbed, dtype=np.float64)
    check(pp.ndim == 2 and len(pp) == len(para) and bool((~np.isnan(pp)).any(1).all()) if pp.ndim == 2 else False,
          DataError, f"p_perturbed must be [n, m] with n = {len(para)} and at least one value per row; got shape "
          f"{pp.shape}. Every row needs at least one perturbed answer.")
    geo = np.exp(np.nanmean(np.log(np.maximum(pp, 1e-300)), axis=1))
    return geo / (para + _EPS)


def tr_score(ratios: np.ndarray) -> float:
    """TR-score on retain-type sets: mean max(0, 1 − R) (higher = the true answer is preferred)."""
    return _mean(np.maximum(0.0, 1.0 - np.asarray(ratios, dtype=np.float64)))


def forget_truth_ratio(ratios: np.ndarray) -> float:
    """TOFU forget-set truth-ratio statistic: mean min(R, 1/R) (1 = true and false answers equally likely)."""
    r = np.asarray(ratios, dtype=np.float64)
    return _mean(np.minimum(r, 1.0 / (r + _EPS)))


def forget_quality(ratios: np.ndarray, oracle_ratios: np.ndarray) -> float:
    """Forget Quality: KS-test p-value between the model's and the retain oracle's R on D_f (higher = better)."""
    a, b = np.asarray(ratios, dtype=np.float64), np.asarray(oracle_ratios, dtype=np.float64)
    check(len(a) > 0 and len(b) > 0, DataError, "Forget Quality needs truth ratios on at least one forget example.")
    return float(ks_2samp(a, b).pvalue)


def forget_ks(ratios: np.ndarray, oracle_ratios: np.ndarray) -> float:
    """The KS statistic D behind Forget Quality (0 = same distribution as the oracle's R, 1 = disjoint): with few
    forget examples the p-value takes few distinct values, so D is reported beside it."""
    a, b = np.asarray(ratios, dtype=np.float64), np.asarray(oracle_ratios, dtype=np.float64)
    check(len(a) > 0 and len(b) > 0, DataError, "Forget Quality needs truth ratios on at least one forget example.")
    return float(ks_2samp(a, b).statistic)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative values (0 if any is 0; NaN entries are skipped)."""
    v = np.asarray([x for x in values if not np.isnan(x)], dtype=np.float64)
    check(bool((v >= 0).all()), DataError, f"A harmonic mean needs non-negative values; got {v.tolist()}.")
    if v.size == 0:
        return float("nan")
    if (v == 0).any():
        return 0.0
    return float(len(v) / np.sum(1.0 / v))


def model_utility(parts: dict[str, dict[str, float]]) -> float:
    """Harmonic mean of Prob, ROUGE and TR-score over the utility sets in `parts` (split -> the three values)."""
    return harmonic_mean([v for split in parts.values() for v in (split["Prob"], split["ROUGE"], split["TR"])])


def exact_memorization(stats: TokenStats) -> np.ndarray:
    """Per example: fraction of answer tokens that are the teacher-forced argmax (Tirumala et al. 2022)."""
    return stats.sums("correct") / np.maximum(stats.lengths, 1)


def extraction_strength(stats: TokenStats) -> np.ndarray:
    """Per example: 1 − k*/|y|, k* the shortest prefix after which the argmax reproduces the rest of y.

    Carlini et al. 2021 / OpenUnlearning's ES. k* = |y| (ES = 0) when the last token is already wrong; the public
    loop ends at k = |y| − 1 in that case (ES = 1/|y|), an off-by-one we do not reproduce.
    """
    c = stats.padded("correct", fill=1.0)  # padding counts as correct: it never ends a suffix
    cols = np.arange(c.shape[1])[None, :]
    k_star = np.where(c == 0, cols, -1).max(1, initial=-1) + 1  # one past the last wrong token
    lengths = stats.lengths
    return np.where(lengths > 0, 1.0 - k_star / np.maximum(lengths, 1), 0.0)


def privleak(auc_model: float, auc_oracle: float) -> float:
    """MUSE PrivLeak in %: (AUC_model − AUC_oracle)/AUC_oracle × 100 in MUSE's AUC orientation.

    MUSE reports AUC as 1 − (ours): with `lm_mia.auc` (1 = forget member-like) this is
    ((1 − a_m) − (1 − a_o)) / (1 − a_o) × 100, exactly OpenUnlearning's `privleak`. A model that still memorises
    D_f gets a large negative value (MUSE: target ≈ −100), over-unlearning a positive one, 0 is ideal.
    """
    m, o = 1.0 - float(auc_model), 1.0 - float(auc_oracle)
    return (m - o) / (o + _EPS) * 100.0


def recovery(m_relearned: float, m_unlearned: float, m_target: float) -> float:
    """Relearning recovery (m_relearned − m_unlearned)/(m_target − m_unlearned): 0 = none, 1 = fully restored."""
    gap = m_target - m_unlearned
    return float("nan") if abs(gap) < 1e-12 else (m_relearned - m_unlearned) / gap


__all__ = [
    "exact_memorization",
    "extraction_strength",
    "forget_ks",
    "forget_quality",
    "forget_truth_ratio",
    "harmonic_mean",
    "model_utility",
    "normalized_prob",
    "privleak",
    "prob",
    "recovery",
    "tr_score",
    "truth_ratio",
]
