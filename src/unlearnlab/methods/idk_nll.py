"""IdkNLL: teach the model to answer forget questions with "I don't know" (TOFU's IdK baseline)."""
from __future__ import annotations

import dataclasses

from ..config import param
from ._lm_common import OU, LMUnlearnConfig, frozen_copy, idk_dataset, idk_field, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class IdkNLLConfig(LMUnlearnConfig):
    """IdkNLL (Maini et al. 2024, TOFU's 'idk' forget loss): NLL of a refusal answer from TOFU's idontknow.jsonl for
    each forget question + α·NLL(D_r), α = 1 (TOFU sums the two losses). OpenUnlearning (d3d7cf9) has no IdkNLL
    trainer; its refusal data (QAwithIdkDataset) feeds DPO. Deviation (option idk_draw): by default each forget
    question keeps one seeded refusal for the whole run; TOFU and OpenUnlearning draw a new one at every read."""

    alpha: float = param(1.0, "weight of the retain term (TOFU's 'idk' loss: 1; search: ours, log 0.1..10)",
                         low=0.0, search=("log", 0.1, 10.0))
    retain: str = retain_field("nll")
    idk_file: str = idk_field()
    idk_draw: str = param("fixed", "fixed: one seeded refusal per forget question for the whole run (ours); "
                                   "per_read: a fresh seeded refusal each time the question is read, i.e. every "
                                   f"epoch (the reference: TOFU's and {OU}'s QAwithIdkDataset draw randint in "
                                   "__getitem__)", choices=("fixed", "per_read"))


@register("idk_nll", IdkNLLConfig, "Fine-tune forget questions towards 'I don't know' answers",
          "Maini et al. 2024, 'TOFU: A Task of Fictitious Unlearning for LLMs'", kinds=("lm",))
def idk_nll(model, data, cfg: IdkNLLConfig, task, ctx: MethodContext):
    """Minimise NLL(idk | q_f) + α·R(D_r)."""
    ref = frozen_copy(model) if cfg.retain == "kl" and cfg.alpha > 0 else None
    idk = idk_dataset(data.forget, cfg.idk_file, ctx.seed, "idk_nll", cfg.idk_draw)
    return run_forget_retain(model, data, cfg, task, ctx, "idk_nll", task.loss, retain=cfg.retain,
                             alpha=cfg.alpha, ref=ref, forget_ds=idk)
