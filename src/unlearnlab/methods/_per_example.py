"""The diagonal of the true Fisher, Σ_i Σ_y p(y|x_i)·(∂ log p(y|x_i)/∂θ)², from whole-batch backward passes.

Fisher forgetting (Golatkar et al. 2020) needs every example's K per-class gradients, squared. Their code loops
over examples (batch size 1); vmap(jacrev) vectorises that. Here the same quantity comes from K backward passes
over a whole batch: in eval mode the examples of a batch do not interact,
so the gradient of Σ_i log p(y|x_i) with respect to a layer's output holds every example's own output gradient
δ_i, and a layer's per-example parameter gradient follows from δ_i and the layer's input a_i:
- Linear: δ_iᵀ a_i (summed over any token axis), bias Σ δ_i;
- Conv2d: δ_i times the unfolded input patches (one batched matmul), bias Σ over positions of δ_i;
- BatchNorm (eval mode, running statistics): Σ over positions of δ_i·x̂_i for the scale, of δ_i for the shift.
Each is squared per example, weighted by p(y|x_i), and summed: the values of the per-example loop (tests check
both against a naive loop). BackPACK's DiagGGNExact computes the same diagonal but is not a dependency here and
needs every module to be one it knows; Opacus refuses BatchNorm. Models with any other parameterised module,
grouped or non-zero-padded convolutions, BatchNorm without running statistics, or a layer applied twice in one
forward pass (FastCNN's flip test-time augmentation calls its head twice) return None, and the caller uses the
per-example Jacobian instead.

Where it pays (benchmarks/fisher_pass.py, docs/fisher_pass.md: CPU, 1 thread, this pass's speed over the
per-example Jacobian's): a Linear layer's squared per-example gradient is (δ²)ᵀ(a²), never materialised, so an MLP
on 8x8 inputs runs 3.7x faster; a convolution's must be materialised per example (weights are shared over
positions), so with many positions it costs as much as the Jacobian or more: cnn on 8x8 2.2x, on 32x32 0.50x, the
cifar10-dev FastCNN 0.68x. Fisher forgetting therefore takes this pass only for models without convolutions
(true_fisher's how='auto').
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _supported(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear):
        return True
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.padding_mode == "zeros"
    if isinstance(m, _BN):
        return m.running_mean is not None and m.running_var is not None
    return False


def layers_of(model: nn.Module) -> dict[str, nn.Module] | None:
    """{module name: module} of the modules that own trainable parameters, or None when one is not supported."""
    out = {}
    for name, m in model.named_modules():
        if any(p.requires_grad for p in m.parameters(recurse=False)):
            if not _supported(m):
                return None
            out[name] = m
    return out


def _conv_padding(m: nn.Conv2d) -> tuple[int, int, int, int] | tuple[int, int]:
    """F.unfold's padding for `m` (symmetric), or (left, right, top, bottom) for an asymmetric 'same'."""
    if m.padding == "valid":
        return (0, 0)
    if m.padding == "same":
        total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
        h, w = total
        return (w // 2, w - w // 2, h // 2, h - h // 2)
    return tuple(m.padding)


def _per_example_grads(m: nn.Module, a: torch.Tensor, d: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-example gradients {'weight': (B, *w.shape), 'bias': (B, *b.shape)} of module m, from its input a and
    the gradient d of the (per-example separable) objective with respect to its output."""
    b = a.shape[0]
    out = {}
    if isinstance(m, nn.Linear):
        a3, d3 = a.reshape(b, -1, a.shape[-1]), d.reshape(b, -1, d.shape[-1])
        out["weight"] = torch.bmm(d3.transpose(1, 2), a3)
        out["bias"] = d3.sum(1)
    elif isinstance(m, nn.Conv2d):
        pad = _conv_padding(m)
        if len(pad) == 4:
            a, pad = F.pad(a, pad), (0, 0)
        u = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=pad, stride=m.stride)  # (B, Cin·k·k, L)
        d3 = d.reshape(b, d.shape[1], -1)
        out["weight"] = torch.bmm(d3, u.transpose(1, 2)).reshape(b, *m.weight.shape)
        out["bias"] = d3.sum(2)
    else:  # BatchNorm in eval mode: y = x̂·γ + β with x̂ from the running statistics
        shape = (1, -1) + (1,) * (a.dim() - 2)
        xhat = (a - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
        dims = tuple(range(2, a.dim()))
        out["weight"] = (d * xhat).sum(dims) if dims else d * xhat
        out["bias"] = d.sum(dims) if dims else d
    return out


def layerwise_fisher(model: nn.Module, batches, device, max_memory_mb: float = 1024.0
                     ) -> dict[str, torch.Tensor] | None:
    """(1/n) Σ_i Σ_y p(y|x_i)·(∂ log p(y|x_i)/∂θ)² over the n inputs of `batches` (an iterable of (x, _) batches),
    per trainable parameter name, with the model as it is (the caller puts it in eval mode). Returns None when the
    model has a layer this cannot handle (module docstring) or a log-probability is not finite: the caller then
    uses the per-example Jacobian (which reports a non-finite one)."""
    layers = layers_of(model)
    if layers is None:
        return None
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = {id(m): n for n, m in layers.items()}
    largest = max((sum(p.numel() for p in m.parameters(recurse=False)) for m in layers.values()), default=1)
    per_chunk = max(1, min(256, int(max_memory_mb * 2**20 // (4 * largest))))
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    seen: dict[str, list] = {}

    def hook(m, inp, out):
        seen.setdefault(names[id(m)], []).append((inp[0].detach(), out))
        return out.clone()  # a later in-place op (ReLU(inplace=True)) changes the clone, not the output held here

    handles = [m.register_forward_hook(hook) for m in layers.values()]
    n = 0
    try:
        with torch.enable_grad(), torch.autocast(torch.device(device).type, enabled=False):
            for x, _ in batches:
                x = x.to(device)
                for s in range(0, len(x), per_chunk):
                    seen.clear()
                    logp = F.log_softmax(model(x[s:s + per_chunk]).float(), dim=-1)
                    if any(len(v) != 1 for v in seen.values()) or len(seen) != len(layers):
                        return None  # a layer applied twice (or never): its per-example gradient is not one δ·a
                    if not bool(torch.isfinite(logp).all()):
                        return None
                    _accumulate(layers, seen, logp, acc)
                    n += len(logp)
    finally:
        for h in handles:
            h.remove()
        seen.clear()
    return {name: v / max(n, 1) for name, v in acc.items()}


def _accumulate(layers: dict[str, nn.Module], seen: dict[str, list], logp: torch.Tensor,
                acc: dict[str, torch.Tensor]) -> None:
    """Add Σ_i Σ_y p(y|x_i)·g_iy² of one batch to `acc`: one backward pass per class y."""
    prob = logp.detach().exp()
    outs = [seen[name][0][1] for name in layers]
    k = logp.shape[1]
    for y in range(k):
        grads = torch.autograd.grad(logp[:, y].sum(), outs, retain_graph=y < k - 1, allow_unused=True)
        for (name, m), d in zip(layers.items(), grads):
            if d is None:
                continue
            for pname, g in _per_example_grads(m, seen[name][0][0].float(), d.float()).items():
                full = f"{name}.{pname}" if name else pname
                if full in acc:
                    acc[full] += torch.einsum("b,b...->...", prob[:, y], g.square())
