"""Inference levers for classifier evaluation (issue 13): eager float32 vs bf16 autocast vs a frozen TorchScript
module (`torch.jit.freeze` + `optimize_for_inference`) vs `torch.compile` (with --compile), medians of interleaved
runs, with the largest logit difference and the argmax agreement against eager float32; with --train-steps N also
one training step (forward, backward, Nesterov SGD on a batch of --batch, channels_last as the recipe) eager vs
compiled, N interleaved repeats, and the one-off compile time of each.

    .venv/bin/python benchmarks/inference_levers.py --model fastcnn --images 1000 --repeats 5
    .venv/bin/python benchmarks/inference_levers.py --model fastcnn --compile --train-steps 8 --batch 256

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


def interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each function over `repeats` rounds, the functions interleaved within each round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fastcnn")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant (compiles once, timed)")
    ap.add_argument("--train-steps", type=int, default=0, help="also time N training steps, eager vs compiled")
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
    if args.compile:
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        run(compiled)
        print(f"torch.compile: first call (compilation) {time.perf_counter() - t0:.1f} s")
        variants["torch.compile"] = lambda: run(compiled)
    ref = variants["eager fp32"]()
    times = interleaved(variants, args.repeats)
    print(f"model {args.model}, {args.images} images, batch {args.batch}, {args.threads} thread(s), "
          f"{args.repeats} interleaved repeats; CPU flags: {cpu_flags()}")
    print("| variant | median s | eager / variant | max |logit diff| | argmax agreement |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["eager fp32"])
    for name, fn in variants.items():
        out, med = fn(), statistics.median(times[name])
        print(f"| {name} | {med:.3f} | {base / med:.2f}x | {(out - ref).abs().max().item():.2e} | "
              f"{(out.argmax(1) == ref.argmax(1)).float().mean().item():.4f} |")
    if args.train_steps:
        train_steps(args)


def train_steps(args) -> None:
    """Median time of one training step, eager vs torch.compile, interleaved; the compile time separately."""
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))

    def stepper(compiled: bool) -> Callable[[], None]:
        net = build_model(args.model, (3, 32, 32), 10, seed=0).train().to(memory_format=torch.channels_last)
        fwd = torch.compile(net) if compiled else net
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def step() -> None:
            loss = torch.nn.functional.cross_entropy(fwd(x), y, label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    steps = {"eager": stepper(False), "torch.compile": stepper(True)}
    for name, fn in steps.items():
        t0 = time.perf_counter()
        fn()
        fn()
        print(f"train step, {name}: first two steps {time.perf_counter() - t0:.1f} s (compilation included)")
    times = interleaved(steps, args.train_steps)
    e, c = (statistics.median(times[k]) for k in steps)
    print(f"train step median over {args.train_steps}: eager {e:.3f} s, torch.compile {c:.3f} s, eager / compiled "
          f"{e / c:.2f}x")


if __name__ == "__main__":
    main()
