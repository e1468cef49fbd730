"""FF (Fisher forgetting): add Gaussian noise scaled by the inverse Fisher of the retain set to θ0."""
from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jacrev, vmap

from ..config import param
from ..data.core import batches, fingerprint, labels_of, subset
from ..errors import ConfigError
from ..seeding import numpy_rng, torch_generator
from ..train import check_finite
from ._per_example import layerwise_fisher
from .base import MethodContext, auto_chunk, register

EPS = 1e-8        # Golatkar et al.: var = 1 / (F + 1e-8)
MAX_VAR = 1e3     # ... clamped to 1e3 ...
MAX_VAR_HEAD = 1e2  # ... and 1e2 for the output layer
SCALE_1D = 10.0   # biases / BatchNorm (1-D parameters): var x 10
SCALE_HEAD = 10.0  # output layer x 10 (class forgetting only, as in the authors' class-forgetting code)
FORGOTTEN_VAR = 1e-4  # the forgotten class's output row: mean 0, var 1e-4 (before the head x 10)


@dataclasses.dataclass(frozen=True)
class FisherForgettingConfig:
    """Fisher forgetting (Golatkar, Achille & Soatto 2020, 'Eternal Sunshine of the Spotless Net', CVPR; code
    AdityaGolatkar/SelectiveForgetting, as ported in if-loops/selective-synaptic-dampening). θ = θ0 + sqrt(var)·ε,
    var = α·clamp(1/(F + 1e-8), max=1e3) with F the diagonal of the true Fisher on D_r (expectation over the model's
    own predictive distribution, per example); the output layer is clamped at 1e2; weight matrices use the variance
    averaged over their input dimension; 1-D parameters (biases, BatchNorm) get var x 10. For full-class forgetting
    the forgotten class's output row is set to mean 0, var 1e-4 and the output layer's var is x 10 (their
    class-forgetting code); random forgetting follows their random-forgetting code (no output x 10). Deviation: the
    output layer is the last Linear with num_classes outputs (their test p.size(0)==num_classes also catches hidden
    layers of that width); the per-example loop (batch size 1) is vectorised with vmap(jacrev), same values; a
    model without convolutions gets the same Fisher layer by layer from K whole-batch backward passes (3.7x faster
    on an MLP; with convolutions the Jacobian is the faster way: benchmarks/fisher_pass.py, docs/fisher_pass.md).
    Not a config field: the values are the same, and a field would change every stored run's key."""

    alpha: float = param(1e-6, "noise scale α (the SSD authors' port uses 1e-6; Golatkar's function default 3e-6; "
                               "REFERENCES range 1e-9..1e-6, the log search grid). Larger forgets more and costs "
                               "accuracy", low=0.0, search=("log", 1e-9, 1e-6))
    chunk_size: int = param(0, "examples per vectorised per-example Jacobian chunk (their code: batch size 1); 0 = "
                               "auto: 1 on a CPU, 32 on an accelerator. On the CPU, vmap's batched per-example "
                               "convolution gradients are slower than one example at a time: the cifar10-dev "
                               "FastCNN's retain Fisher ran at 13.3-13.4 examples/s with chunks of 1 against 5.7-8.1 "
                               "with 32 (two runs on a busy 2-core CPU; same values to 5e-7; "
                               "docs/benchmark_cifar10/diagnostics.md). "
                               "Lowered automatically to fit max_memory_mb", low=0)
    max_memory_mb: float = param(1024.0, "memory cap for one chunk of per-example Jacobians (chunk x classes x "
                                         "parameters floats)", low=1.0)
    class_rule: bool = param(True, "for full-class forgetting, zero the forgotten class's output row (Golatkar)")
    samples: int = param(0, "retain examples in the Fisher estimate; 0 = all of D_r (Golatkar). A seeded subset is "
                            "an unbiased estimate of the same expectation and bounds the cost on large D_r", low=0)


def fisher_chunk(chunk_size: int, device: torch.device | str) -> int:
    """The chunk of examples per vectorised Jacobian: `chunk_size`, or with 0 one example (10 Jacobian rows) on a
    CPU and 32 on an accelerator (see FisherForgettingConfig.chunk_size)."""
    return auto_chunk(chunk_size, device, cpu=1, accelerator=32)


def true_fisher(model: nn.Module, dataset, task, chunk_size: int = 0,
                max_memory_mb: float = 1024.0, how: str = "auto") -> dict[str, torch.Tensor]:
    """Diagonal Fisher (1/n)Σ_i Σ_y p(y|x_i)·(∂ log p(y|x_i)/∂θ)² in eval mode, vectorised over examples.

    `how`: 'layerwise', or 'auto' (the method's way) on a model without convolutions, first try
    _per_example.layerwise_fisher; 'jacobian' (or 'auto' on a model it cannot handle): per chunk, vmap(jacrev)
    gives every example's K x d Jacobian of log-probabilities (one forward per example); the chunk shrinks so that
    chunk x K x d floats fit in `max_memory_mb`."""
    model.to(task.device).eval()
    if how == "layerwise" or (how == "auto" and not any(isinstance(m, nn.Conv2d) for m in model.modules())):
        fast = layerwise_fisher(model, batches(dataset, 1024), task.device, max_memory_mb)
        if fast is not None:
            return fast
        if how == "layerwise":
            raise ConfigError("true_fisher how='layerwise' handles models whose parameterised layers are Linear, "
                              "Conv2d (zero padding, no groups) and BatchNorm with running statistics, each used "
                              "once per forward pass; this model has another. Use how='auto' or 'jacobian'.")
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    dim = sum(p.numel() for p in params.values())

    def log_prob(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(functional_call(model, (p, buffers), (xi.unsqueeze(0),)).float(), dim=-1)[0]

    jac = vmap(jacrev(log_prob), in_dims=(None, 0))
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    n, chunk = 0, None
    for step, (x, _) in enumerate(batches(dataset, 4096)):
        x = x.to(task.device)
        with torch.no_grad():
            prob = F.softmax(model(x).float(), dim=-1)
        check_finite(prob, step, "fisher_forgetting (Fisher pass)")
        chunk = chunk or max(1, min(fisher_chunk(chunk_size, task.device),
                                    int(max_memory_mb * 2**20 // (4 * prob.shape[1] * dim))))
        for s in range(0, len(x), chunk):
            j = jac(params, x[s:s + chunk])
            w = prob[s:s + chunk].reshape(-1)
            for name, total in acc.items():  # Σ_b Σ_k p_bk·J_bk², squaring the fresh Jacobian in place
                total += (w @ j[name].reshape(len(w), -1).square_()).view_as(total)
        n += len(x)
    return {name: v / max(n, 1) for name, v in acc.items()}


_FISHERS: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()  # this process's last Fishers, by content
KEEP = 2


def fisher_key(model: nn.Module, dataset, device: torch.device) -> str:
    """A content key of what the Fisher depends on: every weight and buffer of `model`, the examples, the device."""
    h = hashlib.sha256(str(device).encode())
    for name, v in model.state_dict().items():
        h.update(name.encode())
        h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(fingerprint(dataset).encode())
    return h.hexdigest()


def cached_fisher(model: nn.Module, dataset, task, chunk_size: int, max_memory_mb: float,
                  info: dict | None = None, how: str = "auto") -> dict[str, torch.Tensor]:
    """true_fisher, computed once per process for the same weights and examples: the trials of a sweep or a tuner
    that vary only α (or the class rule) share the retain-set pass, the whole cost of the method (a per-example
    Jacobian over D_r); any change of weights or data is a new key. A reuse is noted in `info` (the run record's
    method_info: such a run's wall time leaves out the Fisher pass)."""
    key = fisher_key(model, dataset, task.device)
    if info is not None:
        info["fisher_reused"] = key in _FISHERS
    if key in _FISHERS:
        _FISHERS.move_to_end(key)
        return _FISHERS[key]
    out = _FISHERS[key] = true_fisher(model, dataset, task, chunk_size, max_memory_mb, how)
    while len(_FISHERS) > KEEP:
        _FISHERS.popitem(last=False)
    return out


def output_layer(model: nn.Module, num_classes: int) -> set[str]:
    """Names of the parameters of the last Linear layer when it produces the `num_classes` logits."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last = (name, mod)
    if last is None or last[1].out_features != num_classes:
        return set()
    prefix = f"{last[0]}." if last[0] else ""
    return {prefix + n for n, _ in last[1].named_parameters()}


def forgotten_class(data) -> int | None:
    """The class of a full-class forget set (every forget label equal, none left in D_r), else None."""
    fl = np.unique(labels_of(data.forget))
    if len(fl) != 1 or int(fl[0]) in set(np.unique(labels_of(data.retain)).tolist()):
        return None
    return int(fl[0])


def noise_moments(name: str, p: torch.Tensor, fisher: torch.Tensor, alpha: float, head: set[str],
                  cls: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of the forgetting noise for one parameter (Golatkar's get_mean_var rules)."""
    is_head = name in head
    var = (1.0 / (fisher + EPS)).clamp(max=MAX_VAR_HEAD if is_head else MAX_VAR) * alpha
    if p.ndim > 1:
        var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
    mu = p.detach().clone()
    if is_head and cls is not None:
        mu[cls] = 0
        var[cls] = FORGOTTEN_VAR
        var = var * SCALE_HEAD
    elif p.ndim == 1:
        var = var * SCALE_1D
    return mu, var.sqrt()


@register("fisher_forgetting", FisherForgettingConfig, "Fisher forgetting: noise scaled by the inverse retain Fisher",
          "Golatkar, Achille & Soatto 2020, 'Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep "
          "Networks', CVPR")
def fisher_forgetting(model, data, cfg: FisherForgettingConfig, task, ctx: MethodContext):
    """θ = μ + std·ε with (μ, std) from the retain-set Fisher, ε ~ N(0, I) from a seeded generator."""
    retain = data.retain
    if 0 < cfg.samples < len(retain):
        pick = numpy_rng(ctx.seed, "fisher_forgetting", "samples").choice(len(retain), cfg.samples, replace=False)
        retain = subset(retain, np.sort(pick))
    fisher = cached_fisher(model, retain, task, cfg.chunk_size, cfg.max_memory_mb, ctx.info)
    head = output_layer(model, data.num_classes)
    cls = forgotten_class(data) if cfg.class_rule else None
    gen = torch_generator(ctx.seed, "fisher_forgetting", "noise")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in fisher:
                continue
            mu, std = noise_moments(name, p, fisher[name], cfg.alpha, head, cls)
            eps = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
            p.copy_(mu + std * eps)
    return model
