"""AdvUnlearn: ESD made robust by adversarial training against prompt attacks; by default it trains the "text
encoder" (here the condition table `cond`) rather than the UNet."""
from __future__ import annotations

import copy
import dataclasses
import math

import torch

from ..config import param
from ..seeding import torch_generator
from ._diffusion_common import iterate, step, subset, train_only
from .base import MethodContext, register
from .esd import esd_target


@dataclasses.dataclass(frozen=True)
class AdvUnlearnConfig:
    """AdvUnlearn (Zhang, Chen, Jia, Zhang, Fan, Liu, Hong, Ding & Liu 2024, NeurIPS, 'Defensive Unlearning with
    Adversarial Training for Robust Concept Erasure in Diffusion Models'; code OPTML-Group/AdvUnlearn,
    train-scripts/AdvUnlearn.py). Bi-level: upper = ESD loss || eps(x_t | c*) - [eps*(x_t | null) - eta (eps*(x_t |
    c_f) - eps*(x_t | null))] ||^2 on the adversarial condition c* + retain_loss_w x the `reg` retain loss; lower =
    c* from attack_step steps of the code's soft-prompt attack. Defaults from the code's argument parser
    (text_encoder_full, 1000 iterations, lr 1e-5, eta 1, start guidance 3, DDIM 50, 1 prefix token, attack_step 30,
    attack_lr 1e-3, warm-up 200, attack_init latest, adversarial prompt renewed every iteration, retain_loss_w 1,
    retain_batch 5). Retain loss = the code's `--retain_train reg` (the README's setting; the parser's default
    `iter`, retain-only steps after each step, is `retain_train: iter`): MSE between the trained model's and the
    frozen original's noise predictions for retained classes on x_t partially sampled for them (a
    utility-preserving distillation, not a diffusion loss on data);
    retained classes stand in for the code's COCO object prompts. Deviations: the attack's gradient is zeroed each
    step (the code never zeroes it, so its Adam sees accumulated gradients); on the digit DDPM conditions are one
    vector, so the prefix token is combined with c_f by the mean; on Stable Diffusion the table holds the text
    encoder's output states, which are what trains and where the prefix is inserted (see eval/gen_attack.py);
    x_t comes from the current UNet with the original condition table (as the code samples with the original text
    encoder's embeddings). Several forgotten conditions (a style or an object on the two-factor set): each iteration
    draws one, as ESD draws its concepts, and each keeps its own adversarial vectors; there `cond` trains the
    factorised table's object, style and null rows."""

    train_method: str = param("cond", "what trains: cond = the condition table (the code's text_encoder_full, the "
                                      "paper's choice: the table is our text encoder); esd-x / esd-u / full = UNet "
                                      "subsets as ESD's (the code's xattn / noxattn / full)",
                              choices=("cond", "esd-x", "esd-u", "full"))
    iterations: int = param(1000, "outer optimisation steps (code: 1000)", low=0)
    lr: float = param(1e-5, "Adam learning rate of the trained parameters (code: 1e-5)", low=0.0,
                      search=("log", 1e-5, 1e-1))
    negative_guidance: float = param(1.0, "eta of the ESD target (code: 1)", low=0.0)
    start_guidance: float = param(3.0, "guidance of the partial sampling that makes x_t (code: 3)", low=0.0)
    ddim_steps: int = param(50, "DDIM steps of the partial sampling; x_t stops at a random one (code: 50)", low=1)
    retain_loss_w: float = param(1.0, "weight gamma of the retain regulariser (code: 1.0; README examples 0.3); 0 = "
                                      "none", low=0.0, search=("log", 0.01, 10.0))
    retain_batch: int = param(5, "retained-class x_t per iteration (code: 5 retain prompts)", low=1)
    retain_train: str = param("reg", "reg = the retain loss added to each step's loss, weighted retain_loss_w (the "
                                     "README's setting); iter = the code parser's default: after each unlearning step "
                                     "(ESD loss alone), retain_step optimiser steps on the retain loss alone, "
                                     "unweighted, each on fresh retained classes and x_t", choices=("reg", "iter"))
    retain_step: int = param(1, "iter: retain-only optimiser steps after each unlearning step (code: 1)", low=0)
    adv_prompt_num: int = param(1, "adversarial prefix vectors (code: 1 token)", low=1)
    attack_mode: str = param("prefix", "prefix = c* = mean(c_f, p_1..p_k) (code: prefix_k); delta = c_f + delta "
                                       "(code: add)", choices=("prefix", "delta"))
    attack_step: int = param(30, "attack steps per outer iteration (code: 30)", low=0)
    attack_lr: float = param(1e-3, "attack Adam learning rate (code: 1e-3)", low=0.0)
    attack_init: str = param("latest", "latest = continue from the previous adversarial vectors; random = restart "
                                       "from random table rows (the code's random tokens) each time",
                             choices=("latest", "random"))
    attack_method: str = param("pgd", "pgd = Adam on the gradient; fast_at = Adam on its sign (the code's fast "
                                      "adversarial training)", choices=("pgd", "fast_at"))
    attack_loss: str = param("orig", "orig = match the frozen original's prediction for c_f on partially sampled "
                                     "x_t (the code's inner loss, data-free); l2 = UnlearnDiffAtk's loss on real "
                                     "forgotten-class images", choices=("orig", "l2"))
    warmup_iter: int = param(200, "first iterations trained on the plain condition, without attack (code: 200)",
                             low=0)


def retain_loss(model, frozen, xt: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The code's retain term: MSE between the model's and the frozen original's predictions for retained y."""
    with torch.no_grad():
        keep = frozen.eps(xt, t, y)
    return (model.eps(xt, t, y) - keep).pow(2).mean()


def _mean_finite(vals: list[float]) -> float:
    """Mean of the finite values (an attacker that never ran has no loss), NaN when there is none."""
    vals = [v for v in vals if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _trainable(model, which: str) -> list[torch.nn.Parameter]:
    from ..eval.gen_attack import condition_table

    if which != "cond":
        return subset(model, which)
    cond = getattr(model, "cond", None)
    if isinstance(cond, torch.nn.Module):  # nn.Embedding, or a two-factor FactorTable: its object, style and null
        return list(cond.parameters())     # rows are the whole "text encoder"
    return [condition_table(model)]


class _Attacker:
    """The lower level: keeps the adversarial vectors between rounds (attack_init latest)."""

    def __init__(self, model, frozen, sampler, cls: int, cfg: AdvUnlearnConfig, forget_x, gen):
        self.model, self.frozen, self.sampler, self.cls, self.cfg = model, frozen, sampler, cls, cfg
        self.forget_x, self.gen, self.adv, self.last_loss = forget_x, gen, None, float("nan")

    def _orig_loss(self, emb: torch.Tensor) -> torch.Tensor:
        """The code's inner loss: || eps_theta(x_t | c') - eps*(x_t | c_f) ||^2 on a fresh partially sampled x_t."""
        from ..models.ddpm import sample

        cfg, y = self.cfg, torch.tensor([self.cls], device=emb.device)
        k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=self.gen))
        xt = sample(self.sampler, y, steps=cfg.ddim_steps, scale=cfg.start_guidance, gen=self.gen, stop_at=k)
        t = self.times[k].expand(1).to(emb.device)
        with torch.no_grad():
            target = self.frozen.eps(xt, t, y)
        return (self.model.eps(xt, t, emb=emb) - target).pow(2).mean()

    def _l2_loss(self, emb: torch.Tensor) -> torch.Tensor:
        from ..eval.gen_attack import l2_loss

        pick = torch.randint(0, len(self.forget_x), (min(16, len(self.forget_x)),), generator=self.gen)
        return l2_loss(self.model, emb, self.forget_x[pick.to(emb.device)], self.gen)

    def __call__(self, base: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """A new adversarial condition c* (1 x D) against the current model."""
        from ..eval.gen_attack import initial_params, optimise_condition

        cfg = self.cfg
        self.times = times
        if self.adv is None or cfg.attack_init == "random":
            self.adv = initial_params(self.model, base, cfg.attack_mode, cfg.adv_prompt_num, "random", self.gen)
        loss_fn = self._orig_loss if cfg.attack_loss == "orig" else self._l2_loss
        self.model.eval()
        self.adv, losses = optimise_condition(self.model, base, loss_fn, mode=cfg.attack_mode, steps=cfg.attack_step,
                                              lr=cfg.attack_lr, adv=self.adv, sign=cfg.attack_method == "fast_at")
        self.last_loss = losses[-1] if losses else self.last_loss
        return self.adv


@register("advunlearn", AdvUnlearnConfig, "ESD trained against an inner prompt attack (adversarial unlearning), on "
          "the condition table by default",
          "Zhang, Chen, Jia, Zhang, Fan, Liu, Hong, Ding & Liu 2024, 'Defensive Unlearning with Adversarial Training "
          "for Robust Concept Erasure in Diffusion Models', NeurIPS", kinds=("diffusion",))
def advunlearn(model, data, cfg: AdvUnlearnConfig, task, ctx: MethodContext):
    """AdvUnlearn on the forget set's class (data-free for the ESD term; the l2 attack reads D_f's images)."""
    from ..eval.gen_attack import check_prefix, combine
    from ..models.ddpm import ddim_timesteps, sample

    check_prefix(model, cfg.attack_mode, cfg.adv_prompt_num)
    model.to(task.device)
    frozen = copy.deepcopy(model).eval().requires_grad_(False)
    concepts = [int(c) for c in torch.unique(data.forget.y)]
    kept = torch.tensor([c for c in range(model.num_classes) if c not in concepts])
    params = _trainable(model, cfg.train_method)
    train_only(model, params)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch_generator(ctx.seed, "advunlearn")
    times = ddim_timesteps(model, cfg.ddim_steps)
    sampler = frozen if cfg.train_method == "cond" else model  # current UNet + original table (see the docstring)
    attackers = {c: _Attacker(model, frozen, sampler, c, cfg, data.forget.x[data.forget.y == c].to(task.device), gen)
                 for c in concepts}

    def retained(n: int) -> torch.Tensor:
        return kept[torch.randint(0, len(kept), (n,), generator=gen)].to(task.device)

    def partial(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t partially sampled for labels y (stopped at a random DDIM step) and its timestep; the model is then
        left in training mode (eval for the condition table, as the code's UNet when the text encoder trains)."""
        k = int(torch.randint(0, cfg.ddim_steps, (1,), generator=gen))
        model.eval()
        xt = sample(sampler, y, steps=cfg.ddim_steps, scale=cfg.start_guidance, gen=gen, stop_at=k)
        model.train(cfg.train_method != "cond")
        return xt, times[k].expand(len(y)).to(task.device)

    for i in iterate(cfg.iterations, "advunlearn"):
        # several forgotten conditions (a style on the two-factor set): one drawn per iteration, as ESD draws its
        # concepts, each with its own attacker (a single class draws nothing, so its runs are as before)
        cls = concepts[int(torch.randint(0, len(concepts), (1,), generator=gen))] if len(concepts) > 1 else concepts[0]
        attacker = attackers[cls]
        base = model.condition(torch.tensor([cls], device=task.device))[0]
        adv = attacker(base.detach(), times) if i >= cfg.warmup_iter else None
        y_r = retained(cfg.retain_batch if cfg.retain_train == "reg" else 0)
        y = torch.cat([torch.tensor([cls], device=task.device), y_r])
        xt, t = partial(y)
        target = esd_target(frozen, xt[:1], t[:1], y[:1], cfg.negative_guidance, "null")
        emb = base.unsqueeze(0) if adv is None else combine(base, adv, cfg.attack_mode)
        loss = (model.eps(xt[:1], t[:1], emb=emb) - target).pow(2).mean()
        if cfg.retain_train == "reg" and cfg.retain_loss_w > 0:
            loss = loss + cfg.retain_loss_w * retain_loss(model, frozen, xt[1:], t[1:], y_r)
        step(opt, loss, params, 0.0)
        for _ in range(cfg.retain_step if cfg.retain_train == "iter" else 0):
            y_r = retained(cfg.retain_batch)
            step(opt, retain_loss(model, frozen, *partial(y_r), y_r), params, 0.0)
    model.requires_grad_(True)
    ctx.info.update({"advunlearn_trained_params": sum(p.numel() for p in params),
                     "attack_rounds": max(0, cfg.iterations - cfg.warmup_iter),
                     "attack_loss_last": _mean_finite([a.last_loss for a in attackers.values()]),
                     "forgotten_conditions": len(concepts),
                     "attacked_conditions": sum(a.adv is not None for a in attackers.values())})
    return model
