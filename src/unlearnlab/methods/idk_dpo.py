"""IdkDPO: DPO preferring "I don't know" over the true answer on forget questions (TOFU / Rafailov et al.)."""
from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch.utils.data import Dataset

from ..config import param
from ._lm_common import LMUnlearnConfig, frozen_copy, idk_dataset, precompute_logprobs, retain_field, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class IdkDPOConfig(LMUnlearnConfig):
    """IdkDPO (Maini et al. 2024 TOFU; DPO of Rafailov et al. 2023): -(2/β)·log σ(β·[(ℓ_θ - ℓ_ref)(y_idk) -
    (ℓ_θ - ℓ_ref)(y_forget)]) with summed answer log-probabilities and π_ref the input model, + α·NLL(D_r).
    Defaults β=0.1, α=γ=1 (OpenUnlearning DPO.yaml); the 2/β scale follows OpenUnlearning's compute_dpo_loss.
    Deviation: each forget question keeps one seeded refusal for the run (ℓ_ref of the refusals is computed once);
    OpenUnlearning's QAwithIdkDataset draws a new refusal at every read (IdkNLL offers that as idk_draw)."""

    beta: float = param(0.1, "DPO inverse temperature β (0.1; search: ours, log 0.01..1)", low=1e-8,
                        search=("log", 0.01, 1.0))
    gamma: float = param(1.0, "weight of the DPO forget term (1)", low=0.0)
    alpha: float = param(1.0, "weight of the retain term (1)", low=0.0)
    retain: str = retain_field("nll")
    idk_file: str = param("", "file of refusal answers, one per line ('' = TOFU's idontknow.jsonl when "
                              "available, else a built-in list)")


class _Pairs(Dataset):
    """(preferred, dispreferred, index) triples over aligned datasets."""

    def __init__(self, win: Dataset, lose: Dataset):
        self.win, self.lose = win, lose

    def __len__(self) -> int:
        return len(self.lose)

    def __getitem__(self, i: int) -> dict:
        return {"w": self.win[i], "l": self.lose[i], "index": i}

    def collate(self, features: list[dict]) -> dict:
        """Separately padded preferred / dispreferred batches plus the example indices."""
        import torch

        return {"w": self.win.collate([f["w"] for f in features]), "l": self.lose.collate([f["l"] for f in features]),
                "index": torch.tensor([f["index"] for f in features])}


@register("idk_dpo", IdkDPOConfig, "DPO with 'I don't know' preferred over the forget answer",
          "Maini et al. 2024 (TOFU); Rafailov et al. 2023, 'Direct Preference Optimization'", kinds=("lm",))
def idk_dpo(model, data, cfg: IdkDPOConfig, task, ctx: MethodContext):
    """Minimise γ·L_DPO(idk ≻ y_f) + α·R(D_r); reference log-probs are computed once."""
    ref = frozen_copy(model)
    idk = idk_dataset(data.forget, cfg.idk_file, ctx.seed, "idk_dpo")
    ref_w = precompute_logprobs(ref, idk, task, cfg.batch_size).to(task.device)
    ref_l = precompute_logprobs(ref, data.forget, task, cfg.batch_size).to(task.device)

    def forget_loss(m, b):
        i = b["index"].to(task.device)
        win = task.sequence_logprob(m, b["w"])[0] - ref_w[i]
        lose = task.sequence_logprob(m, b["l"])[0] - ref_l[i]
        return -(2.0 / cfg.beta) * F.logsigmoid(cfg.beta * (win - lose)).mean()

    return run_forget_retain(model, data, cfg, task, ctx, "idk_dpo", forget_loss, retain=cfg.retain,
                             alpha=cfg.alpha, gamma=cfg.gamma, ref=ref, forget_ds=_Pairs(idk, data.forget))
