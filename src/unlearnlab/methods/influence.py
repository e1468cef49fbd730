"""IU (influence unlearning): one Newton-style step θ += α·F̂⁻¹·v with a WoodFisher inverse of the retain Fisher."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..config import param
from ..data.core import batches, subset
from ..errors import ConfigError
from ..seeding import numpy_rng
from ..train import check_finite
from .base import MethodContext, auto_chunk, register

LossOfLogits = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class InfluenceConfig:
    """Influence unlearning (Izzo et al. 2021; Koh & Liang 2017) as in Jia et al. 2023 ('Model Sparsity Can
    Simplify Machine Unlearning', code OPTML-Group/Unlearn-Sparse unlearn/Wfisher.py) with the WoodFisher inverse
    (Singh & Alistarh 2020). v = n_f/(n_f+n_r)·(mean ∇L(D_f) − mean ∇L(D_r)) as in their code; θ += α·F̂⁻¹v with
    F̂ = λI + (1/m)Σ g_i g_iᵀ over m per-example retain gradients (eval mode). Deviations: F̂⁻¹v is exact (Woodbury
    form of the m rank-1 WoodFisher updates), whereas their recursion reuses one rescaled vector (the first sample's
    gradient) in place of F̂_{k-1}⁻¹g_k; the m samples are a seeded random subset of D_r, not its first m."""

    alpha: float = param(10.0, "step scale α. NOT on the paper's scale: our F̂⁻¹v is the exact inverse, while the "
                               "reference recursion (Wfisher.py) reuses one rescaled vector and is not an inverse, "
                               "so the same α moves the weights by a different amount. The SalUn paper reports "
                               "searching α in [1, 20] for its own code (the README gives no range; arg_parser "
                               "default 0.2). Search: log 0.1..200, that range widened tenfold on each side "
                               "because the scales differ", low=0.0, search=("log", 0.1, 200.0))
    samples: int = param(1000, "per-example retain gradients in the WoodFisher estimate (their code stops after "
                               "~1,000 samples and uses N=1000 as the normaliser)", low=1)
    damping: float = param(1.0, "λ: F̂ = λI + (1/m)GᵀG (their recursion starts from the identity, i.e. λ=1)", low=1e-12)
    batch_size: int = param(128, "batch size for the forget/retain mean gradients (Jia et al. code: args.batch_size)",
                            low=1)
    chunk_size: int = param(0, "examples per vectorised (vmap) per-example-gradient chunk; 0 = auto: 8 on a CPU, "
                               "128 on an accelerator (the cifar10-dev FastCNN's per-example gradients ran at 53-63 "
                               "examples/s in chunks of 8 against 40-50 in chunks of 128, two runs on a busy 2-core "
                               "CPU, same values to 3e-7; docs/benchmark_cifar10/diagnostics.md); lower it for big "
                               "models", low=0)
    max_memory_mb: float = param(2048.0, "memory cap for the m x d per-example gradient matrix; m is lowered to "
                                         "fit (deviation: the paper's sequential recursion needs O(d) memory)", low=1.0)


def flat_params(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """Names and tensors of the trainable parameters, in model order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [n for n, _ in named], [p for _, p in named]


def mean_grad(model: nn.Module, dataset, task, batch_size: int, what: str) -> torch.Tensor:
    """Flattened gradient of the mean loss over `dataset` (batch means weighted by batch size)."""
    _, params = flat_params(model)
    total = torch.zeros(sum(p.numel() for p in params), device=params[0].device)
    n = 0
    for step, batch in enumerate(batches(dataset, batch_size)):
        loss = task.loss(model, batch)
        check_finite(loss, step, what)
        gs = torch.autograd.grad(loss, params, allow_unused=True)
        size = len(batch[1])
        total += size * torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(gs, params)])
        n += size
    return total / max(n, 1)


def per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task, chunk_size: int = 0,
                      loss_of: Callable[[Any, Any], torch.Tensor] | None = None) -> torch.Tensor:
    """[B, d] matrix of per-example gradients of task.loss (or `loss_of(fmodel, batch)`) via torch.func.vmap.

    The model must be in eval mode (BatchNorm uses running statistics). Models that vmap cannot trace fall back to
    one autograd call per example."""
    names, params = flat_params(model)
    detached = {n: p.detach() for n, p in zip(names, params)}
    buffers = dict(model.named_buffers())
    loss_of = loss_of or task.loss

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        def fmodel(inp: torch.Tensor) -> torch.Tensor:
            return functional_call(model, (p, buffers), (inp,))

        return loss_of(fmodel, (xi.unsqueeze(0), yi.unsqueeze(0)))

    def flatten(g: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([g[n].reshape(g[n].shape[0], -1) for n in names], dim=1)

    x, y = x.to(task.device), y.to(task.device)
    chunk_size = auto_chunk(chunk_size, x.device, cpu=8, accelerator=128)
    try:
        per = vmap(grad(one), in_dims=(None, 0, 0))
        return torch.cat([flatten(per(detached, x[s:s + chunk_size], y[s:s + chunk_size]))
                          for s in range(0, len(x), chunk_size)])
    except (RuntimeError, NotImplementedError):  # an op vmap cannot batch: slow but exact fallback
        rows = []
        for i in range(len(x)):
            gs = torch.autograd.grad(loss_of(model, (x[i:i + 1], y[i:i + 1])), params, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                   for g, p in zip(gs, params)]))
        return torch.stack(rows)


def woodfisher_solve(g: torch.Tensor, v: torch.Tensor, damping: float) -> torch.Tensor:
    """F̂⁻¹v for F̂ = λI + (1/m)GᵀG (G: m x d per-example gradients).

    This is the WoodFisher estimate (Singh & Alistarh 2020) that m recursive Sherman-Morrison rank-1 updates
    produce, computed in closed form by the Woodbury identity: F̂⁻¹v = (v − Gᵀ(mλI + GGᵀ)⁻¹Gv)/λ."""
    m = g.shape[0]
    gram = (g @ g.T).double()
    gram.diagonal().add_(m * damping)
    w = torch.linalg.solve(gram, (g @ v).double().unsqueeze(1)).squeeze(1).to(v.dtype)
    return (v - g.T @ w) / damping


def sample_count(cfg: InfluenceConfig, n_retain: int, dim: int) -> int:
    """How many per-example retain gradients fit in cfg.max_memory_mb (at most cfg.samples and |D_r|)."""
    fit = int(cfg.max_memory_mb * 2**20 // (4 * dim))
    if fit < 1:
        need = math.ceil(4 * dim / 2**20)
        raise ConfigError(f"influence.max_memory_mb={cfg.max_memory_mb} cannot hold even one per-example gradient of "
                          f"this model ({dim} parameters, {need} MB each); raise max_memory_mb to at least {need}.")
    return min(cfg.samples, n_retain, fit)


def retain_sample(data, m: int, seed: int):
    """A seeded random subset of m retain examples, stacked into (x, y) tensors."""
    idx = numpy_rng(seed, "influence", "woodfisher-samples").choice(len(data.retain), size=m, replace=False)
    ds = subset(data.retain, idx)
    xs, ys = zip(*batches(ds, max(m, 1)))
    return torch.cat(xs), torch.cat(ys)


@register("influence", InfluenceConfig, "Influence-function step with a WoodFisher inverse Fisher (IU)",
          "Izzo et al. 2021 / Koh & Liang 2017; Jia et al. 2023 'Model Sparsity Can Simplify Machine Unlearning' "
          "(NeurIPS); WoodFisher: Singh & Alistarh 2020")
def influence(model, data, cfg: InfluenceConfig, task, ctx: MethodContext):
    """θ += α·F̂⁻¹·(n_f/n)(ḡ_f − ḡ_r), F̂ the damped empirical Fisher of m retain examples."""
    model.to(task.device).eval()
    n_f, n_r = len(data.forget), len(data.retain)
    g_f = mean_grad(model, data.forget, task, cfg.batch_size, "influence (forget gradient)")
    g_r = mean_grad(model, data.retain, task, cfg.batch_size, "influence (retain gradient)") if n_r else 0 * g_f
    v = n_f / (n_f + n_r) * (g_f - g_r)
    if n_r:
        m = sample_count(cfg, n_r, v.numel())
        x, y = retain_sample(data, m, ctx.seed)
        step = woodfisher_solve(per_example_grads(model, x, y, task, cfg.chunk_size), v, cfg.damping)
    else:
        step = v / cfg.damping
    check_finite(step, 0, "influence (inverse-Fisher step)")
    _, params = flat_params(model)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(params) + cfg.alpha * step, params)
    return model
