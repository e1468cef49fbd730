"""Helpers shared by benchmarks/peer_speed.py (our interpreter) and benchmarks/peer_runner.py (the peers'):
the per-method work both sides do, the step and forward-pass counters, medians and the ratio table.

Only the standard library and torch: the peers' interpreter imports this file too."""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

METHODS = ("ft", "ga", "rl", "salun", "l1_sparse", "ssd", "scrub")
OURS_NAME = {"rl": "random_label"}  # our registry names where they differ from the row label


def method_work(epochs: int, batch_size: int) -> dict[str, dict[str, Any]]:
    """The hyper-parameters both sides get per method: our config fields (the peer runner maps them onto the
    official code's arguments). Everything not listed is our default, which is the official code's default."""
    sgd = {"momentum": 0.9, "weight_decay": 5e-4, "batch_size": batch_size}
    return {
        "ft": {"epochs": epochs, "lr": 0.01, **sgd},
        "ga": {"epochs": epochs, "lr": 1e-3, **sgd},
        "rl": {"epochs": epochs, "lr": 0.01, "order": "sequential", "wrong_only": False, **sgd},
        "salun": {"epochs": epochs, "lr": 0.013, "threshold": 0.5, "mask_batch_size": 256, "order": "sequential",
                  "wrong_only": False, **sgd},
        "l1_sparse": {"epochs": epochs, "lr": 0.01, "gamma": 5e-4, "no_l1_epochs": 0, **sgd},
        "ssd": {"batch_size": batch_size, "selection_weighting": 10.0, "dampening_constant": 1.0},
        "scrub": {"epochs": 3, "msteps": 2, "lr": 5e-4, "momentum": 0.9, "weight_decay": 5e-4, "gamma": 0.99,
                  "alpha": 1e-3, "temperature": 4.0, "forget_batch_size": 512, "retain_batch_size": 256},
    }


class Counter:
    """Counts optimiser steps (a global step hook) and examples forwarded through one model and its deep copies
    (a forward pre-hook; copies made with copy.deepcopy share it), split by whether autograd was on."""

    def __init__(self) -> None:
        self.steps = 0
        self.grad_examples = 0
        self.nograd_examples = 0
        self._handles: list[Any] = []

    def attach(self, model: Any) -> Any:
        """Start counting on `model` and on every optimiser; returns `model`."""
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        def on_forward(module: Any, args: tuple) -> None:
            n = int(args[0].shape[0]) if args and hasattr(args[0], "shape") else 0
            if torch.is_grad_enabled():
                self.grad_examples += n
            else:
                self.nograd_examples += n

        def on_step(opt: Any, args: Any, kwargs: Any) -> None:
            self.steps += 1

        self._handles.append(model.register_forward_pre_hook(on_forward))
        self._handles.append(register_optimizer_step_post_hook(on_step))
        return model

    def detach(self) -> dict[str, int]:
        """Stop counting; the counts so far."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return self.counts()

    def counts(self) -> dict[str, int]:
        """Steps and forwarded examples (with and without autograd)."""
        return {"steps": self.steps, "grad_examples": self.grad_examples, "nograd_examples": self.nograd_examples}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """fn()'s result and its wall time in seconds."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def median(values: Iterable[float]) -> float:
    """Median, NaN for no values."""
    vals = list(values)
    return statistics.median(vals) if vals else math.nan


def ratio(peer: float, ours: float) -> float:
    """Peer time / our time (> 1: ours is faster); NaN when either is missing or ours is 0."""
    if not (ours > 0) or math.isnan(peer):
        return math.nan
    return peer / ours


def geometric_mean(values: Iterable[float]) -> float:
    """Geometric mean of the finite positive values, NaN if none."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan


def same_work(ours: dict[str, int], peer: dict[str, int]) -> list[str]:
    """What differs between two Counter.counts() in optimiser steps or examples forwarded with autograd (the work
    that must be equal); empty when the work is the same."""
    return [f"{k}: ours {ours[k]} vs peer {peer[k]}" for k in ("steps", "grad_examples") if ours[k] != peer[k]]


def _fmt(v: float, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of rows with keys name, ours, peer (median seconds), steps, forwards (ours/peer examples
    without autograd), ours_acc and peer_acc ((forget, retain) accuracies in %); the last line is the geometric
    mean of the method ratios."""
    lines = ["| work | ours (s) | official (s) | official / ours | optimiser steps | no-grad examples ours / "
             "official | forget acc ours / official | retain acc ours / official |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fa = f"{_fmt(r['ours_acc'][0], '.1f')} / {_fmt(r['peer_acc'][0], '.1f')}"
        ra = f"{_fmt(r['ours_acc'][1], '.1f')} / {_fmt(r['peer_acc'][1], '.1f')}"
        lines.append(f"| {r['name']} | {_fmt(r['ours'], '.3f')} | {_fmt(r['peer'], '.3f')} | "
                     f"{_fmt(ratio(r['peer'], r['ours']), '.2f')}x | {r['steps']} | {r['forwards']} | {fa} | {ra} |")
    methods = [ratio(r["peer"], r["ours"]) for r in rows if r["name"] in METHODS]
    lines.append(f"\nGeometric mean of the method ratios: {_fmt(geometric_mean(methods), '.2f')}x")
    return "\n".join(lines)
