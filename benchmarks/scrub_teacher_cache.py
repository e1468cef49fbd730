"""SCRUB with and without the teacher-logit cache (issue 13): wall time, medians of interleaved runs, and the weights.

    .venv/bin/python benchmarks/scrub_teacher_cache.py --dataset digits --forget class:3 --repeats 5
    .venv/bin/python benchmarks/scrub_teacher_cache.py --dataset digits --model cnn --repeats 5

Trains the dataset's original once (its default recipe), then alternates SCRUB (default config, seed 0) with
teacher_cache off and on, so load on a shared machine hits both alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from unlearnlab.api import as_spec, unlearn
from unlearnlab.data import load_dataset, make_split
from unlearnlab.models import ClassifierTask, build_model, data_init
from unlearnlab.train import train


def main() -> None:
    """Print the median wall time of SCRUB with teacher_cache False / True and the largest weight difference."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="")
    ap.add_argument("--forget", default="class:3")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    spec = as_spec({"dataset": a.dataset, "model": a.model, "forget": a.forget})
    bundle = load_dataset(spec.dataset, seed=0)
    task = ClassifierTask(bundle.num_classes)
    arch = spec.model_spec()
    net = data_init(build_model(arch, tuple(bundle.train.x.shape[1:]), bundle.num_classes, seed=0), bundle.train)
    net = train(net, bundle.train, spec.train_config(), task, seed=0)
    data = make_split(bundle.train, bundle.test, a.forget, 0, num_classes=bundle.num_classes, name=bundle.name)
    times: dict[bool, list[float]] = {False: [], True: []}
    weights = {}
    for _ in range(a.repeats):
        for cache in (False, True):
            t0 = time.perf_counter()
            weights[cache] = unlearn(net, data, "scrub", task=task, seed=0, teacher_cache=cache).state_dict()
            times[cache].append(time.perf_counter() - t0)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    diff = max((weights[True][k].float() - weights[False][k].float()).abs().max().item() for k in weights[True])
    print(f"{a.dataset} {arch} forget {a.forget}: |D_f| {len(data.forget)}, |D_r| {len(data.retain)}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    print(f"SCRUB teacher_cache=False {off:.3f} s, True {on:.3f} s (median of {a.repeats} interleaved), "
          f"speed-up {off / on:.2f}x; max |weight difference| {diff:.2e}")


if __name__ == "__main__":
    main()
