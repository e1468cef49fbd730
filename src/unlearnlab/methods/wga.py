"""WGA: weighted gradient ascent, each forget token's ascent scaled by its probability^β (Wang et al. 2025)."""
from __future__ import annotations

import dataclasses

import torch

from .. import distributed
from ..config import param
from ._lm_common import OU, LMUnlearnConfig, frozen_copy, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class WGAConfig(LMUnlearnConfig):
    """WGA (Wang, Zhang, Hu, Ren, ... Han 2025, 'Rethinking LLM Unlearning Objectives: A Gradient Perspective and
    Go Beyond', ICLR): forget loss -mean_t[p_t^β (detached) · CE_t] over answer tokens, + α·NLL(D_r).
    Defaults from OpenUnlearning's WGA trainer config: β=1, α=γ=1, lr 1e-5, 5 epochs (its TOFU experiment file
    overrides the epochs to 10). As there, the weighted CE is averaged over answer tokens."""

    epochs: int = param(5, f"epochs over D_f ({OU} WGA.yaml: 5; its TOFU experiment file: 10)", low=0)

    beta: float = param(1.0, "exponent β of the token-probability weight (WGA: 1; search: ours, log 0.1..5)",
                        low=0.0, search=("log", 0.1, 5.0))
    gamma: float = param(1.0, "weight of the forget term (WGA.yaml: 1)", low=0.0)
    alpha: float = param(1.0, "weight of the retain term (WGA.yaml: 1)", low=0.0)
    retain: str = retain_field("nll")


@register("wga", WGAConfig, "Gradient ascent weighted by each token's probability (stops on forgotten tokens)",
          "Wang et al. 2025, 'Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond'",
          kinds=("lm",))
def wga(model, data, cfg: WGAConfig, task, ctx: MethodContext):
    """Minimise -γ·mean_t p_t^β·CE_t on D_f + α·R(D_r)."""
    ref = frozen_copy(model) if cfg.retain == "kl" and cfg.alpha > 0 else None

    def forget_loss(m, b):
        nll, mask = task.token_nll(m, b)
        weight = torch.exp(-nll.detach()) ** cfg.beta
        return -distributed.ratio((weight * nll * mask).sum(), mask.sum(), at_least=1.0)  # token mean, all ranks

    return run_forget_retain(model, data, cfg, task, ctx, "wga", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, gamma=cfg.gamma, ref=ref)
