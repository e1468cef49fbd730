"""Metric registry: pure functions of cached outputs, with `needs` and `higher_is_better`."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..registry import Registry
from .outputs import Outputs

# LM evaluation (lm_*.py, rouge.py) computes its metrics in lm_eval and registers none here: a classifier run does
# not import it (issue 13); tests/test_eval_metrics.py checks that those modules register no metric.
METRICS: Registry = Registry("metric", "unlearnlab.eval", skip=("lm_", "rouge"))


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric: fn(outputs, ref_outputs) -> float."""

    name: str
    fn: Callable[[Outputs, Outputs | None], float]
    needs: tuple[str, ...]
    higher_is_better: bool | None
    needs_ref: bool = False
    description: str = ""
    kinds: tuple[str, ...] = ("classifier",)


def metric(name: str, *, needs: tuple[str, ...], higher_is_better: bool | None, needs_ref: bool = False,
           description: str = "", kinds: tuple[str, ...] = ("classifier",)):
    """Decorator registering a metric function."""

    def wrap(fn):
        METRICS.add(name, Metric(name, fn, needs, higher_is_better, needs_ref, description, kinds))
        return fn

    return wrap


def accuracy(out: dict[str, np.ndarray]) -> float:
    """Percentage of correct predictions."""
    return float(100.0 * np.mean(out["correct"], dtype=np.float64)) if len(out["correct"]) else float("nan")


@metric("UA", needs=("forget",), higher_is_better=None,
        description="unlearning accuracy = 100 - Acc(D_f); ideal = the retrained model's UA")
def ua(out: Outputs, ref: Outputs | None = None) -> float:
    """100 - forget accuracy."""
    return 100.0 - accuracy(out["forget"])


@metric("RA", needs=("retain",), higher_is_better=True, description="retain accuracy Acc(D_r)")
def ra(out: Outputs, ref: Outputs | None = None) -> float:
    """Retain accuracy."""
    return accuracy(out["retain"])


@metric("TA", needs=("test",), higher_is_better=True, description="test accuracy")
def ta(out: Outputs, ref: Outputs | None = None) -> float:
    """Test accuracy."""
    return accuracy(out["test"])
