"""Why some classifier methods fail on the cifar10-dev regime: measurements behind three of their options.

    .venv/bin/python benchmarks/classifier_diagnostics.py --original /tmp/orig-cifar --amp \
        --out docs/benchmark_cifar10/diagnostics.md

On one original (trained with the dataset's default recipe if `--original` does not exist yet) and one forget set:

1. BatchNorm drift: train-mode forward passes over forget-set batches alone, with no gradient step, as GA, Boundary
   Shrink and Boundary Expand run them in the reference codes; forget and test accuracy after each count of
   batches. A large change means a forget-only method "forgets" through the running statistics whatever its
   gradient does (their `bn_stats: frozen` option keeps the original's statistics).
2. SSD / LFSSD selection: the importances once, then SSD's dampening at every α of SSD's search grid (λ = 1): the
   fraction of parameters selected, forget and test accuracy. Shows where on α's scale this model's selection is
   sparse (the authors set α per model).
3. SCRUB's max-steps: forget accuracy after SCRUB at its forget batch size 512 (large-scale notebook) and 64
   (small-scale notebook): how many max-steps an epoch takes on this forget set.
4. Fisher forgetting's cost: its retain-set Fisher as a per-example Jacobian at several vmap chunk sizes and as
   the layerwise pass (true_fisher's how), in examples per second (median of interleaved rounds), with the largest
   difference between the Fishers (the values must agree); 5. the same for influence unlearning's per-example
   gradients by chunk size. Both methods' chunk_size 0 picks the CPU's best from these.

Accuracies are on the whole forget set and test set (the test set includes the forgotten class, as the
benchmark's TA does). The output markdown says the command, the machine and the date.
"""
from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unlearnlab import api
from unlearnlab.data import load_dataset, make_split
from unlearnlab.data.core import batches
from unlearnlab.methods.ga import GAConfig
from unlearnlab.methods.lfssd import output_sq_norm
from unlearnlab.methods.ssd import SSDConfig, batch_importance, dampen
from unlearnlab.models import ClassifierTask, build_model
from unlearnlab.models.checkpoint import load_checkpoint, read_meta
from unlearnlab.seeding import torch_generator

SSD_GRID = SSDConfig.__dataclass_fields__["selection_weighting"].metadata["search"][1:]


@torch.no_grad()
def accuracy(model, ds, task) -> float:
    model.eval()
    right = total = 0
    for x, y in batches(ds, 512):
        right += int((task.forward(model, x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * right / total


def bn_drift(model, data, task, steps: list[int], batch_size: int, seed: int) -> list[str]:
    rows = ["| train-mode batches over D_f (no gradient step) | forget acc | test acc |", "|---|---|---|"]
    for n in steps:
        m = copy.deepcopy(model).train()
        gen, k = torch_generator(seed, "bn-drift"), 0
        with torch.no_grad():
            while k < n:
                for x, _ in batches(data.forget, batch_size, shuffle=True, gen=gen):
                    if k == n:
                        break
                    task.forward(m, x)
                    k += 1
        rows.append(f"| {n} | {accuracy(m, data.forget, task):.1f} | {accuracy(m, data.test, task):.1f} |")
    return rows


def selection(model, data, task, seed: int) -> list[str]:
    rows = ["| method | α | selected fraction | forget acc | test acc |", "|---|---|---|---|---|"]
    total = sum(p.numel() for p in model.parameters())
    for name, loss, power in (("ssd", task.loss, 2), ("lfssd", lambda m, b: output_sq_norm(task, m, b), 1)):
        imp = {split: batch_importance(model, getattr(data, split), loss, batch_size=128, power=power,
                                       gen=torch_generator(seed, name, "order", split))
               for split in ("forget", "train")}
        for alpha in SSD_GRID:
            m = copy.deepcopy(model)
            chosen = dampen(m, imp["train"], imp["forget"], selection_weighting=alpha, dampening_constant=1.0)
            rows.append(f"| {name} | {alpha:g} | {sum(chosen.values()) / total:.4f} | "
                        f"{accuracy(m, data.forget, task):.1f} | {accuracy(m, data.test, task):.1f} |")
    return rows


def scrub_batches(model, data, task, seed: int, lr: float) -> list[str]:
    rows = ["| SCRUB forget_batch_size | max-steps per epoch | forget acc | test acc | seconds |",
            "|---|---|---|---|---|"]
    for fbs in (512, 64):
        t0 = time.perf_counter()
        out = api.unlearn(model, data, "scrub", task=task, seed=seed, lr=lr, msteps=3, forget_batch_size=fbs)
        rows.append(f"| {fbs} | {-(-len(data.forget) // fbs)} | {accuracy(out, data.forget, task):.1f} | "
                    f"{accuracy(out, data.test, task):.1f} | {time.perf_counter() - t0:.0f} |")
    return rows


def fisher_chunks(model, data, task, n: int, chunks: tuple[int, ...] = (32, 8, 1), repeats: int = 3) -> list[str]:
    """Fisher forgetting's retain-set Fisher on `n` retain examples: the per-example Jacobian at several chunk
    sizes and the layerwise pass (true_fisher's how), `repeats` interleaved rounds: median examples per second, and the
    largest difference to the first way's Fisher (relative to its largest value)."""
    from unlearnlab.data.core import subset
    from unlearnlab.methods.fisher_forgetting import true_fisher

    ds = subset(data.retain, np.arange(min(n, len(data.retain))))
    ways = [(f"jacobian, chunk {c}", {"chunk_size": c, "how": "jacobian"}) for c in chunks]
    ways.append(("layerwise (K whole-batch backward passes)", {"how": "layerwise"}))
    rates: dict[str, list[float]] = {w: [] for w, _ in ways}
    diffs, ref = {}, None
    for _ in range(repeats):
        for name, kw in ways:
            t0 = time.perf_counter()
            f = true_fisher(model, ds, task, **kw)
            rates[name].append(len(ds) / (time.perf_counter() - t0))
            ref = ref or f
            diffs[name] = max(float((f[k] - ref[k]).abs().max() / ref[k].abs().max().clamp_min(1e-30)) for k in f)
    rows = ["| how | examples / s (median) | max relative difference |", "|---|---|---|"]
    return rows + [f"| {name} | {np.median(rates[name]):.1f} | {diffs[name]:.1e} |" for name, _ in ways]


def gradient_chunks(model, data, task, n: int, chunks: tuple[int, ...] = (128, 32, 8, 1)) -> list[str]:
    """Influence unlearning's per-example loss gradients on `n` retain examples at several vmap chunk sizes."""
    from unlearnlab.methods.influence import per_example_grads

    x, y = next(batches(data.retain, n))
    rows = ["| chunk (examples per vmap) | examples / s | max relative difference |", "|---|---|---|"]
    ref = None
    for c in chunks:
        t0 = time.perf_counter()
        g = per_example_grads(model.eval(), x, y, task, chunk_size=c)
        rate = len(x) / (time.perf_counter() - t0)
        ref = g if ref is None else ref
        rows.append(f"| {c} | {rate:.1f} | {float((g - ref).abs().max() / ref.abs().max()):.1e} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10-dev")
    ap.add_argument("--original", required=True, help="checkpoint of the original (trained there if absent)")
    ap.add_argument("--forget", default="class:1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (as the benchmark's --amp)")
    ap.add_argument("--scrub-lr", type=float, default=2.7e-3, help="SCRUB's lr (default: class:1's tuned value)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fisher-examples", type=int, default=192, help="retain examples of the Fisher speed part")
    ap.add_argument("--out", default="docs/benchmark_cifar10/diagnostics.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not Path(args.original).with_suffix(".json").is_file():
        print(f"training the original at {args.original}", file=sys.stderr)
        api.train_original(dataset=args.dataset, seed=args.seed, out=args.original, amp=args.amp)
    meta = read_meta(args.original)
    bundle = load_dataset(args.dataset, seed=args.seed)
    data = make_split(bundle.train, bundle.test, args.forget, seed=args.seed, num_classes=bundle.num_classes)
    task = ClassifierTask(bundle.num_classes, amp=args.amp)
    fp32 = ClassifierTask(bundle.num_classes)  # Fisher forgetting and influence run in float32 (methods.base.AUTOCAST)
    model = load_checkpoint(args.original, build_model(meta["arch"], data.input_shape, bundle.num_classes))
    bs, epochs = GAConfig().batch_size, GAConfig().epochs
    per_epoch = -(-len(data.forget) // bs)
    t0 = time.perf_counter()
    lines = [f"# Method diagnostics on {args.dataset} ({meta['arch']}), forget {args.forget}", "",
             f"Produced by `python benchmarks/classifier_diagnostics.py {' '.join(sys.argv[1:])}` on "
             f"{platform.processor() or platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
             f"Original: seed {meta.get('seed')}, test accuracy {meta.get('test_acc', float('nan')):.2f}%; "
             f"forget set {len(data.forget)} examples.", "",
             f"## 1. BatchNorm statistics drift (GA: batch {bs}, {per_epoch} batches per epoch, {epochs} epochs = "
             f"{epochs * per_epoch} batches)", "",
             *bn_drift(model, data, task, [0, per_epoch, 20, epochs * per_epoch], bs, args.seed), "",
             "## 2. SSD / LFSSD selection over SSD's α grid (λ = 1; LFSSD's grid is its first four values)", "",
             *selection(model, data, task, args.seed), "",
             f"## 3. SCRUB max-steps (lr {args.scrub_lr:g}, msteps 3, the other fields at their defaults)", "",
             *scrub_batches(model, data, task, args.seed, args.scrub_lr), "",
             f"## 4. Fisher forgetting's retain Fisher, per-example Jacobian or layerwise ({args.fisher_examples} "
             "retain examples, "
             f"{args.threads} thread(s), float32 as the method runs)", "",
             *fisher_chunks(model, data, fp32, args.fisher_examples), "",
             f"## 5. Influence unlearning's per-example gradients by chunk size ({args.fisher_examples} retain "
             "examples, float32 as the method runs)", "",
             *gradient_chunks(model, data, fp32, args.fisher_examples), "",
             f"Total: {(time.perf_counter() - t0) / 60:.1f} min."]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
