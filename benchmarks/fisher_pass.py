"""Fisher forgetting's two ways to the retain Fisher, timed side by side on several model shapes.

    .venv/bin/python benchmarks/fisher_pass.py --out docs/fisher_pass.md

`true_fisher(how='jacobian')` (a per-example vmap(jacrev) of the K log-probabilities, chunks of one example on a CPU)
against `how='layerwise'` (K whole-batch backward passes, per-example gradients of each layer from its input and
output gradient: methods/_per_example.py), interleaved rounds on random inputs, one thread: median examples per
second and the largest relative difference between the two Fishers. Decides what Fisher forgetting uses
(`how='auto'`: the layerwise pass only for models without convolutions).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from report_doc import stamp

from unlearnlab.data.core import ArrayDataset
from unlearnlab.methods.fisher_forgetting import true_fisher
from unlearnlab.models import ClassifierTask, build_model

MODELS = (("mlp", (1, 8, 8)), ("cnn", (1, 8, 8)), ("cnn", (3, 32, 32)), ("fastcnn:width=64", (3, 32, 32)))


def measure(arch: str, shape: tuple[int, ...], n: int, rounds: int, classes: int = 10) -> str:
    gen = torch.Generator().manual_seed(0)
    model = build_model(arch, shape, classes).eval()
    ds = ArrayDataset(torch.randn(n, *shape, generator=gen), torch.randint(0, classes, (n,), generator=gen))
    rates: dict[str, list[float]] = {"jacobian": [], "layerwise": []}
    out = {}
    for _ in range(rounds):
        for how in rates:
            t0 = time.perf_counter()
            out[how] = true_fisher(model, ds, ClassifierTask(classes), how=how)
            rates[how].append(n / (time.perf_counter() - t0))
    a, b = out["jacobian"], out["layerwise"]
    diff = max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-30)) for k in a)
    jac, lay = (float(np.median(rates[h])) for h in ("jacobian", "layerwise"))
    params = sum(p.numel() for p in model.parameters())
    return (f"| {arch} | {'x'.join(map(str, shape))} | {params:,} | {jac:.1f} | {lay:.1f} | {lay / jac:.2f} | "
            f"{diff:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="docs/fisher_pass.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    st = stamp()
    rows = []
    for arch, shape in MODELS:
        rows.append(measure(arch, shape, args.examples, args.rounds))
        print(rows[-1], file=sys.stderr, flush=True)
    lines = ["# Fisher forgetting: per-example Jacobian vs layerwise retain Fisher", "",
             f"Produced by `{st['command']}` on {platform.processor() or platform.machine()}, {st['date']}; "
             f"{args.examples} random examples, {args.rounds} interleaved rounds, 1 thread, float32.", "",
             "| model | input | parameters | jacobian examples/s | layerwise examples/s | ratio | max rel. diff |",
             "|---|---|---|---|---|---|---|", *rows, "",
             "A Linear layer's squared per-example gradient is (δ²)ᵀ(a²), never materialised, so models without "
             "convolutions gain; a convolution's per-example gradient has to be materialised (its weights are shared "
             "over positions), which costs as much as the Jacobian's or more once there are many positions. "
             "Fisher forgetting (`true_fisher(how='auto')`) takes the layerwise pass only for models without "
             "convolutions."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
