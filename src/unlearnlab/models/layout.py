"""channels_last memory format for conv nets on the CPU, applied by methods and evaluation around their work.

oneDNN's convolutions, batch norms and pools are faster in channels_last (NHWC) than in the default NCHW on CPU
(docs/performance.md has the measurements). A convolution runs in channels_last as soon as its weight is, so
converting the model's 4-D tensors is enough; inputs follow. The values are the same up to float rounding (the
kernels sum in another order); `UNLEARNLAB_CHANNELS_LAST=0` turns it off."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn


def enabled() -> bool:
    """Whether methods and evaluation may switch conv nets to channels_last (env UNLEARNLAB_CHANNELS_LAST, on)."""
    return os.environ.get("UNLEARNLAB_CHANNELS_LAST", "1") not in ("0", "false", "no", "off")


def wants_channels_last(model: nn.Module) -> bool:
    """True for a model with a 2-D convolution whose parameters live on the CPU, when enabled()."""
    if not enabled():
        return False
    p = next(model.parameters(), None)
    return p is not None and p.device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


@contextlib.contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with `model`'s 4-D parameters and buffers in channels_last (CPU conv nets only), then put
    them back in the default format; the Parameter objects stay the same, so optimisers that hold them still
    work. A no-op for other models."""
    if not wants_channels_last(model):
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
