"""FT: fine-tune the original model on D_r only (catastrophic forgetting of D_f)."""
from __future__ import annotations

import dataclasses

from ..config import param
from ..train import train
from .base import FinetuneConfig, MethodContext, recipe, register


@dataclasses.dataclass(frozen=True)
class FTConfig(FinetuneConfig):
    """Fine-tuning (Warnecke et al. 2023; defaults from Jia et al. 2023 / SalUn: 10 epochs, lr 0.01, constant lr:
    their unlearning scheduler decays only at epochs 91/136, never reached in 10 epochs)."""

    schedule: str = param("constant", "learning-rate schedule (reference code: constant over the 10 epochs)",
                          choices=("constant", "cosine", "step", "linear"))


@register("ft", FTConfig, "Fine-tune on the retain set (catastrophic forgetting)",
          "Warnecke et al. 2023, 'Machine Unlearning of Features and Labels'; defaults Fan et al. 2024 (SalUn)")
def ft(model, data, cfg: FTConfig, task, ctx: MethodContext):
    """CE on D_r for cfg.epochs."""
    return train(model, data.retain, recipe(cfg, ctx), task, seed=ctx.seed, key="ft", what="ft")
