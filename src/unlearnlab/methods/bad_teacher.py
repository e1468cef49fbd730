"""Bad Teacher: distil from a random-init teacher on D_f and from the original model on part of D_r."""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from ..config import param
from ..data.core import ArrayDataset, subset
from ..seeding import derive_seed, numpy_rng
from ..train import train
from .base import FinetuneConfig, MethodContext, recipe, register, reinitialise


@dataclasses.dataclass(frozen=True)
class BadTeacherConfig(FinetuneConfig):
    """Bad Teaching (Chundawat et al. 2023, AAAI, 'Can Bad Teaching Induce Forgetting?'; code
    vikram2000b/bad-teaching-unlearning, unlearn.py blindspot_unlearner). D_f (unlearning label 1) and a random
    `retain_fraction` of D_r (label 0) are shuffled into one dataset; each example's target is the softmax(·/T) of
    the incompetent teacher (random init, seeded) if label 1, else of the competent teacher (θ0); the loss is their
    F.kl_div(log_softmax(student/T), target) with the default 'mean' reduction (sum / (batch x classes)), i.e. the
    KL per example divided by the number of classes (a constant scale that Adam largely absorbs)."""

    epochs: int = param(1, "epochs over the mixed dataset (paper/notebook: 1)", low=0)
    lr: float = param(1e-4, "Adam learning rate (paper/notebook: 1e-4; search: ours, log 1e-5..1e-3)", low=0.0,
                      search=("log", 1e-5, 1e-3))
    batch_size: int = param(256, "batch size (code: 256)", low=1)
    optimizer: str = param("adam", "optimiser (code: Adam)", choices=("sgd", "adam", "adamw"))
    weight_decay: float = param(0.0, "weight decay (code: none)", low=0.0)
    schedule: str = param("constant", "learning-rate schedule (code: constant)",
                          choices=("constant", "cosine", "step", "linear"))
    temperature: float = param(1.0, "KL temperature T (paper: 1)", low=1e-6)
    retain_fraction: float = param(0.3, "fraction of D_r mixed in (paper: 30%; search: ours, 0.1/0.3/0.5)",
                                   low=0.0, high=1.0, search=("choice", 0.1, 0.3, 0.5))


class _Flagged(Dataset):
    """(x, flag) pairs from any dataset: flag 1 = forget (incompetent teacher), 0 = retain (competent teacher)."""

    def __init__(self, ds: Dataset, flag: int):
        self.ds, self.flag = ds, flag

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds[i][0], self.flag


def unlearning_set(forget: Dataset, retain: Dataset, fraction: float, seed: int) -> Dataset:
    """D_f flagged 1 plus a seeded random `fraction` of D_r flagged 0, as one dataset of (x, flag)."""
    k = round(fraction * len(retain))
    idx = np.sort(numpy_rng(seed, "bad_teacher", "retain-subset").choice(len(retain), size=k, replace=False))
    part = subset(retain, idx)
    if isinstance(forget, ArrayDataset) and isinstance(part, ArrayDataset):
        flags = torch.cat([torch.ones(len(forget)), torch.zeros(len(part))]).long()
        return ArrayDataset(torch.cat([forget.x, part.x]), flags)
    return ConcatDataset([_Flagged(forget, 1), _Flagged(part, 0)])


def incompetent_teacher(model: nn.Module, seed: int) -> nn.Module:
    """A randomly initialised copy of `model` (same architecture), seeded, frozen, in eval mode."""
    teacher = reinitialise(copy.deepcopy(model), derive_seed(seed, "bad_teacher", "incompetent"))
    return teacher.eval().requires_grad_(False)


def bad_teacher_loss(student: torch.Tensor, competent: torch.Tensor, incompetent: torch.Tensor,
                     flag: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL to the incompetent teacher on flagged (forget) rows and to the competent one on the others."""
    f = flag.float().unsqueeze(1)
    target = f * F.softmax(incompetent / temperature, dim=1) + (1 - f) * F.softmax(competent / temperature, dim=1)
    log_s = F.log_softmax(student.float() / temperature, dim=1)
    return F.kl_div(log_s, target, reduction="sum") / log_s.numel()  # = their reduction='mean'



@register("bad_teacher", BadTeacherConfig, "Distil from an incompetent teacher on D_f, the original on D_r",
          "Chundawat, Tarun, Mandal & Kankanhalli 2023, 'Can Bad Teaching Induce Forgetting? Unlearning in Deep "
          "Networks Using an Incompetent Teacher', AAAI")
def bad_teacher(model, data, cfg: BadTeacherConfig, task, ctx: MethodContext):
    """One Adam epoch of mixed-teacher KL on D_f ∪ 30% of D_r."""
    model.to(task.device)
    competent = copy.deepcopy(model).eval().requires_grad_(False)
    incompetent = incompetent_teacher(model, ctx.seed).to(task.device)
    mixed = unlearning_set(data.forget, data.retain, cfg.retain_fraction, ctx.seed)

    def loss_fn(student: nn.Module, batch) -> torch.Tensor:
        x, flag = task.to_device(batch)
        with torch.no_grad():
            good, bad = task.forward(competent, x).float(), task.forward(incompetent, x).float()
        return bad_teacher_loss(task.forward(student, x), good, bad, flag, cfg.temperature)

    return train(model, mixed, recipe(cfg, ctx), task, seed=ctx.seed, key="bad_teacher", what="bad_teacher",
                 loss_fn=loss_fn)
