"""DoCo: concept domain correction (a discriminator tells the model's x0-predictions for the forgotten class from the
frozen original's for an anchor class, on the same noisy anchor images; the UNet learns to fool it) with
concept-preserving gradient surgery against an anchor prior-preservation loss."""
from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..config import param
from ..errors import ConfigError
from ..seeding import torch_generator
from ._diffusion_common import (
    cycle,
    iterate,
    noisy,
    predict_x0,
    preserve_gradient,
    retained_labels,
    subset,
    train_only,
)
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class DoCoConfig:
    """DoCo (Wu, Zhou, Yang, Wang, Chang, Zhu, Hu, Zhou & Yang, 'Unlearning Concepts in Diffusion Model via Concept
    Domain Correction and Concept Preserving Gradient', AAAI 2025, arXiv 2405.15304; official code
    yongliang-wu/DoCo train.py, DoCo/gan.py, DoCo/gradient_clip.py). Anchor images are generated once by the original
    for the anchor condition; each step noises a batch of them at a random t, the trained model predicts x0 for the
    forgotten class (fake) and the frozen original for the anchor class (real); a PatchGAN discriminator (BCE,
    real = 0, fake = 1) learns to separate them, trained alone for `warm_up` steps; then the UNet minimises
    BCE(D(fake), real) with the anchor prior loss MSE(eps(x_t, c_a), eps) either added (weight 0.1) or, with surgery,
    used only to remove the conflicting part of the adversarial gradient (per weight tensor). Defaults from the
    official README's instance command (2000 steps of which 1000 warm-up, batch 8, lr 6e-6 x batch 8 by --scale_lr,
    dlr 1e-4, lambda 1, cross-attention k/v) and train.py (AdamW wd 1e-2, clip 1.0, 1000 anchor images). The
    third-party re-implementation justinhylee135/CUIG (UnlearningMethods/DoCo) uses 1000 steps / 500 warm-up,
    lr 5e-5, dlr 5e-4, batch 4, 200 anchor images and t = T - 1 only; see docs/diffusion.md."""

    iterations: int = param(2000, "total steps, discriminator warm-up included (README: --max_train_steps 2000; "
                                  "CUIG re-implementation: 1000)", low=1)
    warm_up: int = param(1000, "first steps that train only the discriminator (README: --warm_up 1000; train.py "
                               "default and CUIG: 500)", low=0)
    lr: float = param(4.8e-5, "AdamW learning rate of the UNet (README: 6e-6 scaled by batch 8 via --scale_lr; "
                              "CUIG: 5e-5)", low=0.0, search=("log", 1e-5, 1e-2))
    dlr: float = param(1e-4, "Adam (betas 0.5, 0.999) learning rate of the discriminator (README instance and "
                             "nudity: 1e-4, style: 5e-4; CUIG: 5e-4)", low=0.0, search=("log", 1e-5, 1e-2))
    batch_size: int = param(8, "anchor images per step, for each of the adversarial and prior terms (README: 8; "
                               "CUIG: 4)", low=1)
    anchor: int = param(-1, "anchor class c_a (the paper's anchor concept); -1 = (c_f + 1) mod K, or the next "
                                "retained condition when several are forgotten (two-factor data)", low=-1)
    anchor_images: int = param(1000, "anchor images generated once by the original (DDIM with the task's steps "
                                     "and guidance); train.py --num_class_images 1000; CUIG: 200", low=1)
    parameter_group: str = param("cross-attn", "trained UNet weights: cross-attn = the condition-reading layers "
                                               "(SD: attn2; the digit DDPM, which has no cross-attention: each "
                                               "block's time_emb_proj, as ESD-x here; the code trains attn2 "
                                               "to_k/to_v), full-weight = the whole UNet",
                                 choices=("cross-attn", "full-weight"))
    surgery: str = param("code", "concept-preserving gradient: code = the official adjust_gradient (per weight "
                                 "tensor, g_u - cos(g_u, g_r) g_r/|g_r| when they conflict; the prior gradient is "
                                 "then not applied), project = exact PCGrad projection per tensor (ours), off = "
                                 "the sum adversarial + prior_weight x prior (the code without --gradient_clip)",
                         choices=("code", "project", "off"))
    surgery_scale: float = param(1.0, "lambda, the fraction of the conflicting component removed (code: 1)",
                                 low=0.0)
    preserve: str = param("anchor", "data of the preservation loss: anchor = the generated anchor images with the "
                                    "anchor label (the code's prior preservation), retain = real retained-class "
                                    "images with their labels (ours: the engine has D_r)", choices=("anchor", "retain"))
    prior_weight: float = param(0.1, "weight of the anchor prior loss when surgery is off (code: prior_loss_weight "
                                     "1.0 x 0.1)", low=0.0)
    weight_decay: float = param(1e-2, "AdamW weight decay of the UNet (code: 1e-2)", low=0.0)
    grad_clip: float = param(1.0, "gradient-norm clip of each UNet gradient before surgery (code: max_grad_norm 1)",
                             low=0.0)


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (as the code's, on the denoiser's x0 space): stride-2 4x4 convolutions with LeakyReLU 0.2
    and BatchNorm after the first, then a 3x3 convolution to one logit per patch; depth shrinks with the input
    (two blocks at 8x8, 2x2 patches; three at 16x16; the code's four on 64x64 SD latents)."""

    def __init__(self, channels: int, size: int, width: int = 32):
        super().__init__()
        layers, c_in, c_out, s = [], channels, width, size
        while s > 2 and len(layers) < 12:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
            layers += [nn.BatchNorm2d(c_out)] if c_in != channels else []
            layers += [nn.LeakyReLU(0.2)]
            c_in, c_out, s = c_out, 2 * c_out, s // 2
        self.net = nn.Sequential(*layers, nn.Conv2d(c_in, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    """BCE-with-logits of every patch logit against one label (the code's criterion)."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def anchor_pool(frozen, forget_classes: list[int], cfg: DoCoConfig, task, gen: torch.Generator):
    """(images, anchor labels, forget labels): `anchor_images` samples of the original for each forgotten class's
    anchor (split evenly over forgotten classes)."""
    from ..models.ddpm import sample

    k = frozen.num_classes
    nxt = retained_labels(torch.tensor(forget_classes), forget_classes, k, "next", gen).tolist()
    pairs = [(n if cfg.anchor < 0 else cfg.anchor, c) for n, c in zip(nxt, forget_classes)]
    if any(a in forget_classes or a >= k for a, _ in pairs):
        raise ConfigError(f"DoCo's anchor must be a retained class below {k}; got anchor {cfg.anchor} for "
                          f"forgotten classes {forget_classes}.")
    n = [cfg.anchor_images // len(pairs) + (i < cfg.anchor_images % len(pairs)) for i in range(len(pairs))]
    ya = torch.cat([torch.full((m,), a) for m, (a, _) in zip(n, pairs)])
    yf = torch.cat([torch.full((m,), c) for m, (_, c) in zip(n, pairs)])
    x = sample(frozen, ya.to(task.device), steps=task.sample_steps, scale=task.guidance, gen=gen)
    return x, ya.to(task.device), yf.to(task.device)


def preservation_batch(pool_x, pool_a, retain, n: int, task, gen: torch.Generator):
    """(x0, labels) of the preservation loss: anchor images with the anchor label, or a retained-data batch."""
    if retain is not None:
        return task.to_device(next(retain))
    idx = torch.randint(0, len(pool_x), (n,), generator=gen).to(pool_x.device)
    return pool_x[idx], pool_a[idx]


def clipped_grads(loss: torch.Tensor, params: list[nn.Parameter], clip: float, keep: bool) -> list[torch.Tensor]:
    """d loss / d params with the global norm clipped to `clip` (0 = off), as the code's norm_grad."""
    grads = torch.autograd.grad(loss, params, retain_graph=keep, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    if clip > 0 and norm > clip:
        grads = [g * (clip / (norm + 1e-6)) for g in grads]
    return grads


def unet_update(opt, params, adv: torch.Tensor, prior: torch.Tensor, cfg: DoCoConfig, stats: dict) -> None:
    """One UNet step: surgery off = the clipped gradient of adv + prior_weight x prior; otherwise the clipped
    adversarial gradient with its conflicting part against the clipped prior gradient removed per tensor."""
    from ..train import check_finite

    check_finite(adv + prior, 0, "DoCo")
    if cfg.surgery == "off":
        grads = clipped_grads(adv + cfg.prior_weight * prior, params, cfg.grad_clip, keep=False)
    else:
        g_r = clipped_grads(prior, params, cfg.grad_clip, keep=True)
        g_u = clipped_grads(adv, params, cfg.grad_clip, keep=False)
        grads = [preserve_gradient(u, r, cfg.surgery, cfg.surgery_scale) for u, r in zip(g_u, g_r)]
        stats["conflicts"] += sum(int(torch.dot(u.flatten(), r.flatten()) < 0) for u, r in zip(g_u, g_r))
        stats["tensors"] += len(params)
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()


@register("doco", DoCoConfig, "Adversarial concept domain correction toward an anchor class, with concept-"
          "preserving gradient surgery", "Wu et al. 2025, 'Unlearning Concepts in Diffusion Model via Concept Domain "
          "Correction and Concept Preserving Gradient', AAAI (arXiv 2405.15304)", kinds=("diffusion",))
def doco(model, data, cfg: DoCoConfig, task, ctx: MethodContext):
    """Discriminator warm-up, then alternating UNet (fool D, surgery) and discriminator steps."""
    if cfg.warm_up >= cfg.iterations:
        raise ConfigError(f"DoCo's warm_up ({cfg.warm_up}) must be below iterations ({cfg.iterations}): the UNet "
                          "only trains after the discriminator's warm-up.")
    model.to(task.device)
    gen = torch_generator(ctx.seed, "doco")
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    pool_x, pool_a, pool_f = anchor_pool(frozen, sorted(int(c) for c in torch.unique(data.forget.y)), cfg, task, gen)
    params = subset(model, "esd-x" if cfg.parameter_group == "cross-attn" else "full")
    train_only(model, params)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
        disc = PatchDiscriminator(model.channels, model.size).to(task.device)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.dlr, betas=(0.5, 0.999))
    stats = {"conflicts": 0, "tensors": 0, "d_acc": 0.0}
    retain = cycle(data.retain, cfg.batch_size, gen) if cfg.preserve == "retain" else None
    model.train()
    for i in iterate(cfg.iterations, "doco"):
        idx = torch.randint(0, len(pool_x), (cfg.batch_size,), generator=gen).to(task.device)
        xt, t, _ = noisy(model, pool_x[idx], gen)
        fake = predict_x0(model, xt, t, model.eps(xt, t, pool_f[idx]))
        with torch.no_grad():
            real = predict_x0(frozen, xt, t, frozen.eps(xt, t, pool_a[idx]))
        if i >= cfg.warm_up:
            x_p, y_p = preservation_batch(pool_x, pool_a, retain, cfg.batch_size, task, gen)
            xp, tp, ep = noisy(model, x_p, gen)
            prior = (model.eps(xp, tp, y_p) - ep).pow(2).mean()
            unet_update(opt, params, bce(disc(fake), 0.0), prior, cfg, stats)
        out_real, out_fake = disc(real), disc(fake.detach())
        opt_d.zero_grad(set_to_none=True)
        (bce(out_real, 0.0) + bce(out_fake, 1.0)).backward()
        opt_d.step()
        stats["d_acc"] = float(((out_real < 0).float().mean() + (out_fake > 0).float().mean()) / 2)
    model.requires_grad_(True)
    ctx.info.update(doco_trained_params=sum(p.numel() for p in params), doco_final_d_acc=stats["d_acc"],
                    doco_conflict_fraction=stats["conflicts"] / max(stats["tensors"], 1))
    return model
