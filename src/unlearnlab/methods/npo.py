"""NPO: negative preference optimisation on D_f against a frozen reference model (Zhang et al. 2024)."""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from ..config import param
from ._lm_common import Indexed, LMUnlearnConfig, frozen_copy, precompute_logprobs, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class NPOConfig(LMUnlearnConfig):
    """NPO (Zhang, Lin, Bai, Mei 2024, 'Negative Preference Optimization'): forget loss
    -(2/β)·log σ(-β·[ℓ_θ(y|x) - ℓ_ref(y|x)]) with ℓ the summed answer log-probability and π_ref the input model;
    plus α·NLL(D_r) (the paper's NPO+RT). Defaults β=0.1, α=γ=1 (paper / OpenUnlearning)."""

    beta: float = param(0.1, "inverse temperature β (NPO paper: 0.1; search: ours, log 0.01..1)", low=1e-8,
                        search=("log", 0.01, 1.0))
    gamma: float = param(1.0, "weight of the NPO forget term (OpenUnlearning: 1)", low=0.0)
    alpha: float = param(1.0, "weight of the retain term (NPO+RT / OpenUnlearning: 1; 0 = plain NPO)", low=0.0)
    retain: str = retain_field("nll")


@register("npo", NPOConfig, "Negative preference optimisation (DPO with only a dispreferred answer)",
          "Zhang et al. 2024, 'Negative Preference Optimization: From Catastrophic Collapse to Effective "
          "Unlearning'", kinds=("lm",))
def npo(model, data, cfg: NPOConfig, task, ctx: MethodContext):
    """Minimise γ·L_NPO(D_f) + α·R(D_r); ℓ_ref is computed once for the whole forget set."""
    ref = frozen_copy(model)
    forget = Indexed(data.forget)
    ref_lp = precompute_logprobs(ref, data.forget, task, cfg.batch_size).to(task.device)

    def forget_loss(m, b):
        lp, _ = task.sequence_logprob(m, b)
        ratio = lp - ref_lp[b["index"].to(task.device)]
        return -(2.0 / cfg.beta) * F.logsigmoid(-cfg.beta * ratio).mean()

    return run_forget_retain(model, data, cfg, task, ctx, "npo", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, gamma=cfg.gamma, ref=ref, forget_ds=forget)
