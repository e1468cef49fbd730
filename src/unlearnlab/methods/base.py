"""Method contract: `fn(model, data, cfg, task, ctx) -> model`, registered with a config class; never mutates input."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import config as C
from ..config import param
from ..registry import Registry
from ..seeding import torch_seed
from ..train import TrainConfig

METHODS: Registry = Registry("method", "unlearnlab.methods")


@dataclasses.dataclass
class MethodContext:
    """What a method may need beyond its config: the seed and the original training recipe. A method writes what a
    reader of its result must know into `info` (e.g. SSD's fraction of parameters selected; stored in the run record
    as `method_info`) and anything alarming into `warnings` (shown while running and stored with the record)."""

    seed: int = 0
    recipe: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its function, config class and one-line description."""

    name: str
    fn: Callable[..., nn.Module]
    config: type
    description: str
    paper: str
    kinds: tuple[str, ...] = ("classifier",)


def register(name: str, config: type, description: str, paper: str, kinds: tuple[str, ...] = ("classifier",)):
    """Decorator registering `fn` as unlearning method `name`."""

    def wrap(fn):
        METHODS.add(name, Method(name, fn, config, description, paper, kinds))
        return fn

    return wrap


def get_method(name: str) -> Method:
    """The registered method `name` (did-you-mean on typos)."""
    return METHODS.get(name)


def with_preset(config: type, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """`overrides` over the values of the preset they name (overrides['preset'], a key of config.PRESETS), for a
    config class that declares presets; else `overrides` unchanged."""
    out = dict(overrides or {})
    presets = getattr(config, "PRESETS", None)
    if not presets or out.get("preset") is None:
        return out
    if out["preset"] not in presets:
        from ..errors import ConfigError

        raise ConfigError(f"preset must be one of {', '.join(presets)}. Got {out['preset']!r} instead.")
    return {**presets[out["preset"]], **out}


# Methods that run CPU conv nets in channels_last (models/layout.py), each checked against NCHW in
# tests/test_layout.py; methods that flatten parameters with .view (e.g. parameters_to_vector) need contiguous ones.
CHANNELS_LAST = frozenset({"ft", "ga", "random_label", "salun", "l1_sparse", "ssd", "scrub"})
# Classifier methods whose forward passes run under bf16 autocast when the task asks for it (a run whose recipe sets
# amp; models/precision.py), each checked against float32 in tests/test_precision.py. Left out: influence (an exact
# Hessian solve) and fisher_forgetting (noise scaled by the inverse Fisher), whose gradients should stay float32.
AUTOCAST = frozenset({"ft", "ga", "random_label", "salun", "l1_sparse", "ssd", "scrub", "lfssd", "neggrad_plus",
                      "boundary_shrink", "boundary_expand", "bad_teacher", "retrain"})


def run_method(name: str, model: nn.Module, data, task, overrides: dict[str, Any] | None = None,
               ctx: MethodContext | None = None) -> nn.Module:
    """Build the config from defaults + overrides and apply method `name` to a copy of `model`."""
    m = get_method(name)
    cfg = C.build(m.config, with_preset(m.config, overrides), what=name)
    import copy

    from ..models.layout import channels_last

    work = copy.deepcopy(model)
    if getattr(task, "amp", False) and name not in AUTOCAST:  # bf16 forwards only for the methods checked with it
        task = copy.copy(task)
        task.amp = False
    layout = channels_last if name in CHANNELS_LAST else contextlib.nullcontext
    with layout(work):  # CPU conv nets: faster oneDNN kernels; returned in the default format
        out = m.fn(work, data, cfg, task, ctx or MethodContext())
    if out is not work:
        out.to(memory_format=torch.contiguous_format)
    out.eval()
    return out


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Shared optimisation fields for fine-tuning-style methods."""

    epochs: int = param(10, "passes over the data", low=0)
    lr: float = param(0.01, "learning rate (search: ours, log 1e-3..1e-1 around the FT default 0.01)", low=0.0,
                      search=("log", 1e-3, 1e-1))
    batch_size: int = param(128, "examples per step", low=1)
    optimizer: str = param("sgd", "sgd, adam or adamw", choices=("sgd", "adam", "adamw"))
    momentum: float = param(0.9, "SGD momentum", low=0.0, high=1.0)
    weight_decay: float = param(5e-4, "L2 weight decay", low=0.0)
    schedule: str = param("cosine", "learning-rate schedule", choices=("constant", "cosine", "step", "linear"))
    augment: bool = param(False, "apply the original's training augmentation (random crop + flip on images) to the "
                                 "batches this method trains on (the reference codes of FT, RL, SalUn, GA, l1 train "
                                 "on augmented loaders; off by default so that runs on vectors are unchanged)")


def auto_chunk(chunk_size: int, device: torch.device | str, cpu: int, accelerator: int) -> int:
    """Examples per vmap chunk of per-example gradients: `chunk_size`, or with 0 the measured best for the device.
    On a CPU, vmap's batched per-example convolution gradients slow down past ~10-30 gradient rows per chunk
    (benchmarks/classifier_diagnostics.py); accelerators want large chunks."""
    return chunk_size if chunk_size > 0 else (cpu if torch.device(device).type == "cpu" else accelerator)


def bn_stats_param() -> Any:
    """The `bn_stats` field of the methods that train on forget-set batches alone (GA, Boundary Shrink/Expand)."""
    return param("update", "BatchNorm while training on forget-set batches alone: 'update' (the reference codes: "
                           "train mode, so the running statistics drift toward the forget set's) or 'frozen' (ours: "
                           "eval mode, normalising with and keeping the original's statistics, so only the "
                           "method's gradient changes the model). On a single forgotten class the drift alone is "
                           "an unlearning effect of its own: 40 train-mode forward passes over the class with no "
                           "gradient step took the cifar10-dev FastCNN's forget accuracy from 98% to 24% and its "
                           "test accuracy from 81% to 68%. Search: both", choices=("update", "frozen"),
                 search=("choice", "update", "frozen"))


AUGMENTATION = ("crop_pad", "pad_mode")  # how the original's recipe augments: methods with augment=True reuse it


def recipe(cfg: Any, ctx: MethodContext | None = None, **over: Any) -> TrainConfig:
    """A TrainConfig from the optimisation fields a method config shares with it; with `ctx`, the augmentation
    settings (crop padding and mode) of the original's recipe, so `augment=True` repeats the original's."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kw = {k: v for k, v in dataclasses.asdict(cfg).items() if k in names}
    if ctx is not None:
        kw.update({k: getattr(ctx.recipe, k) for k in AUGMENTATION})
    kw.update(over)
    return TrainConfig(**kw)


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Reset every layer's parameters (seeded), keeping the architecture."""
    with torch_seed(seed, "reinit", getattr(model, "arch", type(model).__name__)):
        for mod in model.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.reset_running_stats()
    return model


def num_params(model: nn.Module) -> int:
    """Trainable parameter count."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def mean_grad_sq(model: nn.Module, dataset, task, *, batch_size: int = 128,
                 loss: Callable[[nn.Module, Any], torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: mean over batches of squared gradients of the loss, per parameter."""
    from ..data.core import batches

    loss = loss or task.loss
    acc = {n: torch.zeros_like(p) for n, p in model.named_parameters() if p.requires_grad}
    count = 0
    model.eval()
    for batch in batches(dataset, batch_size):
        model.zero_grad(set_to_none=True)
        loss(model, batch).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                acc[n] += p.grad.detach() ** 2
        count += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(count, 1) for n, v in acc.items()}
