"""Retrain: train from scratch on D_r with the original recipe -- the gold-standard oracle."""
from __future__ import annotations

import dataclasses

from ..config import param
from ..models.zoo import data_init
from ..train import train
from .base import MethodContext, register, reinitialise


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """Retrain from scratch. Defaults: 0 means 'use the original model's recipe' (same epochs, lr, schedule)."""

    epochs: int = param(0, "epochs; 0 = same as the original training recipe (CIFAR: ~160-182)", low=0)


@register("retrain", RetrainConfig, "Train from scratch on the retain set (exact; the gold standard)",
          "Exact unlearning baseline; recipe as in Jia et al. 2023 / Fan et al. 2024 (SalUn)")
def retrain(model, data, cfg: RetrainConfig, task, ctx: MethodContext):
    """Reinitialise `model` and train it on D_r with ctx.recipe."""
    rec = ctx.recipe if cfg.epochs == 0 else dataclasses.replace(ctx.recipe, epochs=cfg.epochs)
    data_init(reinitialise(model, ctx.seed), data.retain)  # a data-derived stem comes from D_r only
    return train(model, data.retain, rec, task, seed=ctx.seed, key="retrain", what="retrain")



