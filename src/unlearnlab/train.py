"""The one training loop: original models, the retrain oracle and every fine-tuning-based method use it."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from . import distributed
from .config import param
from .data.core import batches
from .engine.events import epoch_end, record_loss, training_step
from .errors import ConfigError, DivergenceError
from .models import precision
from .seeding import torch_generator

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training recipe (defaults: the standard CIFAR-10 SGD recipe, shortened for CPU)."""

    epochs: int = param(30, "passes over the data", low=0)
    lr: float = param(0.1, "peak learning rate (CIFAR recipe: SGD 0.1)", low=0.0)
    optimizer: str = param("sgd", "sgd or adam", choices=("sgd", "adam", "adamw"))
    momentum: float = param(0.9, "SGD momentum", low=0.0, high=1.0)
    weight_decay: float = param(5e-4, "L2 weight decay (CIFAR recipe: 5e-4)", low=0.0)
    batch_size: int = param(128, "examples per step", low=1)
    schedule: str = param("cosine", "learning-rate schedule", choices=("constant", "cosine", "step", "linear"))
    augment: bool = param(False, "random crop (pad crop_pad) + horizontal flip on image batches")
    amp: bool = param(False, "bfloat16 autocast (no loss scaling needed) on CUDA and on CPUs with bf16 units (AMX / "
                             "AVX512-BF16: the cifar10-dev original trains 2.25x faster); ignored on other CPUs, where "
                             "bf16 is slower. As a run's recipe it also covers the methods that support it and "
                             "evaluation (models/precision.py)")
    crop_pad: int = param(4, "padding of the random-crop augmentation (CIFAR standard: 4)", low=0)
    pad_mode: str = param("zeros", "padding of the random crop: zeros (CIFAR standard) or reflect",
                          choices=("zeros", "reflect"))
    nesterov: bool = param(False, "Nesterov momentum (SGD)")
    label_smoothing: float = param(0.0, "label smoothing of the training cross-entropy", low=0.0, high=1.0)
    warmup: float = param(0.0, "fraction of the steps with a linear warm-up from 0 to the peak lr; the schedule "
                               "then runs over the remaining steps", low=0.0, high=1.0)
    decay_norm: bool = param(True, "apply weight decay to normalisation weights and biases too (false: only to "
                                   "weight matrices and kernels, as fast CIFAR recipes do)")
    channels_last: bool = param(False, "train conv nets in channels_last memory format (faster oneDNN kernels on "
                                       "CPU); the model is returned in the default format")
    ema: float = param(0.0, "decay of an exponential moving average of the weights (and BatchNorm statistics) kept "
                            "from the third epoch on; the returned model is the average (0 = off)", low=0.0,
                       high=0.9999)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; otherwise the named device (with a clear error if absent)."""
    if name in ("auto", "cuda") and distributed.launched() and torch.cuda.is_available():
        return distributed.launch_device()  # each process of a launch on its own GPU (or the CPU with gloo)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"Device {name!r} was requested but CUDA is not available; use --device cpu or auto.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("Device 'mps' was requested but Apple MPS is not available; use --device cpu or auto.")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from None


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig,
                   lr: float | None = None) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam/AdamW per `cfg`."""
    lr = cfg.lr if lr is None else lr
    params = [p for p in params if p.requires_grad]
    groups: Any = params
    if not cfg.decay_norm and cfg.weight_decay:
        groups = [{"params": [p for p in params if p.dim() > 1]},
                  {"params": [p for p in params if p.dim() <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate at `step` of `total` steps (after a linear warm-up over the first
    `warmup` fraction of them, the schedule runs over the rest)."""
    w = int(round(warmup * total)) if total > 0 else 0
    if w and step < w:
        return step / w
    step, total = step - w, total - w
    if total <= 0 or schedule == "constant":
        return 1.0
    t = min(step / total, 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "linear":
        return 1.0 - t
    return 0.1 ** int(t * 3 >= 1) * 0.1 ** int(t * 3 >= 2)  # step: /10 at 1/3 and 2/3


def check_finite(loss: torch.Tensor, step: int, what: str) -> None:
    """Raise DivergenceError if `loss` is NaN or inf."""
    if not torch.isfinite(loss).all():
        raise DivergenceError(what, step, float(loss.detach().float().mean()))


def _parallel_step(model: nn.Module, batch: Any, loss_fn: LossFn, opt: torch.optim.Optimizer,
                   after_backward: Callable[[nn.Module], None] | None, task, use_amp: bool, step: int,
                   what: str) -> torch.Tensor:
    """One data-parallel step: this rank's slice, its loss scaled by its share, gradients summed over the ranks;
    returns the loss of the whole global batch."""
    local, share = distributed.shard(batch)
    with distributed.step(share), precision.autocast(task.device, use_amp):
        loss = loss_fn(model, local)
    opt.zero_grad(set_to_none=True)
    (loss * share).backward()
    total, finite = distributed.sync_gradients([p for g in opt.param_groups for p in g["params"]], loss, share)
    if not finite:
        raise DivergenceError(what, step, total)
    if after_backward is not None:
        after_backward(model)
    opt.step()
    distributed.sync_norm_buffers(model)
    return torch.tensor(total)


def train(model: nn.Module, dataset: Dataset, cfg: TrainConfig, task, *, seed: int, key: str = "train",
          loss_fn: LossFn | None = None, after_backward: Callable[[nn.Module], None] | None = None,
          params: Iterable[torch.nn.Parameter] | None = None, what: str = "training",
          on_epoch: Callable[[int, nn.Module], None] | None = None, frozen_bn: bool = False) -> nn.Module:
    """Train `model` in place on `dataset` with `cfg`; `loss_fn(model, batch)` overrides task.loss. With
    `frozen_bn` the BatchNorm layers stay in eval mode (they normalise with, and keep, their running statistics).

    Under a multi-process launch each rank trains on its slice of the same global batches and gradients are summed
    over the ranks, so the result equals one process with the same batch size (see unlearnlab.distributed)."""
    if loss_fn is None and cfg.label_smoothing > 0:
        loss_fn = _smoothed_loss(task, cfg.label_smoothing)
    loss_fn = loss_fn or task.loss
    model.to(task.device).train()
    if frozen_bn:
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.eval()
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(params if params is not None else model.parameters(), cfg)
    gen = torch_generator(seed, key)
    n = len(dataset)
    total = cfg.epochs * max(1, math.ceil(n / cfg.batch_size))
    use_amp = cfg.amp  # bf16 where it is fast (CUDA, bf16 CPUs); never switches off an enclosing autocast
    parallel = distributed.active()  # under a multi-process launch: shard batches, sum gradients (distributed.py)
    if parallel:
        distributed.check_replicas(model)
    step = 0
    ema = Average(model, cfg.ema) if cfg.ema > 0 else None
    for epoch in range(cfg.epochs):
        for batch in batches(dataset, cfg.batch_size, shuffle=True, gen=gen, augment=cfg.augment,
                             crop_pad=cfg.crop_pad, pad_mode=cfg.pad_mode):
            if cfg.channels_last and isinstance(batch, (tuple, list)) and batch[0].dim() == 4:
                batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
            for g in opt.param_groups:
                g["lr"] = cfg.lr * lr_factor(cfg.schedule, step, total, cfg.warmup)
            if parallel:
                loss = _parallel_step(model, batch, loss_fn, opt, after_backward, task, use_amp, step, what)
            else:
                with precision.autocast(task.device, use_amp):
                    loss = loss_fn(model, batch)
                check_finite(loss, step, what)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if after_backward is not None:
                    after_backward(model)
                opt.step()
            step += 1
            if ema is not None and epoch >= min(2, cfg.epochs - 1):
                ema.update(model)
            training_step(what, epoch + 1, cfg.epochs, step, total)
            record_loss(what, step, loss)
        if on_epoch is not None:
            on_epoch(epoch, model)
        epoch_end(what, epoch + 1, model)
    if ema is not None:
        ema.copy_to(model)
    if cfg.channels_last:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return model


class Average:
    """Exponential moving average of a model's floating-point state (parameters and BatchNorm statistics); integer
    buffers (batch counters) follow the model. It starts at the first update, or at the model's current state with
    `from_now` (SFD's generator EMA, registered at the start as its code does)."""

    def __init__(self, model: nn.Module, decay: float, from_now: bool = False):
        self.decay, self.state, self.started = decay, {}, False
        if from_now:
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.started = True

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if not self.started or not v.is_floating_point():
                self.state[k] = v.detach().clone()
            else:
                self.state[k].mul_(self.decay).add_(v.detach(), alpha=1 - self.decay)
        self.started = True

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        if self.started:
            model.load_state_dict(self.state)


def _smoothed_loss(task, eps: float) -> LossFn:
    """The task's cross-entropy with label smoothing `eps` (classifier tasks)."""
    import torch.nn.functional as F

    def loss(model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = task.to_device(batch)
        return F.cross_entropy(model(x), y, label_smoothing=eps)

    return loss
