"""UNDIAL: self-distillation towards the original logits with the true token's logit pushed down (Dong et al. 2024)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .. import distributed
from ..config import param
from ..models.lm_format import IGNORE
from ._lm_common import LMUnlearnConfig, frozen_copy, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class UNDIALConfig(LMUnlearnConfig):
    """UNDIAL (Dong, Lin, Belkin, Huerta, Vulić 2024, 'UNDIAL: Self-Distillation with Adjusted Logits for Robust
    Unlearning in LLMs'): per answer token, CE(softmax(z_θ), softmax(z_ref − β·onehot(y_t))). Defaults from
    OpenUnlearning's UNDIAL config: β=10, lr 1e-4, 10 epochs, no retain term (α=0)."""

    epochs: int = param(10, "epochs over D_f (OpenUnlearning UNDIAL: 10)", low=0)
    lr: float = param(1e-4, "learning rate (UNDIAL: 1e-4; search: ours, log 1e-5..1e-3)", low=0.0,
                      search=("log", 1e-5, 1e-3))
    beta: float = param(10.0, "logit reduction β of the true token (UNDIAL: 10; search: ours, log 1..30)", low=0.0,
                        search=("log", 1.0, 30.0))
    alpha: float = param(0.0, "weight of an optional retain term (UNDIAL: 0)", low=0.0)
    retain: str = retain_field("nll")


@register("undial", UNDIALConfig, "Self-distillation to original logits with the forget token suppressed",
          "Dong et al. 2024, 'UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in LLMs'",
          kinds=("lm",))
def undial(model, data, cfg: UNDIALConfig, task, ctx: MethodContext):
    """Minimise token-level CE to the adjusted reference distribution on D_f (+ α·R(D_r))."""
    ref = frozen_copy(model)

    def forget_loss(m, b):
        logits = task.forward(m, b).logits[:, :-1].float()
        labels = b["labels"][:, 1:].to(logits.device)
        mask = labels != IGNORE
        with torch.no_grad():
            z = task.forward(ref, b).logits[:, :-1].float()[mask]
            z = z - cfg.beta * F.one_hot(labels[mask], z.shape[-1]).to(z.dtype)
            target = F.softmax(z, -1)
        return -distributed.mean((target * F.log_softmax(logits[mask], -1)).sum(-1))  # token mean, all ranks

    return run_forget_retain(model, data, cfg, task, ctx, "undial", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, ref=ref)
