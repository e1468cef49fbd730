"""SimNPO: reference-free NPO with length-normalised log-probabilities (Fan et al. 2024)."""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from ..config import param
from ._lm_common import LMUnlearnConfig, frozen_copy, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class SimNPOConfig(LMUnlearnConfig):
    """SimNPO (Fan, Liu, Lin, Jia, Zhang, Mei, Liu 2024, 'Simplicity Prevails'): forget loss
    -(2/β)·log σ(-β·ℓ_θ(y|x)/|y| - δ) with no reference model, plus α·NLL(D_r). Defaults are the authors'
    TOFU settings as used by OpenUnlearning: β=4.5, δ=0, forget weight γ=0.125 (their npo_coeff), α=1."""

    beta: float = param(4.5, "inverse temperature β (SimNPO TOFU: 4.5; search: ours, log 0.5..10)", low=1e-8,
                        search=("log", 0.5, 10.0))
    delta: float = param(0.0, "reward margin δ (γ in the paper, outside β as there; OpenUnlearning multiplies it "
                              "by β; TOFU: 0, where both agree; search: ours, 0..2)", search=("float", 0.0, 2.0))
    gamma: float = param(0.125, "weight of the SimNPO forget term (authors' npo_coeff on TOFU: 0.125)", low=0.0)
    alpha: float = param(1.0, "weight of the retain term (TOFU: 1)", low=0.0)
    retain: str = retain_field("nll")


@register("simnpo", SimNPOConfig, "Reference-free, length-normalised NPO",
          "Fan et al. 2024, 'Simplicity Prevails: Rethinking Negative Preference Optimization for LLM "
          "Unlearning'", kinds=("lm",))
def simnpo(model, data, cfg: SimNPOConfig, task, ctx: MethodContext):
    """Minimise γ·L_SimNPO(D_f) + α·R(D_r)."""
    ref = frozen_copy(model) if cfg.retain == "kl" and cfg.alpha > 0 else None

    def forget_loss(m, b):
        lp, length = task.sequence_logprob(m, b)
        return -(2.0 / cfg.beta) * F.logsigmoid(-cfg.beta * lp / length.clamp_min(1.0) - cfg.delta).mean()

    return run_forget_retain(model, data, cfg, task, ctx, "simnpo", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, gamma=cfg.gamma, ref=ref)
