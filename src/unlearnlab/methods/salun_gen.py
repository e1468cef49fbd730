"""SalUn for diffusion: a saliency mask from the forget diffusion loss, then relabelling the forgotten class's
noise prediction to another class's on the salient weights only (SalUn's DDPM code, method rl)."""
from __future__ import annotations

import dataclasses

import torch

from ..config import param
from ..seeding import torch_generator
from ._diffusion_common import cycle, ddpm_sum_loss, iterate, noisy, retained_labels, step
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class SalUnGenConfig:
    """SalUn for class-conditional DDPMs (Fan et al. 2024, ICLR; code OPTML-Group/Unlearn-Saliency DDPM/runners/
    diffusion.py generate_mask + saliency_unlearn, method rl). Mask: top `threshold` of |sum over D_f batches of
    the clipped gradient of the guided forget noise loss| over all weights. Loss: MSE(eps(x_t, c_f), stopgrad
    eps(x_t, c')) + alpha L_DDPM(D_r), with c' = (c_f + 1) mod K a fixed next class and the target the current
    model's own prediction, as the code does (the paper describes a random other class: `relabel` = random).
    Defaults from cifar10_saliency_unlearn.yml and the README command (Adam 1e-4, batch 128, clip 1.0, 1000
    iterations, alpha 1e-3, mask with_0.5)."""

    iterations: int = param(1000, "optimisation steps (code: n_iters 1000)", low=0)
    lr: float = param(1e-4, "Adam learning rate (code: 1e-4)", low=0.0, search=("log", 1e-5, 1e-3))
    batch_size: int = param(128, "forget and retain examples per step (code: 128 each)", low=1)
    alpha: float = param(1e-3, "weight of the retain loss (code README: --alpha 1e-3)", low=0.0,
                         search=("log", 1e-4, 1.0))
    scale_alpha: bool = param(True, "multiply alpha by 3072 / (pixels x channels): the code's forget term is a "
                                    "per-pixel mean and its retain term a per-image sum, so this keeps the code's "
                                    "balance of the two on 32x32x3 CIFAR-10 (8x8 digits: x48); false = alpha as "
                                    "given (ours; at 8x8 the code's alpha leaves the retain term ~50x weaker)")
    grad_clip: float = param(1.0, "gradient-norm clip, also applied per batch to the mask gradients (code: 1.0)",
                             low=0.0)
    threshold: float = param(0.5, "fraction of all weights kept trainable, ranked by saliency (code: with_0.5.pt); "
                                  "1.0 = no mask (plain relabelling)", low=0.0, high=1.0)
    relabel: str = param("next", "target class c': next = (c_f + 1) mod K (the code), random = a random other class "
                                 "per example (the paper); with several forgotten conditions (two-factor data) the "
                                 "next / a random retained one", choices=("next", "random"))


def diffusion_saliency(model, forget, task, cfg: SalUnGenConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """0/1 mask per parameter: the top `threshold` of |sum_batches clip(grad L_f)| over all weights (global)."""
    from ..data.core import batches
    from ..models.ddpm import guided_eps

    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    model.eval()
    for batch in batches(forget, cfg.batch_size):
        x, y = task.to_device(batch)
        xt, t, eps = noisy(model, x, gen)
        loss = (eps - guided_eps(model, xt, t, y, task.guidance)).pow(2).flatten(1).sum(1).mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        for n, p in params.items():
            if p.grad is not None:
                grads[n] += p.grad
    model.zero_grad(set_to_none=True)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    chosen = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    k = int(len(flat) * cfg.threshold)
    if k > 0:
        chosen[torch.topk(flat, k, sorted=False).indices] = True
    out, start = {}, 0
    for n, g in grads.items():
        out[n] = chosen[start:start + g.numel()].view_as(g).to(g.dtype)
        start += g.numel()
    return out


def relabel_targets(y: torch.Tensor, k: int, how: str, gen: torch.Generator,
                    forget: list[int] | None = None) -> torch.Tensor:
    """c' for forget labels `y`: (y + 1) mod k, or a uniformly random other class. With several forgotten labels
    (`forget`: a style or an object of the two-factor set) c' is never one of them: the next retained label, or
    a random retained one (the next label of (object o, style s) is (o, s + 1), forgotten too when object o is)."""
    if forget is not None and len(forget) > 1:
        return retained_labels(y, forget, k, "rand" if how == "random" else "next", gen)
    if how == "next":
        return (y + 1) % k
    shift = torch.randint(1, k, y.shape, generator=gen).to(y.device)
    return (y + shift) % k


@register("salun_gen", SalUnGenConfig, "Saliency-masked relabelling of the forgotten class's noise prediction",
          "Fan et al. 2024, 'SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency', ICLR "
          "(DDPM code, method rl with mask)", kinds=("diffusion",))
def salun_gen(model, data, cfg: SalUnGenConfig, task, ctx: MethodContext):
    """Mask, then Adam on MSE(eps(x_t, c_f), sg eps(x_t, c')) + alpha L(D_r) with grad *= mask after clipping."""
    model.to(task.device)
    gen = torch_generator(ctx.seed, "salun_gen")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    masks = None
    if cfg.threshold < 1.0:
        mask = diffusion_saliency(model, data.forget, task, cfg, gen)
        masks = [mask[n] for n in names]
        ctx.info["salient_fraction"] = float(sum(m.sum() for m in masks) / sum(m.numel() for m in masks))
    opt = torch.optim.Adam(params, lr=cfg.lr)
    retain, forget = cycle(data.retain, cfg.batch_size, gen), cycle(data.forget, cfg.batch_size, gen)
    forgotten = sorted(int(c) for c in torch.unique(data.forget.y))
    alpha = cfg.alpha * (3072 / (model.channels * model.size ** 2) if cfg.scale_alpha else 1.0)
    ctx.info["effective_alpha"] = alpha
    model.train()
    for _ in iterate(cfg.iterations, "salun_gen"):
        xr, yr = task.to_device(next(retain))
        xf, yf = task.to_device(next(forget))
        xt, t, _ = noisy(model, xf, gen)
        out = model.eps(xt, t, yf)
        with torch.no_grad():
            target = model.eps(xt, t, relabel_targets(yf, model.num_classes, cfg.relabel, gen, forgotten))
        loss = (out - target).pow(2).mean() + alpha * ddpm_sum_loss(model, xr, yr, gen)
        step(opt, loss, params, cfg.grad_clip, masks)
    return model
