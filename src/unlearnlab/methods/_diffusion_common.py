"""Shared pieces of the diffusion methods (esd, ga_gen, salun_gen, doco, ...): progress, batches, antithetic
timesteps, the SalUn-code loss scale, x0-predictions, parameter subsets of the UNet, the optimisation step and
conflicting-gradient surgery."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..data.core import batches
from ..engine.events import training_step


def retained_labels(y: torch.Tensor, forget: list[int], k: int, how: str, gen: torch.Generator) -> torch.Tensor:
    """Stand-in labels for forgotten labels `y` (SFD's override, SalUn's relabelling, DoCo's anchor): `next` = the
    next label, cyclically, that is not forgotten ((c + 1) mod k when one class is forgotten), `rand` = a uniformly
    random retained label. On two-factor data the next label can be another condition of the forgotten object
    (y = o * S + s), which is why forgotten labels are skipped rather than taking (c + 1) mod k."""
    kept = torch.tensor([c for c in range(k) if c not in forget], device=y.device)
    if how == "rand":
        return kept[torch.randint(0, len(kept), y.shape, generator=gen).to(y.device)]
    nxt = [next(c % k for c in range(int(v) + 1, int(v) + k + 1) if c % k not in forget) for v in y.tolist()]
    return torch.tensor(nxt, dtype=y.dtype, device=y.device)


def iterate(n: int, what: str) -> Iterator[int]:
    """range(n), reporting each finished iteration to the engine's progress stream (throttled there), so that long
    diffusion unlearning runs show steps and an ETA as training does."""
    for i in range(n):
        yield i
        training_step(what, 1, 1, i + 1, n)


def cycle(ds, batch_size: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches of `ds` (as the SalUn code's `cycle(loader)`), from an explicit generator."""
    while True:
        yield from batches(ds, min(batch_size, len(ds)), shuffle=True, gen=gen)


def antithetic_t(n: int, timesteps: int, gen: torch.Generator) -> torch.Tensor:
    """n timesteps drawn as pairs (t, T - 1 - t), as the SalUn / DDIM codes sample them."""
    t = torch.randint(0, timesteps, (n // 2 + 1,), generator=gen)
    return torch.cat([t, timesteps - t - 1])[:n]


def noisy(model, x0: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_t, t, eps) for clean images `x0` with antithetic t."""
    from ..models.ddpm import _sched, q_sample

    t = antithetic_t(len(x0), model.timesteps, gen).to(x0.device)
    eps = torch.randn(x0.shape, generator=gen).to(x0.device)
    return q_sample(_sched(model), x0, t, eps), t, eps


def predict_x0(model, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clamped to [-1, 1] when the model's scheduler clips its
    samples (the digit DDPM's does; Stable Diffusion's latents do not): the scheduler's `pred_original_sample`."""
    from ..models.ddpm import _sched

    sched = _sched(model)
    abar = sched.alphas_cumprod.to(xt.device)[t].view(-1, *([1] * (xt.dim() - 1)))
    x0 = (xt - (1 - abar).sqrt() * eps) / abar.sqrt()
    return x0.clamp(-1, 1) if sched.config.get("clip_sample", False) else x0


def ddpm_sum_loss(model, x0: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
                  p_uncond: float = 0.1) -> torch.Tensor:
    """The SalUn code's conditional noise loss: squared error summed over pixels, mean over the batch, labels
    dropped to null with probability `p_uncond` (its default 0.1)."""
    xt, t, eps = noisy(model, x0, gen)
    if p_uncond > 0:
        drop = (torch.rand(len(y), generator=gen) < p_uncond).to(y.device)
        y = torch.where(drop, torch.full_like(y, model.null), y)
    return (model.eps(xt, t, y) - eps).pow(2).flatten(1).sum(1).mean()


def condition_layers(name: str, cross: bool) -> bool:
    """True for the UNet layers that read the condition: cross-attention `attn2` in a UNet2DConditionModel (Stable
    Diffusion, as ESD's code); in the digit DDPM, which has none, each ResNet block's projection of the (time +
    condition) embedding, `time_emb_proj` (our analogue)."""
    return "attn2" in name if cross else "time_emb_proj" in name


def subset(model: nn.Module, which: str) -> list[nn.Parameter]:
    """UNet parameters of ESD's train_method: esd-x = condition-reading layers (cross-attention or its analogue),
    esd-u = every other UNet layer, full = the whole UNet. The condition table (the text encoder's stand-in) is
    never in the set, as ESD never trains SD's text encoder."""
    named = list(model.unet.named_parameters())
    cross = any("attn2" in n for n, _ in named)
    return [p for name, p in named if which == "full" or (which == "esd-x") == condition_layers(name, cross)]


def train_only(model: nn.Module, params: list[nn.Parameter]) -> list[nn.Parameter]:
    """Freeze every weight of `model` but `params` (a method's parameter subset); returns `params`."""
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter], clip: float,
         masks: list[torch.Tensor] | None = None) -> None:
    """zero_grad, backward, clip the gradient norm (0 = off), multiply by the saliency masks, step."""
    from ..train import check_finite

    check_finite(loss, 0, "diffusion unlearning")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    if masks is not None:
        for p, m in zip(params, masks):
            if p.grad is not None:
                p.grad.mul_(m)
    opt.step()



def preserve_gradient(g_u: torch.Tensor, g_r: torch.Tensor, form: str = "project", scale: float = 1.0,
                      eps: float = 1e-8) -> torch.Tensor:
    """Concept-preserving gradient surgery (DoCo): when the unlearning gradient g_u conflicts with the preservation
    gradient g_r (g_u . g_r < 0), remove the conflicting part; otherwise return g_u unchanged.
    form `project` (PCGrad): g_u - scale (g_u . g_r / ||g_r||^2) g_r, after which g_u . g_r = 0 (scale 1).
    form `code` (DoCo's gradient_clip.adjust_gradient): g_u - scale cos(g_u, g_r) g_r / ||g_r||, which equals the
    projection only when ||g_u|| = 1 (the code clips both gradients to norm <= 1 first)."""
    u, r = g_u.flatten(), g_r.flatten()
    dot = torch.dot(u, r)
    if dot >= 0:
        return g_u
    if form == "project":
        rr = torch.dot(r, r)
        return g_u if rr == 0 else g_u - scale * (dot / rr) * g_r
    if form == "code":
        r_hat = g_r / (r.norm() + eps)
        return g_u - scale * (dot / ((u.norm() + eps) * (r.norm() + eps))) * r_hat
    raise ValueError(f"unknown surgery form {form!r}; choose project or code")
