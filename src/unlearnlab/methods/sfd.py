"""SFD (Score Forgetting Distillation): distil the frozen original diffusion model into a one-step generator with
Score identity Distillation (SiD), with the teacher's score for the forgotten class replaced by its score for an
override class. Data-free: only the labels of D_r and D_f are used, never their images."""
from __future__ import annotations

import copy
import dataclasses

import torch

from ..config import param
from ..seeding import torch_generator
from ..train import Average
from ._diffusion_common import iterate, retained_labels
from .base import MethodContext, register

CODE_T = 1000  # the SFD code's schedule length; t_init / t_min / t_max are given on it and scaled to the model's


@dataclasses.dataclass(frozen=True)
class SFDConfig:
    """SFD (Chen, Zhang & Zhou 2025, ICLR, 'Score Forgetting Distillation'; code tqch/score-forgetting-distillation
    DDPM/runners/diffusion.py train_sfd, functions/losses.py sid-sg / sid-g, configs/cifar10_sfd.yml). The
    generator G (a copy of the original read at the fixed step t_init from pure noise, one step) and a fake-score
    net f_psi (a copy of the original) are updated alternately: f_psi by the noise loss on G's samples, G by the
    SiD loss (1 - alpha)||D_phi - D_psi||^2 + (D_phi - D_psi)^T (D_psi - x_g), normalised per sample by
    mean|D_phi - x_g|, with D the x0-predictions at x_t = noised x_g. Remain terms use labels drawn from D_r for
    both nets; forget terms (weights g_forget_coef / sg_forget_coef) condition the teacher on the override class
    and f_psi on the forgotten class. Defaults from cifar10_sfd.yml (Adam lr 1e-5 with betas (0, 0.999) for both
    nets, batch 128, alpha 1.2, t_init 440, t in [38, 712) of T = 1000, coefficients 1 / 0.01, gradient values
    clipped at 1.0, 50k iterations). Deviations: t_init / t_min / t_max are scaled by T / 1000 to the model's
    schedule; the override is (c_f + 1) mod K (the code's fixed label_to_override 1 for its forget class 0); the
    remain and forget terms share one forward pass (the code runs two; the gradient is the same sum). The returned
    model is the generator's EMA (rate 0.9999 as the code, which samples and checkpoints the EMA); the CPU runs in
    docs/diffusion.md set ema 0 (over 50 steps a 0.9999 EMA is still the initial generator) and use 50 update
    pairs at batch 16, lr 1e-3 and forget weights 0.1; the tests use 100 pairs with ema 0.9 (the last iterate of
    a short run can collapse onto one class). SFD-Two Stage (stage1_iterations > 0)
    follows the code's loading of a distilled checkpoint: stage 2's teacher is stage 1's fake-score net."""

    iterations: int = param(50000, "alternating (fake score, generator) update pairs (code: n_iters 50000 at batch "
                                   "128 on CIFAR-10; the CPU runs of the 8x8 digits in the docs: 50)", low=0)
    lr: float = param(1e-5, "Adam learning rate of the generator and the fake-score net (code: 1e-5 both)",
                      low=0.0, search=("log", 1e-5, 1e-2))
    batch_size: int = param(128, "generator samples per term and step (code: 128)", low=1)
    alpha: float = param(1.2, "SiD's alpha in (1 - alpha)||D_phi - D_psi||^2 + (D_phi - D_psi)^T (D_psi - x_g) "
                              "(code: 1.2)", low=0.0)
    t_init: int = param(440, "the generator's fixed step on a 1000-step schedule, scaled by T / 1000 (code: 440)",
                        low=0, high=CODE_T - 1)
    t_min: int = param(38, "lowest step at which the scores are compared, on a 1000-step schedule (code: 38)",
                       low=0, high=CODE_T - 1)
    t_max: int = param(712, "step bound (exclusive) of the comparison, on a 1000-step schedule (code: 712)",
                       low=1, high=CODE_T)
    g_forget_coef: float = param(0.01, "weight of the generator's forget term; remain term weight 1 (code: 0.01)",
                                 low=0.0, search=("log", 1e-3, 1.0))
    sg_forget_coef: float = param(0.01, "weight of the fake-score net's forget term; remain term weight 1 "
                                        "(code: 0.01)", low=0.0)
    override: str = param("next", "teacher label for the forgotten class: next = (c_f + 1) mod K (the code's "
                                  "label_to_override 1 for its forget class 0), rand = a random other class per "
                                  "sample (the code's pseudo_label_type rand), none = no forgetting: every class "
                                  "distilled as retained (the code's --label_to_forget -1, stage 1 of its two-stage "
                                  "variant)", choices=("next", "rand", "none"))
    grad_clip: float = param(1.0, "clip every gradient value to [-clip, clip] (code: clip_grad_value_ 1.0; 0 = off)",
                             low=0.0)
    fake_lr: float = param(0.0, "Adam learning rate of the fake-score net; 0 = lr (code: 1e-5 as the generator's in "
                                "cifar10_sfd.yml, 3e-5 in cifar10_sid.yml and cifar10_sfd_2stage.yml)", low=0.0)
    ema: float = param(0.9999, "EMA rate of the generator's weights; the EMA is the returned model (code: ema_rate "
                               "0.9999, samples taken from the EMA). 0 = return the trained generator itself (the "
                               "CPU runs: after 50 steps a 0.9999 EMA is still the initial generator)",
                       low=0.0, high=0.999999)
    stage1_iterations: int = param(0, "SFD-Two Stage (the paper's variant; code README step 2, cifar10_sid.yml then "
                                      "cifar10_sfd_2stage.yml): first this many update pairs distilling every class "
                                      "with no forgetting (--label_to_forget -1), then `iterations` pairs of "
                                      "forgetting started from that checkpoint as the code loads it: stage 1's "
                                      "fake-score net becomes the teacher and the fake net's start, stage 1's "
                                      "generator (its EMA) the generator's start, fresh Adam states. 0 = one stage",
                                   low=0)


def scaled(step: int, timesteps: int) -> int:
    """A step of the code's 1000-step schedule on a `timesteps`-step one."""
    return min(timesteps - 1, round(step * timesteps / CODE_T))


def _noised(model, x0: torch.Tensor, t: torch.Tensor, gen: torch.Generator):
    """(x_t, sqrt(abar_t), sqrt(1 - abar_t), eps) for clean `x0`."""
    from ..models.ddpm import _sched

    abar = _sched(model).alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
    e = torch.randn(x0.shape, generator=gen).to(x0.device)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * e, abar.sqrt(), (1 - abar).sqrt(), e


def fake_score_loss(fake, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
                    gen: torch.Generator) -> torch.Tensor:
    """The fake-score net's noise loss on generator samples (code sid-sg: squared error summed over pixels), each
    sample weighted by `w` (1 / n for a remain term's, coef / n for a forget term's: the code's sum of batch means)."""
    xt, _, _, e = _noised(fake, x0, t, gen)
    return ((e - fake.eps(xt, t, y)).pow(2).flatten(1).sum(1) * w).sum()


def sid_loss(teacher, fake, x0: torch.Tensor, t: torch.Tensor, y_teacher: torch.Tensor, y_fake: torch.Tensor,
             w: torch.Tensor, alpha: float, gen: torch.Generator) -> torch.Tensor:
    """SiD generator loss (code sid-g): (D_phi - D_psi) . ((D_phi - x_g) - alpha (D_phi - D_psi)) / omega summed
    over pixels, omega = mean|D_phi - x_g| per sample (no gradient), weighted per sample by `w`; gradients reach
    x_g through x_t. The teacher reads `y_teacher` (the override label on forget samples), f_psi `y_fake`."""
    xt, a, b, _ = _noised(teacher, x0, t, gen)
    d_fake = (xt - b * fake.eps(xt, t, y_fake)) / a
    d_real = (xt - b * teacher.eps(xt, t, y_teacher)) / a
    with torch.no_grad():
        omega = (d_real - x0).abs().flatten(1).mean(1).clamp_min(1e-5).view(-1, *([1] * (x0.dim() - 1)))
    diff = d_real - d_fake
    return ((diff * ((d_real - x0) - alpha * diff) / omega).flatten(1).sum(1) * w).sum()


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list, clip: float, step: int) -> None:
    """zero_grad, backward, clip gradient values (as the code), step."""
    from ..train import check_finite

    check_finite(loss, step, "SFD")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_value_(params, clip)
    opt.step()


class _Run:
    """One distillation: the frozen teacher, the fake-score net, the generator, their optimisers and the label,
    noise and timestep draws (remain labels from D_r's label multiset, forget labels from D_f's)."""

    def __init__(self, model, data, cfg: SFDConfig, device, gen: torch.Generator, forgetting: bool, start=None):
        """`start`: (fake-score net, generator) of a finished stage 1, which this stage continues from."""
        from ..models.ddpm import OneStepGenerator

        self.cfg, self.device, self.k = cfg, device, model.num_classes
        score = model if start is None else start[0]
        self.teacher = copy.deepcopy(score).eval().requires_grad_(False)
        self.fake = copy.deepcopy(score).train().requires_grad_(True)
        self.g = (OneStepGenerator(copy.deepcopy(model), scaled(cfg.t_init, model.timesteps)) if start is None
                  else copy.deepcopy(start[1])).train().requires_grad_(True)
        self.ema = Average(self.g, cfg.ema, from_now=True) if cfg.ema > 0 else None
        self.t_lo = scaled(cfg.t_min, model.timesteps)
        self.t_hi = max(scaled(cfg.t_max, model.timesteps), self.t_lo + 1)
        self.gen, self.forgetting = gen, forgetting
        self.forget = sorted(int(c) for c in torch.unique(data.forget.y))
        self.remain = (data.retain.y if self.forgetting else torch.cat([data.retain.y, data.forget.y])).long()
        self.forget_y = data.forget.y.long()
        self.shape = (model.channels, model.size, model.size)
        adam = {"lr": cfg.lr, "betas": (0.0, 0.999), "eps": 1e-8}
        self.f_opt = torch.optim.Adam(self.fake.parameters(), **{**adam, "lr": cfg.fake_lr or cfg.lr})
        self.g_opt = torch.optim.Adam(self.g.parameters(), **adam)

    def distil(self, iterations: int, what: str) -> dict[str, float]:
        """Alternate fake-score and generator updates (then the EMA update, as the code); the last losses."""
        losses = {}
        for i in iterate(iterations, what):
            losses["fake"] = self.fake_step(i)
            losses["generator"] = self.generator_step(i)
            if self.ema is not None:  # the code's FixedEMAHelper: shadow = mu * shadow + (1 - mu) * param
                self.ema.update(self.g)
        return losses

    def result(self):
        """The generator to sample, its weights replaced by their EMA when one is kept (the code's ema_copy)."""
        if self.ema is not None:
            self.ema.copy_to(self.g)
        return self.g.eval()

    def draw(self, pool: torch.Tensor) -> torch.Tensor:
        return pool[torch.randint(0, len(pool), (self.cfg.batch_size,), generator=self.gen)].to(self.device)

    def batch(self, coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(labels, the teacher's labels, per-sample weights): remain labels, then (when forgetting with a positive
        coef) forget labels in the same batch, so that both terms share one forward pass (the code's sum of the
        two batch means: weights 1 / n and coef / n)."""
        yr = self.draw(self.remain)
        n = len(yr)
        if not self.forgetting or coef <= 0:
            return yr, yr, torch.full((n,), 1 / n, device=self.device)
        yf = self.draw(self.forget_y)
        yo = retained_labels(yf, self.forget, self.k, self.cfg.override, self.gen)
        w = torch.cat([torch.full((n,), 1 / n), torch.full((n,), coef / n)]).to(self.device)
        return torch.cat([yr, yf]), torch.cat([yr, yo]), w

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn((n, *self.shape), generator=self.gen).to(self.device)

    def times(self, n: int) -> torch.Tensor:
        return torch.randint(self.t_lo, self.t_hi, (n,), generator=self.gen).to(self.device)

    def fake_step(self, i: int) -> float:
        """f_psi's noise loss on fresh generator samples (no gradient to G)."""
        y, _, w = self.batch(self.cfg.sg_forget_coef)
        self.fake.requires_grad_(True)
        with torch.no_grad():
            x0 = self.g.generate(self.noise(len(y)), y)
        loss = fake_score_loss(self.fake, x0, y, self.times(len(y)), w, self.gen)
        _update(self.f_opt, loss, list(self.fake.parameters()), self.cfg.grad_clip, i)
        self.fake.requires_grad_(False)
        return float(loss.detach())

    def generator_step(self, i: int) -> float:
        """G's SiD loss against the teacher (override labels on forget samples) and the frozen f_psi."""
        y, y_teacher, w = self.batch(self.cfg.g_forget_coef)
        x0 = self.g.generate(self.noise(len(y)), y)
        loss = sid_loss(self.teacher, self.fake, x0, self.times(len(y)), y_teacher, y, w, self.cfg.alpha, self.gen)
        _update(self.g_opt, loss, list(self.g.parameters()), self.cfg.grad_clip, i)
        return float(loss.detach())


@register("sfd", SFDConfig, "Score identity distillation into a one-step generator, the forgotten class's teacher "
          "score replaced by an override class's", "Chen, Zhang & Zhou 2025, 'Score Forgetting Distillation: A "
          "Swift, Data-Free Method for Machine Unlearning in Diffusion Models', ICLR", kinds=("diffusion",))
def sfd(model, data, cfg: SFDConfig, task, ctx: MethodContext):
    """Optionally a no-forgetting stage 1, then the forgetting distillation; returns the one-step generator."""
    model.to(task.device)
    gen = torch_generator(ctx.seed, "sfd")
    start, losses = None, {}
    if cfg.stage1_iterations > 0:
        stage1 = _Run(model, data, cfg, task.device, gen, forgetting=False)
        losses["stage1"] = stage1.distil(cfg.stage1_iterations, "sfd stage 1")
        start = (stage1.fake, stage1.result())
    run = _Run(model, data, cfg, task.device, gen, forgetting=cfg.override != "none", start=start)
    losses.update(run.distil(cfg.iterations, "sfd"))
    ctx.info.update({"sfd_t_init": run.g.t_init, "sfd_t_range": [run.t_lo, run.t_hi], "sfd_final_losses": losses,
                     "sfd_override": cfg.override, "sfd_ema": cfg.ema, "sfd_stages": 1 + (start is not None)})
    if cfg.override == "next":
        nxt = retained_labels(torch.tensor(run.forget), run.forget, model.num_classes, "next", gen)
        ctx.info["sfd_override_labels"] = {str(c): o for c, o in zip(run.forget, nxt.tolist())}  # JSON keys
    return run.result()
