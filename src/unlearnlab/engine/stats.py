"""Small numeric helpers of the reports: tolerant float conversion and the Student-t interval of a mean."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fin(v: Any) -> bool:
    return math.isfinite(_num(v))


def interval(values: Iterable[Any], confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean and two-sided Student-t interval of the mean over the finite values: {"mean", "lo", "hi", "n"}."""
    from scipy import stats

    v = np.array([_num(x) for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "n": n}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    half = 0.0 if half <= 1e-12 * max(1.0, abs(mean)) else half  # equal values: no rounding noise
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": n}
