"""LFSSD: SSD with a label-free importance, the gradient of the squared l2 norm of the model output."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import param
from .base import MethodContext, register
from .ssd import SSDConfig, ssd_apply


@dataclasses.dataclass(frozen=True)
class LFSSDConfig(SSDConfig):
    """Loss-Free SSD (Foster, Schoepf & Brintrup 2024, ICLR Tiny Paper). As the authors' README specifies: the
    importance objective is mean_batch ‖f(x)‖²₂ (no labels) and importances accumulate |∇| (not ∇²), averaged over
    batches; selection and dampening are SSD's. Defaults are SSD's λ=1, α=10, which the paper reuses."""

    selection_weighting: float = param(10.0, "α: select parameters with I_f > α·I_D (as SSD: 10; grid: the "
                                             "corrective-unlearning bench's SSD grid {0.1, 1, 10, 50}, "
                                             "REFERENCES-SEEDS A9; SSD's extra 100 and 500 are not added: |∇| "
                                             "ratios are on about the square root of SSD's ∇² scale, and α=10 "
                                             "already selects ~2-3% of the cifar10-dev FastCNN for a class)",
                                       low=0.0,
                                       search=("choice", 0.1, 1.0, 10.0, 50.0))


def output_sq_norm(task, model: nn.Module, batch) -> torch.Tensor:
    """Mean over the batch of the squared l2 norm of the model output (labels unused)."""
    return task.logits(model, batch).float().pow(2).sum(dim=1).mean()


@register("lfssd", LFSSDConfig, "Label-free SSD: importances from the output norm instead of the loss",
          "Foster, Schoepf & Brintrup 2024, 'Loss-Free Machine Unlearning', ICLR Tiny Paper")
def lfssd(model, data, cfg: LFSSDConfig, task, ctx: MethodContext):
    """SSD with importances |∇θ ‖f(x)‖²| over D_f and D: no labels needed."""
    return ssd_apply(model, data, task, cfg, lambda m, b: output_sq_norm(task, m, b), 1, "lfssd", ctx.seed, ctx)
