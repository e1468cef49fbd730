"""Worst-case forget set (Fan, Liu, Hero, Liu, "Challenging Forgets: Unveiling the Worst-Case Forget Sets in Machine
Unlearning", ECCV 2024; code OPTML-Group/Unlearn-WorstCase, data-wise/).

Bi-level selection with per-example weights w in [0, 1]^N, sum(w) = m:
  lower: theta(w) = a few epochs of a weighted unlearning loss from the original model
         ft: sum_i (1 - w_i) CE_i, sign-SGD (the code's w_FT: fine-tune on what is kept);
         rl: CE on all rows with the current top-m given random labels, SGD (the code's w_RL);
         ga: -sum_i w_i CE_i, sign-SGD (ours: the code has no GA lower level; ascent on what is forgotten);
  upper: w <- Proj(w - w_lr * (CE(theta(w)) + 2 gamma w)), the projection onto {0 <= w <= 1, sum w = m} by bisection;
         every `bin_every` epochs w is replaced by its top-m indicator.
The upper step is first order (no implicit gradient through theta(w)), as in the official code. The chosen set is the
one that the unlearned model still fits best: the hardest to erase for that method.

Defaults from the official code (arg_parser / README example): w_lr 0.01, gamma 0, lower lr 1e-3 for 2 epochs,
feq_to_bi 20 (capped at the number of selection epochs). Deviations: 5 selection epochs (official default 10, README
example 2) and the weights start uniform at m/N (the code's commented-out alternative) instead of a random 0/1 set:
from a random start, a step of w_lr * CE (~0.01) cannot reorder weights of 0 and 1 within a few epochs.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..seeding import torch_generator
from .core import batches
from .memorisation import per_example_loss

METHODS = ("ft", "ga", "rl")


@dataclasses.dataclass(frozen=True)
class WorstCaseConfig:
    """Selection hyper-parameters (see the module docstring for their sources)."""

    select_epochs: int = 5
    unlearn_steps: int = 2
    theta_lr: float = 1e-3
    w_lr: float = 0.01
    gamma: float = 0.0
    bin_every: int = 20
    batch_size: int = 128
    init: str = "uniform"


def project(w: torch.Tensor, m: float, tol: float = 1e-5, max_iter: int = 200) -> torch.Tensor:
    """Euclidean projection of `w` onto {0 <= w <= 1, sum(w) = m}: clamp(w - mu, 0, 1) with mu found by bisection."""
    lo, hi = float(w.min()) - 1.0, float(w.max())
    for _ in range(max_iter):
        mu = (lo + hi) / 2
        total = float(torch.clamp(w - mu, 0, 1).sum())
        if abs(total - m) <= tol or hi - lo <= tol * 1e-3:
            break
        lo, hi = (mu, hi) if total > m else (lo, mu)
    return torch.clamp(w - mu, 0, 1)


def top(w: torch.Tensor, m: int) -> torch.Tensor:
    """The 0/1 indicator of the m largest weights (ties broken by row id)."""
    order = np.lexsort((np.arange(len(w)), -w.double().cpu().numpy()))
    out = torch.zeros_like(w)
    out[torch.as_tensor(order[:m])] = 1.0
    return out


def _lower(original: torch.nn.Module, train: Dataset, w: torch.Tensor, method: str, cfg: WorstCaseConfig,
           gen: torch.Generator) -> torch.nn.Module:
    """theta(w): the weighted unlearning loss from a copy of the original (ft / ga: sign-SGD; rl: SGD, as w_RL)."""
    model = copy.deepcopy(original).train()
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.theta_lr, momentum=0.9, weight_decay=5e-4) if method == "rl" else None
    if method == "rl":  # the current top-m rows get random labels, redrawn every lower-level run
        size = int(round(float(w.sum())))
        marked = top(w + 1e-9 * torch.rand(len(w), generator=gen, dtype=w.dtype), size).bool()
        with torch.no_grad():
            k = model(train[0][0].unsqueeze(0).to(device)).shape[1]
        random_y = torch.randint(0, k, (len(w),), generator=gen)
    for _ in range(cfg.unlearn_steps):
        for x, y, pos in batches(train, cfg.batch_size, shuffle=True, gen=gen, index=True):
            pos = torch.as_tensor(pos)
            if method == "rl":
                y = torch.where(marked[pos], random_y[pos], y)
            ce = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device), reduction="none")
            grads = torch.autograd.grad(_loss(method, ce, w[pos].to(device)), params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None and opt is None:
                        p.add_(g.sign(), alpha=-cfg.theta_lr)
                    elif g is not None:
                        p.grad = g
            if opt is not None:
                opt.step()
    return model.eval()


def _loss(method: str, ce: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """The lower-level loss of one batch (per-example CE `ce`, weights `wb`)."""
    if method == "ft":
        return ((1 - wb) * ce).sum()
    if method == "ga":
        return -(wb * ce).sum()
    return ce.sum()  # rl: the labels of the marked rows are already random


def select(model: torch.nn.Module, data, method: str = "ft", size: int = 0, *, cfg: WorstCaseConfig | None = None,
           seed: int = 0, exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted train rows of the worst-case forget set of `size` examples for `method` (ft, ga, rl), from the trained
    `model` (never modified); `data` is an UnlearnData (its train set is used) or a Dataset. Rows in `exclude` keep
    weight 0 and are never chosen (the validation set of worst:p is the worst-case set of the other rows)."""
    cfg = cfg or WorstCaseConfig()
    train = getattr(data, "train", data)
    n = len(train)
    if method not in METHODS:
        raise DataError(f"worst-case selection: method must be one of {', '.join(METHODS)}; got {method!r}.")
    free = torch.ones(n, dtype=torch.bool)
    if exclude is not None:
        free[torch.as_tensor(np.asarray(exclude, dtype=np.int64))] = False
    m = int(free.sum())
    if not 0 < size < m:
        raise DataError(f"worst-case selection: size must be between 1 and {m - 1} (the train set has {n} rows, "
                        f"{m} of them selectable); got {size}.")
    if cfg.init == "uniform":
        w = torch.where(free, size / m, 0.0).double()
    else:
        w = top(torch.rand(n, generator=torch_generator(seed, "worst-case-init"), dtype=torch.float64) - 2 * ~free,
                size)
    every = max(1, min(cfg.bin_every, cfg.select_epochs))
    for epoch in range(cfg.select_epochs):
        theta = _lower(model, train, w.float(), method, cfg, torch_generator(seed, "worst-case", epoch))
        g = torch.as_tensor(per_example_loss(theta, train))
        step = w - cfg.w_lr * (g + 2 * cfg.gamma * w)
        w = torch.zeros_like(w)
        w[free] = project(step[free], size)
        if (epoch + 1) % every == 0:
            w = top(w - 2 * ~free, size)
    return np.flatnonzero(top(w - 2 * ~free, size).numpy() > 0.5).astype(np.int64)


def selector(model: torch.nn.Module, *, cfg: WorstCaseConfig | None = None, seed: int = 0):
    """A make_split(..., selector=) callable choosing worst:<pct>:<method> rows with your trained `model`."""
    def choose(spec, train: Dataset) -> np.ndarray:
        size = max(1, int(round(len(train) * spec.pct / 100)))
        return select(model, train, spec.method, size, cfg=cfg, seed=seed)
    return choose


__all__ = ["METHODS", "WorstCaseConfig", "project", "select", "selector", "top"]
