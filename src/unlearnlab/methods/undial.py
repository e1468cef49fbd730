"""UNDIAL: self-distillation towards the original logits with the true token's logit pushed down (Dong et al. 2024)."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .. import distributed
from ..config import param
from ..models.lm_format import IGNORE
from ._lm_common import OU, LMUnlearnConfig, frozen_copy, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class UNDIALConfig(LMUnlearnConfig):
    """UNDIAL (Dong, Lin, Belkin, Huerta, Vulić 2024, 'UNDIAL: Self-Distillation with Adjusted Logits for Robust
    Unlearning in LLMs'): per token, CE(softmax(z_θ), softmax(z_ref − β·onehot(y_t))). Defaults from OpenUnlearning's
    UNDIAL trainer config: β=10, lr 1e-4, 10 epochs, no retain term (α=0); its TOFU experiment file overrides the lr
    to 1e-5. Deviation (option average): by default the CE is averaged over answer tokens; OpenUnlearning averages
    over every position of the padded batch (question and padding too, where the target is the reference's own
    distribution; there its one-hot of the label −100 wraps round to vocabulary id V−100, which we do not copy)."""

    epochs: int = param(10, f"epochs over D_f ({OU} UNDIAL.yaml: 10)", low=0)
    lr: float = param(1e-4, f"learning rate ({OU} UNDIAL.yaml: 1e-4, overridden to 1e-5 by its TOFU experiment "
                            "file; search: ours, log 1e-5..1e-3)", low=0.0, search=("log", 1e-5, 1e-3))
    beta: float = param(10.0, "logit reduction β of the true token (UNDIAL: 10; search: ours, log 1..30)", low=0.0,
                        search=("log", 1.0, 30.0))
    alpha: float = param(0.0, f"weight of an optional retain term ({OU} UNDIAL.yaml: 0)", low=0.0)
    retain: str = retain_field("nll")
    average: str = param("answer", "positions the CE averages over: answer (answer tokens only; ours) or all (every "
                                   "position of the padded batch, question and padding included, with the unadjusted "
                                   f"reference distribution as target off the answer: the reference, {OU} "
                                   "compute_undial_loss)", choices=("answer", "all"))


def undial_loss(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor, beta: float,
                average: str = "answer") -> torch.Tensor:
    """CE of the shifted `logits` to softmax(ref_logits − β·onehot(label)), averaged over answer tokens or all
    positions (labels already shifted: labels[:, t] is the token predicted at position t)."""
    answer = labels != IGNORE
    mask = answer if average == "answer" else torch.ones_like(answer)
    with torch.no_grad():
        hit = F.one_hot(labels.clamp_min(0), ref_logits.shape[-1]).to(ref_logits.dtype) * answer.unsqueeze(-1)
        target = F.softmax(ref_logits - beta * hit, -1)[mask]
    return -distributed.mean((target * F.log_softmax(logits[mask], -1)).sum(-1))  # token mean, all ranks


@register("undial", UNDIALConfig, "Self-distillation to original logits with the forget token suppressed",
          "Dong et al. 2024, 'UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in LLMs'",
          kinds=("lm",))
def undial(model, data, cfg: UNDIALConfig, task, ctx: MethodContext):
    """Minimise token-level CE to the adjusted reference distribution on D_f (+ α·R(D_r))."""
    ref = frozen_copy(model)

    def forget_loss(m, b):
        logits = task.forward(m, b).logits[:, :-1].float()
        with torch.no_grad():
            z = task.forward(ref, b).logits[:, :-1].float()
        return undial_loss(logits, z, b["labels"][:, 1:].to(logits.device), cfg.beta, cfg.average)

    return run_forget_retain(model, data, cfg, task, ctx, "undial", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, ref=ref)
