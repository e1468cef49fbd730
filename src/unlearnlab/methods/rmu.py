"""RMU: steer a middle layer's activations on forget text towards a scaled random vector (Li et al. 2024, WMDP)."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from .. import distributed
from ..config import param
from ..errors import ConfigError
from ..models.lm_format import IGNORE
from ..seeding import torch_generator
from ._lm_common import LMUnlearnConfig, decoder_layers, frozen_copy, param_regex, retain_stream, run_forget_retain
from .base import MethodContext, register


@dataclasses.dataclass(frozen=True)
class RMUConfig(LMUnlearnConfig):
    """RMU (Li et al. 2024, 'The WMDP Benchmark', §5): loss = ‖h_l(x_f) - c·u‖² + α‖h_l(x_r) - h_l^frozen(x_r)‖²
    with u a random unit vector. preset='wmdp' (default) takes WMDP's settings (Zephyr-7B): l=7, c=6.5, α=1200,
    lr 5e-5, only the MLP down-projections of blocks l-2..l trained. preset='tofu' takes OpenUnlearning's TOFU RMU
    (configs/trainer/RMU.yaml + experiment/unlearn/tofu/default.yaml @ d3d7cf9): l=7, c=2, α=1, every parameter
    trained, lr 1e-5, weight decay 0.01, 10 epochs with one warm-up epoch, batch 32. Fields set explicitly beside
    the preset win over it. Models with fewer than l+1 blocks use their middle block. As in OpenUnlearning, the
    squared errors are averaged over answer tokens (labels != -100: all tokens of a plain document).
    adaptive_scale > 0 gives Adaptive RMU (Dang et al. 2025, 'On Effects of Steering Latent Representation for
    Large Language Model Unlearning', AAAI; scale 5): c = scale x the mean norm of block l's output on D_f,
    which carries the coefficient across models whose activation norms differ. Deviation: the norm is averaged
    over all of D_f's answer tokens under the frozen model, not over the first batch's tokens (same model at step
    0; independent of batch order and padding)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "wmdp": {"steering_coeff": 6.5, "alpha": 1200.0, "layer": 7, "trainable": "mlp", "lr": 5e-5,
                 "weight_decay": 0.0, "warmup": 0.0, "adaptive_scale": 0.0},
        "tofu": {"steering_coeff": 2.0, "alpha": 1.0, "layer": 7, "trainable": "all", "lr": 1e-5,
                 "weight_decay": 0.01, "epochs": 10, "warmup": 0.1, "batch_size": 32, "schedule": "linear",
                 "adaptive_scale": 0.0},
    }

    preset: str = param("wmdp", "settings the other fields default to: wmdp (WMDP, Li et al. 2024: c=6.5, α=1200, "
                                "lr 5e-5, MLP down-projections of blocks l-2..l) or tofu (OpenUnlearning @ d3d7cf9 "
                                "TOFU: c=2, α=1, all parameters, lr 1e-5, wd 0.01, 10 epochs, 1 warm-up epoch); "
                                "fields given explicitly win (spec: overrides: {rmu: {preset: tofu}})",
                        choices=("wmdp", "tofu"))
    lr: float = param(5e-5, "learning rate (WMDP: 5e-5; tofu preset: 1e-5; search: log 1e-5..1e-2, up to the "
                            "SmolLM2 preset's 1e-2)", low=0.0, search=("log", 1e-5, 1e-2))
    layer: int = param(7, "block whose output is steered (WMDP and OpenUnlearning: 7; clamped to the middle block "
                          "of small models)", low=0)
    steering_coeff: float = param(6.5, "norm c of the control vector (WMDP Zephyr-7B: 6.5; OpenUnlearning TOFU: 2; "
                                       "search: log 1..20)", low=0.0, search=("log", 1.0, 20.0))
    alpha: float = param(1200.0, "weight of the retain activation-matching term (WMDP: 1200; OpenUnlearning TOFU: "
                                 "1; search: log 1..1200)", low=0.0, search=("log", 1.0, 1200.0))
    trainable: str = param("mlp", "parameters trained: mlp (MLP down-projections of blocks l-2..l, WMDP) or all "
                                  "(every parameter, OpenUnlearning's RMU.yaml for TOFU)", choices=("mlp", "all"))
    weight_decay: float = param(0.0, "weight decay (WMDP: AdamW without decay; tofu preset: 0.01)", low=0.0)
    warmup: float = param(0.0, "fraction of the steps with a linear warm-up (WMDP: none; tofu preset: 1 epoch of "
                               "10 = 0.1)", low=0.0, high=1.0)
    adaptive_scale: float = param(0.0, "Adaptive RMU (Dang et al. 2025): c = scale x mean ‖h_l(D_f)‖; replaces "
                                  "steering_coeff when > 0 (paper: 5; 0 = off)", low=0.0)


class _Stop(Exception):
    """Raised by the hook once the steered block has run (later blocks are not needed)."""


def hidden_at(model: nn.Module, batch: dict, layer: int, task) -> torch.Tensor:
    """Output of block `layer` for `batch`, computing no block after it."""
    got: list[torch.Tensor] = []

    def hook(_m, _inp, out):
        got.append(out[0] if isinstance(out, tuple) else out)
        raise _Stop

    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        task.forward(model, batch)
    except _Stop:
        pass
    finally:
        handle.remove()
    return got[0]


def mean_activation_norm(model: nn.Module, ds, layer: int, task, batch_size: int) -> float:
    """Mean L2 norm of block `layer`'s output over the answer tokens of `ds` (no gradients)."""
    from ..data.core import batches

    total, count = 0.0, 0.0
    with torch.no_grad():
        for b in batches(ds, batch_size, shuffle=False):
            b = task.to_device(b)
            h = hidden_at(model, b, layer, task)
            m = (b["labels"] != IGNORE).to(h.device, h.dtype)
            total += float((h.norm(dim=-1) * m).sum())
            count += float(m.sum())
    if count == 0:
        raise ConfigError("Adaptive RMU needs answer tokens in D_f to measure activation norms; every label is "
                          "masked. Check the forget set.")
    return total / count


def _masked_mse(h: torch.Tensor, target: torch.Tensor, batch: dict) -> torch.Tensor:
    """Squared error averaged over the hidden size and the answer tokens of each sequence, then the batch."""
    m = (batch["labels"] != IGNORE).to(h.device, h.dtype)
    per_token = ((h - target) ** 2).mean(-1)
    return distributed.mean((per_token * m).sum(1) / m.sum(1).clamp_min(1.0))  # over every rank's examples


@register("rmu", RMUConfig, "Representation misdirection: scramble middle-layer activations on D_f",
          "Li et al. 2024, 'The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning'",
          kinds=("lm",))
def rmu(model, data, cfg: RMUConfig, task, ctx: MethodContext):
    """Minimise ‖h_l(x_f) − c·u‖² + α‖h_l(x_r) − h_l^θ0(x_r)‖² over down_proj of blocks l-2..l (or everything)."""
    n_blocks = len(decoder_layers(model))
    layer = cfg.layer if cfg.layer < n_blocks else n_blocks // 2
    frozen = frozen_copy(model)
    hidden = getattr(model.config, "hidden_size", None) or decoder_layers(model)[0].mlp.down_proj.out_features
    u = torch.rand(hidden, generator=torch_generator(ctx.seed, "rmu-control"))
    coeff = cfg.steering_coeff
    if cfg.adaptive_scale > 0:
        coeff = cfg.adaptive_scale * mean_activation_norm(frozen, data.forget, layer, task, cfg.batch_size)
    control = (u / u.norm() * coeff).to(task.device)
    stream = retain_stream(data.retain, cfg.batch_size, ctx.seed, "rmu") if cfg.alpha > 0 else None
    blocks = "|".join(str(i) for i in range(max(0, layer - 2), layer + 1))
    pattern = rf"layers\.({blocks})\.mlp\.down_proj\." + ("lora_" if cfg.lora_r > 0 else "weight")

    def forget_loss(m, b):
        loss = _masked_mse(hidden_at(m, b, layer, task), control.expand(1, 1, -1), b)
        if stream is not None:
            rb = next(stream)
            with torch.no_grad():
                target = hidden_at(frozen, rb, layer, task)
            loss = loss + cfg.alpha * _masked_mse(hidden_at(m, rb, layer, task), target, rb)
        return loss

    def params(work):
        chosen = param_regex(work, pattern)
        keep = {id(p) for p in chosen}
        for p in work.parameters():
            p.requires_grad_(id(p) in keep)
        return chosen

    if cfg.trainable == "all":
        return run_forget_retain(model, data, cfg, task, ctx, "rmu", forget_loss, alpha=0.0)
    return run_forget_retain(model, data, cfg, task, ctx, "rmu", forget_loss, alpha=0.0, params=params,
                             lora_targets=rf".*layers\.({blocks})\.mlp\.down_proj")
