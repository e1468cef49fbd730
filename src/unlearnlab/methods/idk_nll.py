"""IdkNLL: teach the model to answer forget questions with "I don't know" (TOFU's IdK baseline)."""
from __future__ import annotations

import dataclasses

from ..config import param
from ._lm_common import LMUnlearnConfig, frozen_copy, idk_dataset, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class IdkNLLConfig(LMUnlearnConfig):
    """IdkNLL (Maini et al. 2024, TOFU 'Preference Optimization' baseline; OpenUnlearning 'IdkNLL'): NLL of a
    refusal answer (drawn per example from TOFU's idontknow.jsonl) for each forget question + α·NLL(D_r)."""

    alpha: float = param(1.0, "weight of the retain term (OpenUnlearning: 1; search: ours, log 0.1..10)", low=0.0,
                         search=("log", 0.1, 10.0))
    retain: str = retain_field("nll")
    idk_file: str = param("", "file of refusal answers, one per line ('' = TOFU's idontknow.jsonl when "
                              "available, else a built-in list)")


@register("idk_nll", IdkNLLConfig, "Fine-tune forget questions towards 'I don't know' answers",
          "Maini et al. 2024, 'TOFU: A Task of Fictitious Unlearning for LLMs'", kinds=("lm",))
def idk_nll(model, data, cfg: IdkNLLConfig, task, ctx: MethodContext):
    """Minimise NLL(idk | q_f) + α·R(D_r)."""
    ref = frozen_copy(model) if cfg.retain == "kl" and cfg.alpha > 0 else None
    idk = idk_dataset(data.forget, cfg.idk_file, ctx.seed, "idk_nll")
    return run_forget_retain(model, data, cfg, task, ctx, "idk_nll", task.loss, retain=cfg.retain,
                             alpha=cfg.alpha, ref=ref, forget_ds=idk)
