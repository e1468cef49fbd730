"""Sanity warnings of an LM run: a target that did not learn D_f, a forget set too small for Forget Quality to
separate methods, a method that left the target unchanged. They go into the run record's `warnings` and are
emitted as `warning` events, as the classifier's are.

Set-up warnings (the first two) go on the 'original' record: they concern every row, and a method row with warnings
reads as 'changed nothing or too little' (engine/reading.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from .base import same_weights

LEARNED_FRACTION = 0.5  # the target must be at least half-way from "never saw D_f" (oracle) to "trained on it"
MIN_KS_VALUES = 20  # fewer distinct Forget Quality values than this cannot rank a dozen methods apart
FORGET_METRICS = ("forget_ROUGE", "forget_Prob")


def ks_distinct_values(n: int, m: int) -> int:
    """How many distinct values the two-sample KS statistic D = sup|F_n − G_m| (and so its p-value, a monotone
    function of D for fixed n, m) can take: D is always some |i/n − j/m|, 0 <= i <= n, 0 <= j <= m (n + 1 values
    when n = m)."""
    if n <= 0 or m <= 0:
        return 0
    if n == m:
        return n + 1
    return len({abs(i * m - j * n) for i in range(n + 1) for j in range(m + 1)})


def small_forget_warning(n: int) -> list[str]:
    """A warning when Forget Quality (KS p-value of n forget truth ratios vs the oracle's n) takes few values."""
    k = ks_distinct_values(n, n)
    if n <= 0 or k >= MIN_KS_VALUES:
        return []
    return [f"Forget Quality cannot separate methods here: the KS test of {n} forget examples against the oracle's "
            f"{n} takes at most {k} distinct p-values (fewer than {MIN_KS_VALUES}); use a larger forget set (TOFU "
            "forget01 has 40 questions: 41 values)."]


def learned_fraction(target_forget: float, oracle_forget: float, target_retain: float) -> float:
    """How far the target's forget metric sits from the oracle's (never saw D_f: 0) towards the target's own level on
    its retain data (what its fine-tune reached on trained examples: 1); NaN when that range is not positive."""
    span = target_retain - oracle_forget
    return (target_forget - oracle_forget) / span if span > 0 else math.nan


def not_learned_warning(target: dict[str, float], oracle: dict[str, float]) -> list[str]:
    """A warning when the target's forget ROUGE or Prob is less than LEARNED_FRACTION of the way from the oracle's
    forget value to the target's retain value: D_f was not memorised, so no method can show forgetting."""
    bad = []
    for m in FORGET_METRICS:
        retain = "retain_" + m.split("_", 1)[1]
        if m not in target or m not in oracle or retain not in target:
            continue
        f = learned_fraction(target[m], oracle[m], target[retain])
        if not f >= LEARNED_FRACTION:  # NaN (the target knows its retain data no better) fails too
            bad.append(f"{m} {target[m]:.3f} vs the oracle's {oracle[m]:.3f} (its {retain} {target[retain]:.3f})")
    if not bad:
        return []
    return [f"The target did not learn the forget set: {'; '.join(bad)}: less than half-way from a model that never "
            "saw D_f to the target's level on data it trained on, so unlearning cannot be measured (fine-tune the "
            "target longer or at a higher learning rate: recipe epochs / lr)."]


def setup_warnings(target_metrics: dict[str, float], oracle_forget: dict[str, float] | None,
                   forget_rows: list[dict]) -> list[str]:
    """The set-up warnings of the 'original' record: target did not learn D_f; forget set too small for FQ."""
    warns = not_learned_warning(target_metrics, oracle_forget) if oracle_forget else []
    if "Forget Quality" in target_metrics:
        warns += small_forget_warning(sum(bool(r.get("perturbed_answer")) for r in forget_rows))
    return warns


def forget_keys(metrics: dict[str, Any]) -> list[str]:
    """The metrics that describe D_f (forget_*, *-forget, VerbMem)."""
    return sorted(k for k in metrics if k.startswith("forget_") or k.endswith("-forget") or k == "VerbMem")


def unchanged_warning(method: str, model: nn.Module, target: nn.Module, metrics: dict[str, float],
                      target_metrics: Callable[[], dict[str, float] | None]) -> list[str]:
    """A warning when `method` left the weights bitwise equal to the target's, or every forget metric equal to the
    target's (`target_metrics()`, called only when the weights differ)."""
    if same_weights(model, target):
        return [f"{method} left the weights exactly as the target's: it changed nothing (raise its learning rate / "
                "epochs)."]
    reference = target_metrics() or {}
    keys = [k for k in forget_keys(metrics) if k in reference]
    if keys and all(math.isclose(metrics[k], reference[k], rel_tol=1e-9, abs_tol=1e-12) for k in keys):
        return [f"{method} left every forget metric equal to the target's ({', '.join(keys)}): it changed too little "
                "to show."]
    return []


__all__ = ["FORGET_METRICS", "LEARNED_FRACTION", "MIN_KS_VALUES", "forget_keys", "ks_distinct_values",
           "learned_fraction", "not_learned_warning", "same_weights", "setup_warnings", "small_forget_warning",
           "unchanged_warning"]
