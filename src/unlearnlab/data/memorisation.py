"""Memorisation-ranked forget sets (hard:<pct> / easy:<pct>).

Proxy: the out-of-fold loss. The train set is split into `folds` seeded folds; a model trained on the other folds
scores each held-out example by its cross-entropy. An example that the rest of the data does not explain (high
held-out loss) can only be fitted by memorising it: this is the held-out estimator of Feldman & Zhang's memorisation
score ("What Neural Networks Memorize and Why", NeurIPS 2020: mem = P(correct | in) - P(correct | out), here with
P(correct | in) ~ 1 for a fitted model and the loss instead of the 0/1 outcome for a finer ranking), as used to build
forget sets of graded difficulty by Zhao, Triantafillou et al. ("What makes unlearning hard and what to do about
it", NeurIPS 2024). hard:p = the p% highest, easy:p = the p% lowest.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..seeding import numpy_rng
from .core import batches, subset

FOLDS = 4


@torch.no_grad()
def per_example_loss(model: torch.nn.Module, ds: Dataset, batch_size: int = 512) -> np.ndarray:
    """Cross-entropy of every example of `ds` under `model` (eval mode), in dataset order."""
    model.eval()
    device = next(model.parameters()).device
    out = [torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device), reduction="none").cpu()
           for x, y in batches(ds, batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def out_of_fold_loss(train: Dataset, fit: Callable[[np.ndarray, int], torch.nn.Module], *, folds: int = FOLDS,
                     seed: int = 0) -> np.ndarray:
    """Per-example held-out loss: `fit(rows, fold)` trains a model on `rows`; each fold is scored by the model
    trained without it."""
    n = len(train)
    parts = np.array_split(numpy_rng(seed, "memorisation-folds", folds).permutation(n), folds)
    scores = np.empty(n, dtype=np.float64)
    for i, held in enumerate(parts):
        held = np.sort(held)
        model = fit(np.setdiff1d(np.arange(n), held), i)
        scores[held] = per_example_loss(model, subset(train, held))
    return scores


def rank_select(scores: np.ndarray, size: int, *, hardest: bool, skip: int = 0) -> np.ndarray:
    """Sorted rows of the `size` highest (hardest) or lowest scores after the first `skip` of that ranking (the
    validation set of hard/easy:p is the next p%); ties broken by row id."""
    order = np.lexsort((np.arange(len(scores)), -scores if hardest else scores))
    return np.sort(order[skip:skip + size]).astype(np.int64)


def selector(fit: Callable[[np.ndarray, int], torch.nn.Module], *, folds: int = FOLDS, seed: int = 0):
    """A make_split(..., selector=) callable for hard:<pct> / easy:<pct>; `fit(rows, fold)` trains a fresh model."""
    def choose(spec, train: Dataset) -> np.ndarray:
        scores = out_of_fold_loss(train, fit, folds=folds, seed=seed)
        size = max(1, int(round(len(train) * spec.pct / 100)))
        return rank_select(scores, size, hardest=spec.kind == "hard")
    return choose


__all__ = ["FOLDS", "out_of_fold_loss", "per_example_loss", "rank_select", "selector"]
