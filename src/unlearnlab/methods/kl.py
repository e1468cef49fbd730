"""KL: gradient ascent on D_f while keeping the model's next-token distributions on D_r close to the original."""
from __future__ import annotations

import dataclasses

from ..config import param
from ._lm_common import OU, LMUnlearnConfig, frozen_copy, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class KLConfig(LMUnlearnConfig):
    """KL minimisation (TOFU, Maini et al. 2024, §4): loss = -NLL(D_f) + α·KL(π_ref ‖ π_θ) on D_r, π_ref = the
    input model (OpenUnlearning: GradDiff with retain_loss_type KL). Deviation (option kl_tokens): by default the KL
    is averaged over the positions that predict retain answer tokens; OpenUnlearning's compute_kl_divergence
    averages over every position of the padded batch (question and padding included, 'batchmean' over B·T)."""

    alpha: float = param(1.0, "weight of the retain KL term (TOFU and OpenUnlearning: 1; search: ours, log "
                              "0.1..10)", low=0.0, search=("log", 0.1, 10.0))
    kl_tokens: str = param("answer", "positions the retain KL averages over: answer (positions predicting answer "
                                     "tokens; ours, independent of padding) or all (every position of the padded "
                                     f"batch, question and padding included: the reference, {OU} "
                                     "compute_kl_divergence)", choices=("answer", "all"))


@register("kl", KLConfig, "Gradient ascent on D_f + KL to the original model on D_r",
          "Maini et al. 2024, 'TOFU: A Task of Fictitious Unlearning for LLMs'", kinds=("lm",))
def kl(model, data, cfg: KLConfig, task, ctx: MethodContext):
    """Minimise -NLL_f + α·KL(ref‖θ)_r."""
    ref = frozen_copy(model) if cfg.alpha > 0 else None
    return run_forget_retain(model, data, cfg, task, ctx, "kl", lambda m, b: -task.loss(m, b),
                             retain="kl", alpha=cfg.alpha, ref=ref, kl_tokens=cfg.kl_tokens)
