"""Population metrics: pure functions of cached per-example outputs of many unlearned and retrained models.

Inputs are arrays of shape [n_models, n_examples] (one statistic per model and example), one array per
population. Nothing here trains or loads a model. The shadow-model attacks (LiRA, U-LiRA) live in
`lira.py`, the Unlearning Comparator privacy score in `privacy_score.py`; this module holds KLoM, the
NeurIPS 2023 challenge score, the statistics they are computed from, and a seeded bootstrap.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataError, check
from ..seeding import numpy_rng

QUANTILES = (0.5, 0.9, 0.95, 0.99)
CHALLENGE_DELTA = 1e-5
CHALLENGE_EPSILON_CAP = 50.0
CHALLENGE_THRESHOLDS_PER_UNIT = 100
CHALLENGE_MIN_MODELS = 64  # [infer] below this, ceil(log(N-1)) <= 5 and F is coarse and noisy


# ----------------------------------------------------------------------------- statistics from logits
def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Margin z_y - logsumexp_{j != y} z_j per model and example from logits [n_models, n_examples, K]."""
    z, y = _logits_labels(logits, labels)
    true = np.take_along_axis(z, y[None, :, None], axis=2)[..., 0]
    other = z.copy()
    np.put_along_axis(other, y[None, :, None], -np.inf, axis=2)
    top = other.max(axis=2, keepdims=True)
    return true - (top[..., 0] + np.log(np.exp(other - top).sum(axis=2)))


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """LiRA statistic log p_y - log(sum_{j != y} p_j) per model and example, float64 softmax, 1e-45 guards."""
    z, y = _logits_labels(logits, labels)
    p = np.exp(z - z.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    p_true = np.take_along_axis(p, y[None, :, None], axis=2)[..., 0]
    p_wrong = p.sum(axis=2) - p_true
    return np.log(p_true + 1e-45) - np.log(p_wrong + 1e-45)


def _logits_labels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    check(z.ndim == 3 and y.shape == (z.shape[1],), DataError,
          "Population logits must be [n_models, n_examples, n_classes] with labels [n_examples]. "
          f"Got logits {z.shape} and labels {y.shape} instead; stack one [n_examples, K] array per model.")
    check(np.issubdtype(y.dtype, np.integer) and (y.size == 0 or (y.min() >= 0 and y.max() < z.shape[2])),
          DataError, f"labels must be integers in [0, {z.shape[2]}); fix the labels or the number of classes.")
    return z, y.astype(np.int64)


def check_populations(a: np.ndarray, b: np.ndarray, what: str, min_models: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 [n_models, n_examples] with the same n_examples, finite, >= `min_models` rows."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    check(a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1], DataError,
          f"{what} needs two populations of shape [n_models, n_examples] over the same examples. Got "
          f"{a.shape} and {b.shape} instead; stack one row per model, one column per example.")
    check(min(a.shape[0], b.shape[0]) >= min_models, DataError,
          f"{what} needs at least {min_models} models per population. Got {a.shape[0]} and {b.shape[0]}; "
          "train more models.")
    check(bool(np.isfinite(a).all() and np.isfinite(b).all()), DataError,
          f"{what} got non-finite values (nan/inf); compute margins/confidences in float64 and drop bad models.")
    return a, b


# ----------------------------------------------------------------------------- KLoM
def binned_kl(p: np.ndarray, q: np.ndarray, bins: int = 20, eps: float = 1e-5, clip: float = 100.0,
              top_edge: str = "include") -> float:
    """Histogram KL(p || q) of two samples on `bins` equal-width bins over their joint range.

    Follows RoyRin/data-unlearning-bench @ eb261f9c `unlearning_bench/eval.py:compute_binned_KL_div`:
    samples clipped to [-clip, clip]; edges = linspace(min, max, bins + 1) of both samples (width 1 when
    all are equal); q floored at `eps` where p > 0; KL = sum_b p_b log(p_b / q_b) / sum_b p_b (scipy's
    normalisation). `top_edge="drop"` reproduces that code's np.digitize, which leaves samples equal to
    the joint maximum out of every bin; "include" closes the last bin as np.histogram does.
    """
    check(top_edge in ("include", "drop"), ConfigError, f"top_edge must be 'include' or 'drop'. Got {top_edge!r}.")
    p = np.clip(np.asarray(p, dtype=np.float64), -clip, clip)
    q = np.clip(np.asarray(q, dtype=np.float64), -clip, clip)
    lo, hi = min(p.min(), q.min()), max(p.max(), q.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)

    def probs(x: np.ndarray) -> np.ndarray:
        idx = np.digitize(x, edges) - 1  # bin b holds edges[b] <= x < edges[b + 1]
        if top_edge == "include":
            idx[x == edges[-1]] = bins - 1
        counts = np.bincount(idx[(idx >= 0) & (idx < bins)], minlength=bins).astype(np.float64)
        return counts / counts.sum() if counts.sum() > 0 else counts

    pp, qq = probs(p), probs(q)
    if pp.sum() == 0:
        return 0.0
    qq = np.where(pp > 0, np.maximum(qq, eps), qq)
    pp = pp / pp.sum()
    qq = qq / qq.sum()
    m = pp > 0
    return float(np.sum(pp[m] * np.log(pp[m] / qq[m])))


def gaussian_kl(p: np.ndarray, q: np.ndarray, min_std: float = 1e-6) -> float:
    """KL(N(mu_p, s_p^2) || N(mu_q, s_q^2)) = log(s_q/s_p) + (s_p^2 + (mu_p - mu_q)^2) / (2 s_q^2) - 1/2."""
    sp = max(float(np.std(p, ddof=1)), min_std)
    sq = max(float(np.std(q, ddof=1)), min_std)
    d = float(np.mean(p) - np.mean(q))
    return math.log(sq / sp) + (sp * sp + d * d) / (2.0 * sq * sq) - 0.5


def klom(unlearned: np.ndarray, oracle: np.ndarray, *, direction: str = "paper", estimator: str = "binned",
         bins: int = 20, eps: float = 1e-5, clip: float = 100.0, top_edge: str = "include") -> np.ndarray:
    """KLoM per example: KL between the margin distributions of the unlearned and the oracle population.

    Georgiev, Rinberg, Park, Garg, Ilyas, Madry, Neel, "Attribute-to-Delete" (arXiv 2410.23232, App. E.1).
    Inputs: margins z_y - logsumexp_{j != y} z_j (see `margins`), [n_models, n_examples] per population.
    direction="paper": KL(unlearned || oracle), the order of `kl_from_margins(all_unlearned_margins,
    all_oracle_margins)` in RoyRin/data-unlearning-bench @ eb261f9c `unlearning_bench/eval.py` and of
    easydub/EasyDUB-code @ 238868e4 `easydub/eval.py`. direction="released": KL(oracle || unlearned), what
    that benchmark's `run.py:load_klom` actually computes (it passes the oracle margins first).
    estimator="binned" is the released estimator (`binned_kl`, 20 bins); "gaussian" fits one Gaussian
    per population (`gaussian_kl`), steadier for the small populations a CPU can train.
    """
    check(direction in ("paper", "released"), ConfigError,
          f"direction must be 'paper' (KL(unlearned || oracle)) or 'released' (KL(oracle || unlearned)). "
          f"Got {direction!r} instead.")
    check(estimator in ("binned", "gaussian"), ConfigError,
          f"estimator must be 'binned' or 'gaussian'. Got {estimator!r} instead.")
    check(bins >= 2, ConfigError, f"bins must be >= 2. Got {bins} instead.")
    u, o = check_populations(unlearned, oracle, "KLoM")
    p, q = (u, o) if direction == "paper" else (o, u)
    if estimator == "gaussian":
        return np.array([gaussian_kl(p[:, i], q[:, i]) for i in range(p.shape[1])])
    return np.array([binned_kl(p[:, i], q[:, i], bins, eps, clip, top_edge) for i in range(p.shape[1])])


def klom_report(unlearned: np.ndarray, oracle: np.ndarray, splits: Mapping[str, np.ndarray] | None = None,
                quantiles: Sequence[float] = QUANTILES, **kwargs) -> dict[str, object]:
    """Per-example KLoM plus its `quantile_summary` per split (mask or index array over the examples)."""
    values = klom(unlearned, oracle, **kwargs)
    return {"per_example": values, "summary": quantile_summary(values, splits, quantiles)}


def quantile_summary(values: np.ndarray, splits: Mapping[str, np.ndarray] | None = None,
                     quantiles: Sequence[float] = QUANTILES) -> dict[str, dict[str, float]]:
    """Mean, n and quantiles (keys 'q50', 'q95', ...) of per-example values, per split mask or index array.

    KLoM is reported at upper quantiles (the paper plots the 95th/99th percentile per split) because a
    mean hides the examples an unlearning method fails on.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    check(all(0.0 <= q <= 1.0 for q in quantiles), ConfigError, f"quantiles must be in [0, 1]. Got {quantiles}.")
    out: dict[str, dict[str, float]] = {}
    for name, sel in (splits or {"all": np.ones(len(v), dtype=bool)}).items():
        sel = np.asarray(sel)
        check(sel.dtype != bool or sel.shape == v.shape, DataError,
              f"split {name!r}: a boolean mask must have one entry per example ({len(v)}). Got {sel.shape}.")
        x = v[sel]
        row = {"n": float(len(x)), "mean": float(x.mean()) if len(x) else math.nan}
        for q in quantiles:
            row[f"q{100 * q:g}"] = float(np.quantile(x, q)) if len(x) else math.nan
        out[name] = row
    return out


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_interval(statistic: Callable[..., float], arrays: Sequence[np.ndarray], *, axis: int = 0,
                       paired: bool = True, n_resamples: int = 1000, confidence: float = 0.95,
                       seed: int = 0) -> dict[str, float]:
    """Point value and percentile-bootstrap interval of `statistic(*arrays)`, resampling along `axis`.

    paired=True draws one index set for all arrays (e.g. examples shared by both populations);
    paired=False draws each array's own (e.g. models of two independent populations). Randomness from
    `seeding.numpy_rng(seed, "population-bootstrap")` only.
    """
    check(0.0 < confidence < 1.0, ConfigError, f"confidence must be in (0, 1). Got {confidence} instead.")
    check(n_resamples >= 1, ConfigError, f"n_resamples must be >= 1. Got {n_resamples} instead.")
    arrs = [np.asarray(a) for a in arrays]
    check(len(arrs) > 0 and all(a.ndim > axis and a.shape[axis] > 0 for a in arrs), DataError,
          f"bootstrap_interval needs non-empty arrays with an axis {axis}. Got shapes {[a.shape for a in arrs]}.")
    sizes = {a.shape[axis] for a in arrs}
    check(not paired or len(sizes) == 1, DataError,
          f"paired resampling needs the same length along axis {axis}; got {sorted(sizes)}. Use paired=False.")
    rng = numpy_rng(seed, "population-bootstrap")
    stats = np.empty(n_resamples)
    for r in range(n_resamples):
        shared = rng.integers(0, arrs[0].shape[axis], arrs[0].shape[axis]) if paired else None
        picked = [np.take(a, shared if paired else rng.integers(0, a.shape[axis], a.shape[axis]), axis=axis)
                  for a in arrs]
        stats[r] = statistic(*picked)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return {"value": float(statistic(*arrs)), "ci_low": float(low), "ci_high": float(high),
            "n_resamples": float(n_resamples)}


# ----------------------------------------------------------------------------- NeurIPS 2023 challenge score
@dataclass(frozen=True)
class ChallengeScore:
    """Per-example epsilons, forget quality F, utility-adjusted score and what N allows."""

    epsilons: np.ndarray
    forget_score: float
    final_score: float | None
    n_models: int
    max_epsilon: float
    n_buckets: int
    small_population: bool
    notes: list[str] = field(default_factory=list)


def _rates_at_least(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Fraction of `sorted_x` that is >= each threshold in `t`."""
    return 1.0 - np.searchsorted(sorted_x, t, side="left") / len(sorted_x)


def _rates_between(sorted_x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Fraction of `sorted_x` with lo <= x <= hi for each pair of bounds (0 where lo > hi)."""
    n = np.searchsorted(sorted_x, hi, side="right") - np.searchsorted(sorted_x, lo, side="left")
    return np.maximum(n, 0) / len(sorted_x)


def _challenge_rule_rates(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of every single- and double-threshold rule of the challenge's metric.py."""
    per_unit = CHALLENGE_THRESHOLDS_PER_UNIT
    lo, hi = min(pos.min(), neg.min()), max(pos.max(), neg.max())
    single = np.linspace(lo, hi, int(math.ceil((hi - lo) * per_unit)))
    sp, sn = np.sort(pos), np.sort(neg)
    fpr_s, fnr_s = _rates_at_least(sn, single), 1.0 - _rates_at_least(sp, single)
    # double threshold: predict the peakier population (smaller range) inside [l, r]
    if np.ptp(pos) >= np.ptp(neg):
        sp, sn = sn, sp
    width, buffer = min(np.ptp(pos), np.ptp(neg)), 2.0
    r_lo, r_hi = sp[0] + width - buffer, sp[-1] + buffer
    rights = np.linspace(r_lo, r_hi, int(math.ceil((r_hi - r_lo) * per_unit)))
    offsets = np.linspace(-width - buffer, -width + buffer, int(math.ceil(2 * buffer * per_unit)))
    left = (rights[:, None] + offsets[None, :]).ravel()
    right = np.repeat(rights, len(offsets))
    fpr_d, fnr_d = _rates_between(sn, left, right), 1.0 - _rates_between(sp, left, right)
    return np.concatenate([fpr_d, fpr_s]), np.concatenate([fnr_d, fnr_s])


def challenge_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = CHALLENGE_DELTA,
                      cap: float = CHALLENGE_EPSILON_CAP) -> float:
    """Empirical epsilon of one example from two 1-D samples of its statistic (pos = larger median).

    google-deepmind/unlearning_evaluation @ ffae0fff `metric.py:_get_epsilons`: over all single- and
    double-threshold rules, eps = max(log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR),
    clipped at 0; FPR = FNR = 0 gives inf; a rule with exactly one zero rate is discarded; the example's
    eps is the max over rules, capped at `cap`, and is `cap` when range(smaller) / range(larger) < 0.01.
    Two constant samples (a case the reference asserts on) give 0 when equal and `cap` otherwise. The
    reference's `assert thr_eps` on a numpy array raises whenever more than one rule survives; this
    computes what it evidently intends (checked equal to a CPU run of it with that assert relaxed).
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    small, large = sorted((np.ptp(pos), np.ptp(neg)))
    if large == 0.0:
        return 0.0 if pos[0] == neg[0] else cap
    if small / large < 0.01:
        return cap
    fpr, fnr = _challenge_rule_rates(pos, neg)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = np.clip(eps, 0.0, None)
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, np.where((fpr == 0) | (fnr == 0), np.nan, eps))
    if np.all(np.isnan(eps)):
        return math.nan
    return float(min(np.nanmax(eps), cap))


def challenge_points(epsilons: np.ndarray, n_models: int) -> tuple[np.ndarray, float, int]:
    """Points 2^-i for eps in [i/2, (i+1)/2), 0 beyond max_eps = ceil(log(N - 1)); also max_eps, #buckets."""
    check(n_models >= 3, DataError, f"The challenge score needs N >= 3 models per population (log(N-1) > 0). "
          f"Got {n_models}; train more models.")
    max_eps = float(math.ceil(math.log(n_models - 1)))
    n_buckets = int(max_eps / 0.5)
    e = np.asarray(epsilons, dtype=np.float64)
    idx = np.floor(np.where(np.isfinite(e), e, np.inf) / 0.5)
    pts = np.where(idx < n_buckets, 0.5 ** np.minimum(idx, n_buckets), 0.0)
    return pts, max_eps, n_buckets


def challenge_score(unlearned: np.ndarray, retrained: np.ndarray, *, ra_ratio: float | None = None,
                    ta_ratio: float | None = None, delta: float = CHALLENGE_DELTA) -> ChallengeScore:
    """NeurIPS 2023 unlearning-challenge score from logit-scaled confidences on the forget set.

    Triantafillou et al., arXiv 2406.09073; google-deepmind/unlearning_evaluation @ ffae0fff
    `metric.py:compute_forget_score_from_confs` and `main.py`. Inputs: `logit_scaled_confidence` of each
    forget example under N unlearned and N retrained models, [N, n_forget] each. Per example the
    population with the larger median is "positive"; eps from `challenge_epsilon`; F = mean of
    `challenge_points` (1 = indistinguishable); final = F * ra_ratio * ta_ratio with
    ra_ratio = mean RA(unlearned) / mean RA(retrained), likewise TA, when both are given.
    N is the number of unlearned models, as in the reference; `small_population` is set when
    N < 64, where only ceil(log(N - 1)) / 0.5 buckets exist and F is comparable only at equal N.
    """
    u, r = check_populations(unlearned, retrained, "challenge_score", min_models=3)
    retrain_pos = np.median(r, axis=0) > np.median(u, axis=0)
    eps = np.array([challenge_epsilon(r[:, i], u[:, i], delta) if retrain_pos[i]
                    else challenge_epsilon(u[:, i], r[:, i], delta) for i in range(u.shape[1])])
    pts, max_eps, n_buckets = challenge_points(eps, u.shape[0])
    forget = float(pts.mean()) if len(pts) else math.nan
    final = None
    if ra_ratio is not None or ta_ratio is not None:
        check(ra_ratio is not None and ta_ratio is not None, ConfigError,
              "The final score needs both ra_ratio and ta_ratio (mean accuracy unlearned / retrained); "
              "pass both or neither.")
        final = forget * float(ra_ratio) * float(ta_ratio)
    notes = []
    small = u.shape[0] < CHALLENGE_MIN_MODELS
    if small:
        notes.append(f"N = {u.shape[0]} models: epsilon is resolved only up to ceil(log(N-1)) = {max_eps:g} "
                     f"({n_buckets} buckets of 0.5, the challenge used N = 512 and 14); compare F only at equal N.")
    if u.shape[0] != r.shape[0]:
        notes.append(f"Unequal populations ({u.shape[0]} unlearned, {r.shape[0]} retrained): buckets use N = "
                     f"{u.shape[0]} as the reference does.")
    if np.isnan(eps).any():
        notes.append(f"{int(np.isnan(eps).sum())} example(s) had no usable threshold rule (scored 0 points).")
    return ChallengeScore(eps, forget, final, u.shape[0], max_eps, n_buckets, small, notes)
