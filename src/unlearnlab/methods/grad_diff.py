"""GradDiff: gradient ascent on D_f plus gradient descent on D_r (Liu et al. 2022; TOFU baseline)."""
from __future__ import annotations

import dataclasses

from ..config import param
from ._lm_common import LMUnlearnConfig, frozen_copy, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class GradDiffConfig(LMUnlearnConfig):
    """GradDiff (Liu, Wang et al. 2022 'Continual learning and private unlearning'; TOFU, Maini et al. 2024):
    loss = -γ·NLL(D_f) + α·R(D_r). Defaults γ = α = 1 and retain NLL, as in OpenUnlearning's GradDiff."""

    gamma: float = param(1.0, "weight of the forget (ascent) term γ (TOFU/OpenUnlearning: 1)", low=0.0)
    alpha: float = param(1.0, "weight of the retain term α (TOFU/OpenUnlearning: 1; search: ours, log 0.1..10)",
                         low=0.0, search=("log", 0.1, 10.0))
    retain: str = retain_field("nll")


@register("grad_diff", GradDiffConfig, "Gradient ascent on D_f + descent on D_r (gradient difference)",
          "Liu et al. 2022, 'Continual Learning and Private Unlearning'; Maini et al. 2024 (TOFU)", kinds=("lm",))
def grad_diff(model, data, cfg: GradDiffConfig, task, ctx: MethodContext):
    """Minimise -γ·NLL_f + α·(NLL_r or KL_r)."""
    ref = frozen_copy(model) if cfg.retain == "kl" and cfg.alpha > 0 else None
    return run_forget_retain(model, data, cfg, task, ctx, "grad_diff", lambda m, b: -task.loss(m, b),
                             retain=cfg.retain, alpha=cfg.alpha, gamma=cfg.gamma, ref=ref)
