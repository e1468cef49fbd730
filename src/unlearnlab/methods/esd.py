"""ESD (Erased Stable Diffusion): fine-tune the UNet so that its prediction for the erased condition follows the
frozen original's negatively guided one, on x_t drawn by partially sampling the model being trained."""
from __future__ import annotations

import copy
import dataclasses

import torch

from ..config import param
from ..seeding import torch_generator
from ._diffusion_common import iterate, step, subset, train_only
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class ESDConfig:
    """ESD (Gandikota et al. 2023, ICCV, 'Erasing Concepts from Diffusion Models'; code rohitgandikota/erasing).
    Loss || eps_theta(x_t, c_f, t) - [eps*(x_t, c_f, t) - eta (eps*(x_t, c_f, t) - eps*(x_t, null, t))] ||^2 with
    eps* the frozen original, x_t from `ddim_steps`-step DDIM sampling of the current model for c_f stopped at a
    random step. Defaults: the current diffusers script esd_sd.py (200 iterations, lr 5e-5, eta 2, guidance 3;
    the 2023 train-esd.py used 1000 iterations, lr 1e-5, eta 1 with the null prediction as the base, which gives
    the same target as eta 2 with the conditional base). Condition classes stand in for prompts."""

    train_method: str = param("esd-u", "which UNet weights train: esd-x = the layers that read the condition "
                                       "(cross-attention attn2 in a Stable Diffusion UNet, as the code; in the digit "
                                       "DDPM, which has none, each ResNet block's time_emb_proj; the paper's choice "
                                       "for styles), esd-u = every other UNet layer (the paper's choice for objects "
                                       "and nudity), full = all", choices=("esd-x", "esd-u", "full"))
    iterations: int = param(200, "optimisation steps (esd_sd.py: 200; train-esd.py 2023: 1000)", low=0)
    lr: float = param(5e-5, "Adam learning rate (esd_sd.py: 5e-5; train-esd.py: 1e-5)", low=0.0,
                      search=("log", 1e-5, 1e-2))
    negative_guidance: float = param(2.0, "eta, strength of the push away from the condition (esd_sd.py: 2)",
                                     low=0.0)
    base: str = param("cond", "the target's base prediction: cond = eps*(x_t, c_f) (esd_sd.py), null = "
                              "eps*(x_t, null) (the paper and train-esd.py)", choices=("cond", "null"))
    start_guidance: float = param(3.0, "classifier-free guidance of the partial sampling that makes x_t (code: 3)",
                                  low=0.0)
    ddim_steps: int = param(50, "DDIM steps of the partial sampling; x_t stops at a uniformly random one of them "
                                "(code: 50)", low=1)
    batch_size: int = param(1, "x_t drawn per iteration (code: 1 image per step)", low=1)


def esd_target(frozen, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor, eta: float, base: str) -> torch.Tensor:
    """The negatively guided target of the frozen original at (x_t, t) for labels `y`."""
    with torch.no_grad():
        pos = frozen.eps(xt, t, y)
        null = frozen.eps(xt, t, torch.full_like(y, frozen.null))
        return (pos if base == "cond" else null) - eta * (pos - null)


@register("esd", ESDConfig, "Negative-guidance fine-tuning toward the frozen model's guided-away prediction",
          "Gandikota, Materzynska, Fiotto-Kaufman & Bau 2023, 'Erasing Concepts from Diffusion Models', ICCV",
          kinds=("diffusion",))
def esd(model, data, cfg: ESDConfig, task, ctx: MethodContext):
    """ESD on the forget set's class(es): data-free (only the labels of D_f name the concept)."""
    from ..models.ddpm import ddim_timesteps, sample

    model.to(task.device)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    concepts = torch.unique(data.forget.y)
    params = subset(model, cfg.train_method)
    train_only(model, params)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch_generator(ctx.seed, "esd")
    times = ddim_timesteps(model, cfg.ddim_steps)
    for _ in iterate(cfg.iterations, "esd"):
        y = concepts[torch.randint(0, len(concepts), (cfg.batch_size,), generator=gen)].to(task.device)
        k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=gen))
        model.eval()
        xt = sample(model, y, steps=cfg.ddim_steps, scale=cfg.start_guidance, gen=gen, stop_at=k)
        t = times[k].expand(len(y)).to(task.device)
        target = esd_target(frozen, xt, t, y, cfg.negative_guidance, cfg.base)
        model.train()
        loss = (model.eps(xt, t, y) - target).pow(2).mean()
        step(opt, loss, params, 0.0)
    model.requires_grad_(True)
    ctx.info["esd_trained_params"] = sum(p.numel() for p in params)
    return model
