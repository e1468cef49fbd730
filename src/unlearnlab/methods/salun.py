"""SalUn: weight-saliency mask from the forget-loss gradient, then random labels on the salient weights only."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import param
from ..data.core import batches
from .base import MethodContext, register
from .random_label import RandomLabelConfig, relabel_train


@dataclasses.dataclass(frozen=True)
class SalUnConfig(RandomLabelConfig):
    """SalUn (Fan et al. 2024, ICLR): mask = top `threshold` of weights by |∇θ CE(θ0; D_f)| (global), then RL
    updating only the masked weights. Code: OPTML-Group/Unlearn-Saliency, generate_mask.py + unlearn/RL.py."""

    threshold: float = param(0.5, "fraction of all weights kept trainable, ranked globally by saliency "
                                  "(SalUn: 50% for CIFAR-10 random forgetting; grid: 0.1..0.9 in steps of 0.1, "
                                  "the with_{ratio}.pt mask ratios of the OPTML-Group mask scripts, REFERENCES-SEEDS "
                                  "C5)", low=0.0, high=1.0, search=("choice", 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7,
                                                                     0.8, 0.9))
    lr: float = param(0.013, "learning rate (the README's CIFAR-10 10% random example: 0.013; its 2023 versions "
                             "used 0.1; search: log 1e-3..1e-1, spanning both)", low=0.0, search=("log", 1e-3, 1e-1))
    masked_decay: bool = param(False, "true = the code behind the paper's Table 1: the mask multiplies the loss "
                                      "gradient only, so SGD weight decay (and its momentum) still moves masked-out "
                                      "weights; false (default) = the 2026 fix of the public code (PR #33): "
                                      "masked-out weights stay exactly at θ0")
    mask_batch_size: int = param(256, "batch size for the saliency gradient, which sums per-batch mean-CE gradients "
                                      "as generate_mask.py does (SalUn code batch size 256)", low=1)


def saliency_mask(model: nn.Module, forget, task, threshold: float, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Boolean mask per parameter: True for the top `threshold` fraction of |Σ_batches ∇θ CE(θ; D_f)| (global)."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    was_training = model.training
    model.eval()
    for batch in batches(forget, batch_size):
        model.zero_grad(set_to_none=True)
        task.loss(model, batch).backward()
        for n, p in params.items():
            if p.grad is not None:
                grads[n] += p.grad
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = int(len(flat) * threshold)
    chosen = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    if k > 0:
        chosen[torch.topk(flat, k, sorted=False).indices] = True
    out, start = {}, 0
    for n, g in grads.items():
        out[n] = chosen[start:start + g.numel()].view_as(g)
        start += g.numel()
    return out


@register("salun", SalUnConfig, "Random labels restricted to the weights most salient for the forget loss",
          "Fan et al. 2024, 'SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency', ICLR")
def salun(model, data, cfg: SalUnConfig, task, ctx: MethodContext):
    """RL where masked-out weights never move: their gradients (incl. weight decay) are zeroed and they are restored
    (`masked_decay`: the paper-era code, where weight decay still moves them)."""
    model.to(task.device)
    mask = saliency_mask(model, data.forget, task, cfg.threshold, cfg.mask_batch_size)
    params = dict(model.named_parameters())
    if cfg.masked_decay:
        return _paper_code_salun(model, data, cfg, task, ctx, mask, params)
    frozen = {n: params[n].detach().clone() for n in mask}
    scale = {n: keep.to(params[n].dtype) for n, keep in mask.items()}
    wd = cfg.weight_decay
    plist, slist = [params[n] for n in mask], [scale[n] for n in mask]

    @torch.no_grad()
    def grad_hook(m: nn.Module) -> None:
        # Coupled L2 weight decay on the salient weights only; masked-out coordinates get an exact zero gradient,
        # so SGD momentum / Adam moments there stay zero.
        for p in plist:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in plist]
        if wd:
            torch._foreach_add_(grads, plist, alpha=wd)
        torch._foreach_mul_(grads, slist)

    @torch.no_grad()
    def step_hook(m: nn.Module) -> None:
        # Guarantee bitwise-unchanged masked-out weights whatever the optimiser (as SalUn's fixed code restores θ0).
        for n, keep in mask.items():
            params[n].copy_(torch.where(keep, params[n], frozen[n]))

    return relabel_train(model, data, cfg, task, ctx, key="salun", grad_hook=grad_hook, step_hook=step_hook,
                         weight_decay=0.0)


def _paper_code_salun(model, data, cfg: SalUnConfig, task, ctx: MethodContext, mask: dict[str, torch.Tensor],
                      params: dict[str, nn.Parameter]) -> nn.Module:
    """SalUn as its code ran for the paper: grad *= mask after backward, then a plain SGD step whose coupled weight
    decay (and momentum) also applies to masked-out weights."""
    scale = [(params[n], keep.to(params[n].dtype)) for n, keep in mask.items()]

    @torch.no_grad()
    def grad_hook(m: nn.Module) -> None:
        for p, s in scale:
            if p.grad is not None:
                p.grad.mul_(s)

    return relabel_train(model, data, cfg, task, ctx, key="salun", grad_hook=grad_hook)
