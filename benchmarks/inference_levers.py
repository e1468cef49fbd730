"""Inference levers for classifier evaluation (issue 13): eager float32 vs bf16 autocast vs a frozen TorchScript
module (`torch.jit.freeze` + `optimize_for_inference`), medians of interleaved runs, with the largest logit
difference and the argmax agreement against eager float32.

    .venv/bin/python benchmarks/inference_levers.py --model fastcnn --images 1000 --repeats 5

Random weights and random 3 x 32 x 32 images (speed and numerical agreement do not depend on training); batches
of `--batch`, `--threads` torch threads, torch.inference_mode. Prints the CPU's vector flags, since bf16 speed
depends on them (AVX512-BF16 / AMX).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from unlearnlab.models import build_model


def cpu_flags() -> str:
    """The CPU's AVX-512 / bf16 / AMX flags (Linux), or 'unknown'."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    keep = [x for x in flags if x.startswith(("avx512", "amx")) or "bf16" in x or x == "avx2"]
    return " ".join(keep) or "none of avx2 / avx512 / bf16 / amx"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fastcnn")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.model, (3, 32, 32), 10, seed=0).eval()
    x = torch.randn(args.images, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x[:args.batch])))

    def run(f: Callable, bf16: bool = False) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return torch.cat([f(x[i:i + args.batch]).float() for i in range(0, len(x), args.batch)])

    variants = {"eager fp32": lambda: run(model), "bf16 autocast": lambda: run(model, True),
                "frozen TorchScript": lambda: run(frozen)}
    ref = variants["eager fp32"]()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print(f"model {args.model}, {args.images} images, batch {args.batch}, {args.threads} thread(s), "
          f"{args.repeats} interleaved repeats; CPU flags: {cpu_flags()}")
    print("| variant | median s | eager / variant | max |logit diff| | argmax agreement |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["eager fp32"])
    for name, fn in variants.items():
        out, med = fn(), statistics.median(times[name])
        print(f"| {name} | {med:.3f} | {base / med:.2f}x | {(out - ref).abs().max().item():.2e} | "
              f"{(out.argmax(1) == ref.argmax(1)).float().mean().item():.4f} |")


if __name__ == "__main__":
    main()
