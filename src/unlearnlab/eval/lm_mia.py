"""Membership-inference scores for language models and their AUC forget-vs-holdout.

Every score is oriented like a loss: **higher = more like a non-member**, following OpenUnlearning
(`src/evals/metrics/mia/`):
- LOSS (Yeom et al. 2018): mean token NLL of the answer.
- ZLib (Carlini et al. 2021, "Extracting Training Data from LLMs"): mean NLL / len(zlib.compress(text.encode())),
  the text being the answer string (OpenUnlearning's ZLIBAttack divides the average loss, not the sum).
- Min-K% (Shi et al. 2024): −mean of the k·|y| lowest token log-probs (at least one token), k = 0.4 as in MUSE's
  PrivLeak ('Min-40%').
- Min-K%++ (Zhang et al. 2024): the same over z_t = (log p(y_t) − μ_t)/σ_t, where μ_t and σ_t² are the mean and
  variance of log p(z) under the model's own next-token distribution at position t (σ² floored at 1e-6).

`auc(forget, holdout)` is `roc_auc_score` with holdout labelled 1 and forget 0 on these scores, so **AUC → 1 when
the forget set looks much more member-like than the holdout set** and 0.5 when indistinguishable.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from ..errors import DataError, check
from .lm_outputs import TokenStats

MINK_K = 0.4
VAR_FLOOR = 1e-6


def loss_score(stats: TokenStats) -> np.ndarray:
    """LOSS attack: mean answer NLL per example."""
    return stats.nll


def zlib_score(stats: TokenStats, texts: Sequence[str]) -> np.ndarray:
    """ZLib attack: mean NLL divided by the zlib-compressed byte length of each text."""
    check(len(texts) == len(stats), DataError, f"{len(texts)} texts for {len(stats)} examples; pass one per example.")
    z = np.array([len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=np.float64)
    return stats.nll / z


def _lowest_k_mean(values: np.ndarray, lengths: np.ndarray, k: float) -> np.ndarray:
    """Mean of the max(1, ⌊k·len⌋) smallest entries of each row of a NaN-padded matrix."""
    check(0 < k <= 1, DataError, f"k must lie in (0, 1]. Got {k} instead.")
    srt = np.sort(values, axis=1)  # NaN padding sorts last
    num = np.maximum(1, np.floor(lengths * k).astype(np.int64))
    keep = np.arange(srt.shape[1])[None, :] < num[:, None]
    return np.where(keep, srt, 0.0).sum(1) / num


def mink_score(stats: TokenStats, k: float = MINK_K) -> np.ndarray:
    """Min-K% attack: −mean of the lowest k% answer-token log-probs."""
    return -_lowest_k_mean(stats.padded("logprob"), stats.lengths, k)


def minkpp_score(stats: TokenStats, k: float = MINK_K) -> np.ndarray:
    """Min-K%++ attack: −mean of the lowest k% standardised token log-probs (log p − μ)/σ."""
    z = (stats.logprob - stats.mu) / np.sqrt(np.maximum(stats.var, VAR_FLOOR))
    padded = TokenStats(z, stats.correct, stats.mu, stats.var, stats.offsets).padded("logprob")
    return -_lowest_k_mean(padded, stats.lengths, k)


def auc(forget_scores: np.ndarray, holdout_scores: np.ndarray) -> float:
    """ROC AUC separating holdout (1) from forget (0) by a loss-like score: 1 = forget looks member-like."""
    f, h = np.asarray(forget_scores, dtype=np.float64), np.asarray(holdout_scores, dtype=np.float64)
    check(len(f) > 0 and len(h) > 0, DataError,
          f"An MIA AUC needs forget and holdout examples; got {len(f)} forget and {len(h)} holdout.")
    check(bool(np.isfinite(f).all() and np.isfinite(h).all()), DataError,
          "MIA scores contain NaN or inf; the model's outputs are not finite.")
    labels = np.concatenate([np.zeros(len(f)), np.ones(len(h))])
    return float(roc_auc_score(labels, np.concatenate([f, h])))


ATTACKS = {"LOSS": loss_score, "MinK": mink_score, "MinK++": minkpp_score}


def token_view(stats: TokenStats, drop_last: bool = True) -> TokenStats:
    """The tokens Min-K% / Min-K%++ read: without each example's final labelled token (OpenUnlearning) or all."""
    return stats.drop_last() if drop_last else stats


def mia_aucs(forget: TokenStats, holdout: TokenStats, forget_texts: Sequence[str],
             holdout_texts: Sequence[str], *, drop_last: bool = True) -> dict[str, float]:
    """AUC forget-vs-holdout for LOSS, ZLib, Min-K% and Min-K%++ (keys 'MIA-LOSS', 'MIA-ZLib', ...).

    LOSS and ZLib read every answer token (OpenUnlearning's `evaluate_probability`); Min-K% and Min-K%++ drop each
    example's final labelled token (its EOS) when `drop_last` (OpenUnlearning's `tokenwise_logprobs`)."""
    out = {"MIA-LOSS": auc(loss_score(forget), loss_score(holdout))}
    f, h = token_view(forget, drop_last), token_view(holdout, drop_last)
    out |= {"MIA-MinK": auc(mink_score(f), mink_score(h)), "MIA-MinK++": auc(minkpp_score(f), minkpp_score(h))}
    out["MIA-ZLib"] = auc(zlib_score(forget, forget_texts), zlib_score(holdout, holdout_texts))
    return {k: out[k] for k in ("MIA-LOSS", "MIA-ZLib", "MIA-MinK", "MIA-MinK++")}


__all__ = ["MINK_K", "auc", "loss_score", "mia_aucs", "mink_score", "minkpp_score", "token_view", "zlib_score"]
