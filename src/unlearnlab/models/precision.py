"""bfloat16 autocast for a run whose recipe sets `amp` (training, the methods in AUTOCAST, evaluation).

bf16 pays only where the hardware computes in it: CUDA GPUs with bf16 support, and CPUs with bf16 units (Intel AMX
or AVX512-BF16). Measured (docs/performance.md, "bf16 autocast on a CPU with AMX"): the cifar10-dev original (the
FastCNN at width 64) trains 2.25x faster on a 2-core Xeon with AMX, and our methods and evaluation run at 2.4-3.2x
the official code's speed there; on a CPU with only AVX2 the same autocast was ~8x slower (oneDNN emulates bf16).
So `amp` is honoured on CUDA and on bf16 CPUs and ignored elsewhere (each run record says which precision ran:
`precision`).

Autocast computes convolutions and matrix products in bf16 and keeps reductions, losses and batch norms in float32;
parameters, gradients and optimiser state stay float32 (no loss scaling is needed with bf16). Outputs stored for
metrics are cast back to float32.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True on a CPU with bf16 units (Linux /proc/cpuinfo flags amx_bf16 or avx512_bf16)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(x in flags for x in BF16_CPU_FLAGS)


def bf16_available(device: torch.device | str) -> bool:
    """Whether bf16 autocast is fast on `device`: a CUDA GPU that supports bf16, or a CPU with bf16 units."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def effective(amp: bool, device: torch.device | str) -> str:
    """The precision a run with `amp` computes in on `device`: 'bf16' or 'fp32'."""
    return "bf16" if amp and bf16_available(device) else "fp32"


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool) -> Iterator[None]:
    """bf16 autocast on `device` when `enabled` and bf16 is fast there; otherwise the block runs unchanged (it never
    turns off an autocast that an enclosing block started)."""
    if enabled and bf16_available(device):
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        yield
