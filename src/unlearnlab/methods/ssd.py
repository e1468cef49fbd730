"""SSD: dampen the parameters that matter far more to the forget set than to the whole training set."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..config import param
from ..data.core import batches
from ..seeding import torch_generator
from ..train import check_finite
from .base import MethodContext, register

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class SSDConfig:
    """Selective Synaptic Dampening (Foster et al. 2024, AAAI; code if-loops/selective-synaptic-dampening,
    src/ssd.py ParameterPerturber). Importances are mean squared gradients of the per-batch mean CE (the diagonal
    empirical Fisher estimate of their calc_importance) over D (full train set) and D_f, in eval mode. Their loaders
    read CIFAR in its native order, where classes are mixed within every batch; we draw batches in a seeded
    shuffled order by default so that a class-sorted dataset (e.g. the CIFAR-10 dev subset) gives the same kind of
    mixed batches -- in class order every D batch is single-class, no gradient cancels inside a batch, and α=10
    selected 0% of a CIFAR ResNet-18's parameters for class forgetting (53% with shuffled batches). REFERENCES
    notes λ=1, α=10 can wreck retain accuracy for some classes; lower α to be gentler. The authors' random-forgetting
    protocol (src/cifar10_random_exps.sh, forget_random_main.py) forgets ~100 random examples (forget_perc 0.00165 of
    CIFAR-10's 50,000) with the same λ=1, α=10: use the forget spec `sample:100`. On a large random forget set
    (random:10%) its importances seldom exceed α·I_D and SSD can select nothing; each run records the fraction of
    parameters selected (method_info.selected_fraction) and warns when it is zero."""

    dampening_constant: float = param(1.0, "λ: selected parameters are scaled by min(λ·I_D/I_f, 1) (SSD paper and "
                                           "code: 1; search: ours, log 0.1..10)", low=0.0, search=("log", 0.1, 10.0))
    selection_weighting: float = param(10.0, "α: a parameter is selected when I_f > α·I_D (SSD code: 10 for "
                                             "ResNet-18, CIFAR full-class/sub-class/random; 5 for ViT, their "
                                             "model_size_scaler; 50 with λ=0.1 for PinsFaceRecognition). Grid: the "
                                             "corrective-unlearning bench's {0.1, 1, 10, 50} (REFERENCES-SEEDS A9) "
                                             "plus 100 and 500 (ours): α's scale depends on the model, and on the "
                                             "1.2M-parameter cifar10-dev FastCNN α=10 selects ~16% of the weights "
                                             "for a class and leaves test accuracy near 24%, α=100 ~1.3% (forget "
                                             "accuracy 0, test accuracy within a point of the original's; "
                                             "docs/benchmark_cifar10.md)", low=0.0,
                                       search=("choice", 0.1, 1.0, 10.0, 50.0, 100.0, 500.0))
    batch_size: int = param(128, "batch size of the importance estimates; importances are per-batch gradients "
                                 "squared and averaged over batches, so it matters (SSD code: 128)", low=1)
    order: str = param("shuffled", "batch order of the importance passes: 'shuffled' (seeded; mixed batches as in "
                                   "the authors' CIFAR loaders) or 'dataset' (stored order)",
                       choices=("shuffled", "dataset"))


def batch_importance(model: nn.Module, dataset, loss: LossFn, *, batch_size: int, power: float,
                     gen: torch.Generator | None = None,
                     what: str = "importance") -> dict[str, torch.Tensor]:
    """Per-parameter mean over batches of |∇θ loss(batch)|**power (power 2: SSD's Fisher diagonal; 1: LFSSD)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p) for n, p in named}
    count = 0
    for step, batch in enumerate(batches(dataset, batch_size, shuffle=gen is not None, gen=gen)):
        value = loss(model, batch)
        check_finite(value, step, what)
        grads = torch.autograd.grad(value, [p for _, p in named], allow_unused=True)
        for (n, _), g in zip(named, grads):
            if g is not None:
                acc[n] += g.square() if power == 2 else g.abs().pow(power)
        count += 1
    return {n: v / max(count, 1) for n, v in acc.items()}


@torch.no_grad()
def dampen(model: nn.Module, imp_full: dict[str, torch.Tensor], imp_forget: dict[str, torch.Tensor], *,
           selection_weighting: float, dampening_constant: float) -> dict[str, int]:
    """SSD's update in place: where I_f > α·I_D, θ ← θ·min(λ·I_D/I_f, 1). Returns the selected count per parameter."""
    selected = {}
    for n, p in model.named_parameters():
        if n not in imp_forget:
            continue
        i_d, i_f = imp_full[n], imp_forget[n]
        mask = i_f > selection_weighting * i_d
        ratio = (dampening_constant * i_d / i_f.clamp_min(torch.finfo(i_f.dtype).tiny)).clamp(max=1.0)
        p.mul_(torch.where(mask, ratio, torch.ones_like(ratio)))
        selected[n] = int(mask.sum())
    return selected


def ssd_apply(model: nn.Module, data, task, cfg: SSDConfig, loss: LossFn, power: float, name: str,
              seed: int = 0, ctx: MethodContext | None = None) -> nn.Module:
    """Importances of D_f and D under `loss`, then SSD's selection and dampening (shared by ssd and lfssd)."""
    model.to(task.device).eval()

    def gen(split: str) -> torch.Generator | None:
        return torch_generator(seed, name, "order", split) if cfg.order == "shuffled" else None

    imp_f = batch_importance(model, data.forget, loss, batch_size=cfg.batch_size, power=power, gen=gen("forget"),
                             what=f"{name} (forget importance)")
    imp_d = batch_importance(model, data.train, loss, batch_size=cfg.batch_size, power=power, gen=gen("train"),
                             what=f"{name} (train importance)")
    selected = dampen(model, imp_d, imp_f, selection_weighting=cfg.selection_weighting,
                      dampening_constant=cfg.dampening_constant)
    if ctx is not None:
        note_selection(ctx, name, selected, {n: p.numel() for n, p in model.named_parameters() if n in selected},
                       cfg.selection_weighting)
    return model


def note_selection(ctx: MethodContext, name: str, selected: dict[str, int], sizes: dict[str, int],
                   alpha: float) -> None:
    """Record the fraction of parameters SSD selected (run record `method_info`) and warn when it is zero: the
    model is then returned unchanged, which must never pass as a result."""
    total, chosen = sum(sizes.values()), sum(selected.values())
    ctx.info.update({"selected_params": chosen, "total_params": total,
                     "selected_fraction": chosen / total if total else 0.0})
    if chosen == 0:
        ctx.warnings.append(f"{name} selected 0 of {total} parameters (α={alpha:g}): the model is returned "
                            "unchanged. Lower selection_weighting (α) or tune it (the authors use α=10 with λ=1; "
                            "on random forgetting the forget set's importances rarely exceed α·I_D).")


@register("ssd", SSDConfig, "Selective Synaptic Dampening: shrink weights specialised to the forget set",
          "Foster, Schoepf & Brintrup 2024, 'Fast Machine Unlearning Without Retraining Through Selective "
          "Synaptic Dampening', AAAI")
def ssd(model, data, cfg: SSDConfig, task, ctx: MethodContext):
    """Retraining-free: one importance pass over D_f and D, then multiplicative dampening."""
    return ssd_apply(model, data, task, cfg, task.loss, 2, "ssd", ctx.seed, ctx)
