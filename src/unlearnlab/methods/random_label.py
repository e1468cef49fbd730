"""RL: relabel the forget set with random labels and train on it together with the retain set."""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from ..config import param
from ..data.core import ArrayDataset, batches
from ..errors import ConfigError
from ..seeding import torch_generator
from ..train import TrainConfig, check_finite, lr_factor, make_optimizer
from .base import FinetuneConfig, MethodContext, recipe, register

Hook = Callable[[nn.Module], None]


@dataclasses.dataclass(frozen=True)
class RandomLabelConfig(FinetuneConfig):
    """Random labels (Golatkar et al. 2020; as implemented in SalUn's code, Fan et al. 2024, unlearn/RL.py)."""

    epochs: int = param(10, "epochs; each is one pass over relabelled D_f and one over D_r (SalUn: 10)", low=0)
    lr: float = param(0.01, "learning rate (SalUn code default unlearn_lr 0.01; search: ours, log 1e-3..1e-1)",
                      low=0.0, search=("log", 1e-3, 1e-1))
    schedule: str = param("constant", "learning-rate schedule; SalUn's code decays at epochs 91/136, i.e. constant "
                                      "over 10 unlearning epochs", choices=("constant", "cosine", "step", "linear"))
    order: str = param("sequential", "SalUn RL.py: 'sequential' = per epoch all D_f batches then all D_r batches "
                                     "(its CIFAR-10/SVHN path); 'joint' = one shuffled pass over D_f ∪ D_r "
                                     "(its CIFAR-100/TinyImageNet path)", choices=("sequential", "joint"))
    wrong_only: bool = param(False, "false (default) = SalUn's code (unlearn/RL.py): labels drawn uniformly over all "
                                    "K classes, so ~1/K keep their true label; true = draw from the K-1 wrong classes "
                                    "only (Golatkar et al.'s description; our behaviour before 2026-11)")


def materialise(ds: Dataset, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """All (x, y) of a (small) dataset as two tensors, in order."""
    if isinstance(ds, ArrayDataset):
        return ds.x, ds.y
    xs, ys = zip(*batches(ds, batch_size))
    return torch.cat(xs), torch.cat(ys)


def random_wrong_labels(y: torch.Tensor, num_classes: int, gen: torch.Generator,
                        wrong_only: bool = True) -> torch.Tensor:
    """A label drawn uniformly from all K classes, or (`wrong_only`) from the K-1 classes other than y, for every
    example (seeded)."""
    if num_classes < 2:
        raise ConfigError(f"Random relabelling needs at least 2 classes; this dataset has {num_classes}.")
    if not wrong_only:
        return torch.randint(0, num_classes, y.shape, generator=gen)
    shift = torch.randint(1, num_classes, y.shape, generator=gen)
    return (y.cpu() + shift) % num_classes


def _epoch_batches(forget: ArrayDataset, retain: Dataset, order: str, bs: int, gen: torch.Generator,
                   rec: TrainConfig, joint_x: torch.Tensor | None) -> Iterator:
    aug = {"augment": rec.augment, "crop_pad": rec.crop_pad, "pad_mode": rec.pad_mode}
    if order == "sequential":
        return itertools.chain(batches(forget, bs, shuffle=True, gen=gen, **aug),
                               batches(retain, bs, shuffle=True, gen=gen, **aug))
    if joint_x is not None:  # array-backed retain set: inputs concatenated once, only the labels change per epoch
        both: Dataset = ArrayDataset(joint_x, torch.cat([forget.y, retain.y]))
    else:
        both = ConcatDataset([forget, retain])
    return batches(both, bs, shuffle=True, gen=gen, **aug)


def relabel_train(model: nn.Module, data, cfg: RandomLabelConfig, task, ctx: MethodContext, *, key: str,
                  grad_hook: Hook | None = None, step_hook: Hook | None = None, weight_decay: float | None = None,
                  labels_out: list | None = None) -> nn.Module:
    """The RL loop: each epoch, fresh random labels for D_f, then CE over relabelled D_f and D_r.

    `grad_hook` runs after backward and `step_hook` after each optimiser step (SalUn masks with them);
    `labels_out`, if given, receives each epoch's relabels (for inspection and tests)."""
    rec = recipe(cfg, ctx) if weight_decay is None else recipe(cfg, ctx, weight_decay=weight_decay)
    xf, yf = materialise(data.forget)
    gen = torch_generator(ctx.seed, key)
    model.to(task.device).train()
    opt = make_optimizer(model.parameters(), rec)
    per_epoch = math.ceil(len(yf) / rec.batch_size) + math.ceil(len(data.retain) / rec.batch_size)
    total, step = cfg.epochs * per_epoch, 0
    joint_x = torch.cat([xf, data.retain.x]) if cfg.order == "joint" and isinstance(data.retain, ArrayDataset) \
        else None
    for _ in range(cfg.epochs):
        relabelled = ArrayDataset(xf, random_wrong_labels(yf, data.num_classes, gen, cfg.wrong_only))
        if labels_out is not None:
            labels_out.append(relabelled.y.clone())
        for batch in _epoch_batches(relabelled, data.retain, cfg.order, rec.batch_size, gen, rec, joint_x):
            for g in opt.param_groups:
                g["lr"] = rec.lr * lr_factor(rec.schedule, step, total)
            loss = task.loss(model, batch)
            check_finite(loss, step, key)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_hook is not None:
                grad_hook(model)
            opt.step()
            if step_hook is not None:
                step_hook(model)
            step += 1
    model.eval()
    return model


@register("random_label", RandomLabelConfig, "Train on the forget set with random labels plus the retain set",
          "Golatkar et al. 2020, 'Eternal Sunshine of the Spotless Net'; implementation of Fan et al. 2024 (SalUn)")
def random_label(model, data, cfg: RandomLabelConfig, task, ctx: MethodContext):
    """CE on D_f with random labels (redrawn each epoch) and on D_r, for cfg.epochs."""
    return relabel_train(model, data, cfg, task, ctx, key="random_label")
