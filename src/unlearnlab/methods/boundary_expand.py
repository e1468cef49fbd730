"""Boundary Expand: add a shadow class, train the forget set into it, then prune the shadow unit."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import param
from ..data.core import ArrayDataset
from ..errors import ConfigError
from ..seeding import torch_seed
from ..train import train
from .base import FinetuneConfig, MethodContext, bn_stats_param, recipe, register
from .random_label import materialise


@dataclasses.dataclass(frozen=True)
class BoundaryExpandConfig(FinetuneConfig):
    """Boundary Expand (Chen et al. 2023, 'Boundary Unlearning', CVPR; SalUn code unlearn/boundary_ex.py):
    widen the classifier with a (K+1)-th shadow logit, train CE(f(x_f), K) on D_f, then drop the shadow unit."""

    epochs: int = param(10, "epochs over D_f (REFERENCES / SalUn: 10)", low=0)
    lr: float = param(1e-3, "learning rate, tuned per method in both codebases (original code 1e-5 for full-class "
                            "forgetting; SalUn code default 0.01; search: log 1e-5..1e-2 spans both). Our choice "
                            "1e-3: at 0.01 the whole network collapses onto the shadow class (digits MLP: retain "
                            "accuracy 100% -> 28%)", low=0.0, search=("log", 1e-5, 1e-2))
    schedule: str = param("constant", "learning-rate schedule (constant in both codebases)",
                          choices=("constant", "cosine", "step", "linear"))
    keep_shadow: bool = param(False, "keep the (K+1)-th shadow unit in the returned model, as SalUn's code "
                                     "(unlearn/boundary_ex.py) evaluates it: forget examples predicted as the shadow "
                                     "class count as wrong, so numbers compare with SalUn's table. Default: drop it "
                                     "(the paper's 'prune the extra neuron'); metrics that compare with the oracle "
                                     "(KL/JS) then see K-way outputs")
    bn_stats: str = bn_stats_param()


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier layer: `model.head` if it is an nn.Linear, else the last nn.Linear registered in the model."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return "head", head
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(f"boundary_expand needs a final nn.Linear classifier layer, but {type(model).__name__} has "
                          "no nn.Linear; expose it as `model.head` or use another method.")
    return found[-1]


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent = model
    *path, leaf = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, leaf, module)


def widen(layer: nn.Linear, seed: int) -> nn.Linear:
    """A copy of `layer` with one extra output unit (seeded default init) after the original ones."""
    with torch_seed(seed, "boundary_expand", "shadow"):
        wide = nn.Linear(layer.in_features, layer.out_features + 1, bias=layer.bias is not None,
                         device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        wide.weight[:-1].copy_(layer.weight)
        if layer.bias is not None:
            wide.bias[:-1].copy_(layer.bias)
    return wide


@register("boundary_expand", BoundaryExpandConfig, "Train the forget set into an extra shadow class, then prune it",
          "Chen et al. 2023, 'Boundary Unlearning: Rapid Forgetting of Deep Networks via Shifting the "
          "Decision Space', CVPR")
def boundary_expand(model, data, cfg: BoundaryExpandConfig, task, ctx: MethodContext):
    """Widen the head to K+1, train CE(f(x_f), K) on D_f, copy the first K units back into the original head."""
    name, head = find_head(model)
    if head.out_features != data.num_classes:
        raise ConfigError(f"boundary_expand: the last nn.Linear ({name!r}) has {head.out_features} outputs but the "
                          f"data has {data.num_classes} classes; expose the classifier layer as `model.head`.")
    model.to(task.device)
    wide = widen(head, ctx.seed)
    _set_module(model, name, wide)
    xf, _ = materialise(data.forget)
    shadow = ArrayDataset(xf, torch.full((len(xf),), data.num_classes, dtype=torch.long))
    train(model, shadow, recipe(cfg, ctx), task, seed=ctx.seed, key="boundary_expand", what="boundary_expand",
          frozen_bn=cfg.bn_stats == "frozen")
    if cfg.keep_shadow:
        model.eval()
        return model
    with torch.no_grad():
        head.weight.copy_(wide.weight[:-1])
        if head.bias is not None:
            head.bias.copy_(wide.bias[:-1])
    _set_module(model, name, head)
    model.eval()
    return model
