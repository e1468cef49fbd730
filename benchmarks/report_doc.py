"""Shared by the benchmark scripts: the run log (command, cores, date, phase times) and the engine report's
leaderboards appended to a benchmark's markdown doc."""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path


def slug(forget: str) -> str:
    """A scenario as a file name (class:3 -> class-3)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", forget).strip("-")


def run_log(path: Path, empty: dict, report_only: bool) -> dict:
    """The benchmark's log at `path` (else `empty`), stamped with this command, the cores and the date, except on
    --report-only where the producing run's stamp is kept (the doc names the command that computed its numbers)."""
    log = json.loads(path.read_text()) if path.is_file() else dict(empty)
    if not report_only or "command" not in log:
        log.update(stamp())
    return log


def stamp() -> dict:
    """This invocation: its command, the cores it may use and the date."""
    return {"command": "python " + " ".join(sys.argv), "cores": len(os.sched_getaffinity(0)),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def leaderboard_lines(rep: dict, rep_dir: Path, heading: str) -> list[str]:
    """The report's markdown (its figure links made relative to the doc beside `rep_dir`) under `heading`."""
    md = rep["markdown"].read_text(encoding="utf-8").replace("](figures/", f"]({rep_dir.name}/figures/")
    return [heading, "", f"Also as HTML: `{rep_dir.name}/report.html`.", "", md.split("\n", 1)[1] if "\n" in md else md]


def _tune_one(spec: dict, method: str, budget: int, results: str, threads: int, warm_start: bool,
              stratify: bool = False) -> dict:
    """One method's study in a worker process (serial backend, `threads` torch threads)."""
    import torch

    from unlearnlab.engine.events import LineRenderer
    from unlearnlab.engine.tune import tune
    from unlearnlab.store import Store

    torch.set_num_threads(threads)
    return tune(spec, [method], budget=budget, store=Store(results), final=False, warm_start=warm_start,
                stratify=stratify, run_kwargs={"backend": "serial", "events": LineRenderer(sys.stderr, every_s=60)})


def longest_first(methods: list[str], dataset: str | None, results: str | Path) -> list[str]:
    """`methods` by their median stored run time on `dataset`, slowest first (untimed ones last, in order): the
    studies start longest first, so the slowest study (Fisher forgetting's) does not start late and end alone."""
    from unlearnlab.store import Store

    med = Store(results).method_seconds(dataset)
    return sorted(methods, key=lambda m: -med.get(m, 0.0))


def tune_side_by_side(spec: dict, methods: list[str], *, budget: int, results: str | Path, workers: int | None,
                      warm_start: bool = False, stratify: bool = False) -> dict:
    """engine/tune.py's selection for every method, one method's study per worker process, so tuning keeps every
    core busy (a trial is one serial job). Each study is seeded per method, so the trials are those of one
    tune() call over all methods. Train the validation original and oracle first (one job graph), or each worker
    trains its own. Returns tune()'s summary: objective, utility_floor, validation_forget, methods."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    cores = len(os.sched_getaffinity(0))
    workers = max(1, min(workers or cores, len(methods)))
    threads = max(1, cores // workers)
    from unlearnlab.engine.backends import exit_with_parent, stop_pool

    # a killed benchmark takes its tuning workers with it (else they go on computing with the code of before an edit)
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=exit_with_parent,
                               initargs=(os.getpid(),))
    try:
        futs = {m: pool.submit(_tune_one, spec, m, budget, str(results), threads, warm_start, stratify)
                for m in longest_first(methods, spec.get("dataset"), results)}
        done = {m: futs[m].result() for m in methods}
    except BaseException:  # interrupted: end the studies now (leaving a `with` block would wait for all of them)
        stop_pool(pool)
        raise
    pool.shutdown()
    first = next(iter(done.values()))
    keep = ("objective", "utility_floor", "validation_forget", "budget", "warm_start", "direction")
    return {**{k: first.get(k) for k in keep}, "methods": {m: d["methods"][m] for m, d in done.items()}}
