"""Engine backends on one sweep: wall time of serial vs the local process pool vs a local Ray cluster, and whether
they give identical records.

    python benchmarks/engine_backends.py [--dataset digits] [--seeds 3] [--out docs/engine_backends.md]

The sweep is every classifier method x `--seeds` seeds x two forget scenarios (random:10%, class:3), each backend
computing the whole graph in a fresh results directory (nothing reused). Records are compared metric by metric
(timings excluded) between local and Ray, which both run 1 torch thread per worker; serial runs with the machine's
threads, so its floats may differ in the last bits. Ray's overhead per job = (Ray wall - local wall) / jobs.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from unlearnlab.engine.backends import cores
from unlearnlab.engine.events import LineRenderer
from unlearnlab.engine.runner import execute
from unlearnlab.engine.sweep import expand_sweep
from unlearnlab.store import Store


def _one(backend: str, specs: list, root: Path) -> tuple[float, dict, dict]:
    t0 = time.perf_counter()
    res = execute(specs, store=Store(root / backend), backend=backend, workers=cores() if backend != "serial" else None,
                  sink=LineRenderer(sys.stderr, every_s=60))
    wall = time.perf_counter() - t0
    recs = {r["spec_key"]: r for recs in res["records"] for r in recs}
    return wall, recs, res


def _same(a: dict, b: dict) -> tuple[int, float]:
    """(records whose non-timing metrics differ, max abs difference)."""
    bad, worst = 0, 0.0
    for k, r in a.items():
        ma = {m: v for m, v in r["metrics"].items() if not m.startswith("RTE")}
        mb = {m: v for m, v in b[k]["metrics"].items() if not m.startswith("RTE")}
        diffs = [abs(ma[m] - mb[m]) for m in ma if m in mb and ma[m] == ma[m]]
        if ma != mb:
            bad += 1
        worst = max([worst, *diffs])
    return bad, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--model", default="", help="model spec (default: the dataset's)")
    ap.add_argument("--epochs", type=int, default=0, help="original/oracle epochs (default: the dataset's recipe)")
    ap.add_argument("--backends", default="serial,local,ray")
    ap.add_argument("--out", default="docs/engine_backends.md")
    args = ap.parse_args()
    sweep = {"name": "bench", "dataset": args.dataset, "forget": ["random:10%", "class:3"], "methods": ["all"],
             "seeds": args.seeds, "model": args.model, **({"recipe": {"epochs": args.epochs}} if args.epochs else {})}
    specs = expand_sweep(sweep)
    extra = (f" --model {args.model}" if args.model else "") + (f" --epochs {args.epochs}" if args.epochs else "")
    walls, recs, jobs = {}, {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.backends.split(","):
            walls[b], recs[b], res = _one(b, specs, Path(tmp))
            jobs = res["jobs"]["computed"]
            print(f"{b}: {walls[b]:.1f}s, {len(recs[b])} records, {len(res['errors'])} errors", file=sys.stderr)
    lines = ["# Engine backends: one classifier sweep on each backend", "",
             f"Command: `python benchmarks/engine_backends.py --dataset {args.dataset} --seeds {args.seeds}{extra}"
             f" --out {args.out}`", "",
             f"Machine: {cores()} cores, {platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}. Sweep: every classifier method x {args.seeds} seeds x 2 forget scenarios "
             f"(random:10%, class:3) on {args.dataset} ({specs[0].model_spec()}, "
             f"{specs[0].train_config().epochs} epochs): {jobs} jobs (models, runs, noise floors), computed from "
             "scratch by each backend in turn (one run each, so absolute times carry this machine's noise).", "",
             "| backend | wall (s) | speed-up vs serial | records |", "|---|---|---|---|"]
    for b, w in walls.items():
        ratio = walls.get("serial", float("nan")) / w
        lines.append(f"| {b} | {w:.1f} | {ratio:.2f}x | {len(recs[b])} |")
    if "local" in recs and "ray" in recs:
        bad, worst = _same(recs["local"], recs["ray"])
        lines += ["", f"Local vs Ray records: {bad} of {len(recs['local'])} differ in a non-timing metric "
                      f"(max abs difference {worst:.3g}). Ray overhead per job: "
                      f"{(walls['ray'] - walls['local']) / max(jobs, 1):+.2f} s (includes starting the local cluster)."]
    if "serial" in recs and "local" in recs:
        bad, worst = _same(recs["serial"], recs["local"])
        lines += ["", f"Serial vs local records: {bad} of {len(recs['serial'])} differ in a non-timing metric "
                      f"(max abs difference {worst:.3g}; serial uses {cores()} torch threads, pool workers 1)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
