"""Gradient ascent on the forget set's diffusion loss plus a retain loss (the SalUn DDPM code's `ga` method)."""
from __future__ import annotations

import dataclasses

import torch

from ..config import param
from ..seeding import torch_generator
from ._diffusion_common import cycle, ddpm_sum_loss, iterate, step
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class GAGenConfig:
    """GA for diffusion models as in SalUn's DDPM code (Fan et al. 2024, ICLR; OPTML-Group/Unlearn-Saliency
    DDPM/runners/diffusion.py saliency_unlearn, method ga): L = -L_DDPM(D_f) + alpha L_DDPM(D_r), both the
    conditional noise loss summed over pixels (label dropout 0.1, antithetic t). Defaults from the code's
    cifar10_saliency_unlearn.yml (Adam lr 1e-4, batch 128, grad clip 1.0, 1000 iterations) and its README (alpha
    1e-3)."""

    iterations: int = param(1000, "optimisation steps (code: n_iters 1000)", low=0)
    lr: float = param(1e-4, "Adam learning rate (code: 1e-4)", low=0.0, search=("log", 1e-5, 1e-3))
    batch_size: int = param(128, "forget and retain examples per step (code: 128 each)", low=1)
    alpha: float = param(1e-3, "weight of the retain loss (code README: --alpha 1e-3)", low=0.0,
                         search=("log", 1e-4, 1.0))
    grad_clip: float = param(1.0, "gradient-norm clip (code: 1.0; 0 = off)", low=0.0)


@register("ga_gen", GAGenConfig, "Gradient ascent on the forget diffusion loss with a weighted retain loss",
          "Fan et al. 2024, 'SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency', ICLR "
          "(DDPM code, method ga)", kinds=("diffusion",))
def ga_gen(model, data, cfg: GAGenConfig, task, ctx: MethodContext):
    """-L(D_f) + alpha L(D_r) with Adam, every parameter trainable (the code's optimiser takes them all)."""
    model.to(task.device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch_generator(ctx.seed, "ga_gen")
    retain, forget = cycle(data.retain, cfg.batch_size, gen), cycle(data.forget, cfg.batch_size, gen)
    for _ in iterate(cfg.iterations, "ga_gen"):
        xr, yr = task.to_device(next(retain))
        xf, yf = task.to_device(next(forget))
        loss = -ddpm_sum_loss(model, xf, yf, gen) + cfg.alpha * ddpm_sum_loss(model, xr, yr, gen)
        step(opt, loss, params, cfg.grad_clip)
    return model
