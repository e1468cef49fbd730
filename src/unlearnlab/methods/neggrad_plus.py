"""NegGrad+: descend on the retain loss and ascend on the forget loss at once, on paired batches."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import param
from ..data.core import batches
from ..errors import DataError
from ..seeding import torch_generator
from ..train import check_finite, lr_factor, make_optimizer
from .base import FinetuneConfig, MethodContext, recipe, register


@dataclasses.dataclass(frozen=True)
class NegGradPlusConfig(FinetuneConfig):
    """NegGrad+ (Kurmanji et al. 2023, 'Towards Unbounded Machine Unlearning', NeurIPS): minimise
    β·CE(D_r) − (1−β)·CE(D_f); each retain batch is paired with a forget batch, the smaller set cycles. As in the
    reference code the two batches go through the model in separate forward passes (in train mode BatchNorm then
    normalises each batch with its own statistics, as theirs does) and the learning rate is constant. `l2_pull` adds
    the proximal term of their small-scale notebook, β·(μ/2)·‖θ − θ0‖² toward the original weights (there μ = 0.1,
    with momentum-free SGD in eval mode); 0 (default) = train_negrad of their large-scale code, which has none."""

    beta: float = param(0.99, "weight of the retain loss; the forget loss gets 1-β (Kurmanji et al. tune β in "
                              "≈0.95-0.99; we take the upper end, the gentler forget term; grid: that range, "
                              "REFERENCES)", low=0.0, high=1.0, search=("float", 0.95, 0.99))
    epochs: int = param(5, "epochs; one epoch = as many paired steps as the larger of D_r and D_f has batches "
                           "(the paper tunes epochs per setting; 5 is our choice)", low=0)
    lr: float = param(0.01, "learning rate (FT-style SGD, as for FT in Fan et al. 2024; search: ours, log "
                            "1e-3..1e-1)", low=0.0, search=("log", 1e-3, 1e-1))
    schedule: str = param("constant", "learning-rate schedule (reference code: constant)",
                          choices=("constant", "cosine", "step", "linear"))
    l2_pull: float = param(0.0, "μ of the proximal term β·(μ/2)·‖θ − θ0‖² pulling toward the original weights "
                                "(SCRUB repo small_scale_unlearning.ipynb: 0.1; 0 = off, as train_negrad)", low=0.0)
    joint_forward: bool = param(False, "one forward pass over the concatenated retain+forget batch (faster, but "
                                       "BatchNorm then mixes the statistics of both batches; the reference runs "
                                       "two passes)")


def _cycle(ds: Dataset, batch_size: int, gen: torch.Generator, augment: bool, crop_pad: int = 4,
           pad_mode: str = "zeros") -> Iterator:
    """Endless shuffled batches of `ds`: a fresh seeded permutation at each pass."""
    if len(ds) == 0:
        raise DataError("neggrad_plus needs a non-empty retain set and forget set; one of them is empty.")
    while True:
        yield from batches(ds, batch_size, shuffle=True, gen=gen, augment=augment, crop_pad=crop_pad,
                           pad_mode=pad_mode)


def neggrad_plus_loss(model, task, retain_batch, forget_batch, beta: float, joint: bool = False) -> torch.Tensor:
    """β·CE(retain batch) − (1−β)·CE(forget batch): two forward passes (reference), or one over both (`joint`)."""
    xr, yr = task.to_device(retain_batch)
    xf, yf = task.to_device(forget_batch)
    if joint:
        logits = task.forward(model, torch.cat([xr, xf]))
        lr_, lf = logits[: len(yr)], logits[len(yr):]
    else:
        lr_, lf = task.forward(model, xr), task.forward(model, xf)
    return beta * F.cross_entropy(lr_, yr) - (1.0 - beta) * F.cross_entropy(lf, yf)


def proximal(model, anchor: list[torch.Tensor], mu: float) -> torch.Tensor:
    """(μ/2)·‖θ − θ0‖² over the trainable parameters (anchor: θ0 in the same order)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return 0.5 * mu * sum((p - a).pow(2).sum() for p, a in zip(params, anchor))


@register("neggrad_plus", NegGradPlusConfig, "Retain-loss descent plus forget-loss ascent on paired batches",
          "Kurmanji et al. 2023, 'Towards Unbounded Machine Unlearning' (NegGrad+), NeurIPS")
def neggrad_plus(model, data, cfg: NegGradPlusConfig, task, ctx: MethodContext):
    """Minimise β·CE(D_r) − (1−β)·CE(D_f) over cfg.epochs of paired (retain, forget) batches."""
    rec = recipe(cfg, ctx)
    retain, forget = data.retain, data.forget
    model.to(task.device).train()
    opt = make_optimizer(model.parameters(), rec)
    bs = rec.batch_size
    steps_per_epoch = max(math.ceil(len(retain) / bs), math.ceil(len(forget) / bs))
    total = cfg.epochs * steps_per_epoch
    r_iter = _cycle(retain, bs, torch_generator(ctx.seed, "neggrad_plus", "retain"), rec.augment, rec.crop_pad,
                    rec.pad_mode)
    f_iter = _cycle(forget, bs, torch_generator(ctx.seed, "neggrad_plus", "forget"), rec.augment, rec.crop_pad,
                    rec.pad_mode)
    anchor = [p.detach().clone() for p in model.parameters() if p.requires_grad] if cfg.l2_pull > 0 else []
    for step in range(total):
        for g in opt.param_groups:
            g["lr"] = rec.lr * lr_factor(rec.schedule, step, total)
        loss = neggrad_plus_loss(model, task, next(r_iter), next(f_iter), cfg.beta, cfg.joint_forward)
        if anchor:
            loss = loss + cfg.beta * proximal(model, anchor, cfg.l2_pull)
        check_finite(loss, step, "neggrad_plus")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model
