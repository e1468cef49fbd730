"""The shared run-record format: environment, timings, optimiser-step counts and peak memory."""
from __future__ import annotations

import platform
import resource
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def environment(device: Any) -> dict[str, Any]:
    """Versions, device, threads and git SHA recorded with every run."""
    import numpy
    import sklearn
    import torch

    from .. import __version__

    return {"unlearnlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "sklearn": sklearn.__version__, "device": str(device),
            "threads": torch.get_num_threads(), "platform": platform.platform(), "git_sha": _git_sha()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """(fn(), {"wall_s", "cpu_s"})."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}


@contextmanager
def count_steps() -> Iterator[list[int]]:
    """Count every torch optimiser step taken inside the block (any optimiser, any method): box[0]."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    box = [0]

    def hook(opt: Any, args: Any, kwargs: Any) -> None:
        box[0] += 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def make_record(spec: dict, metrics: dict, timings: dict, device: Any, **extra: Any) -> dict[str, Any]:
    """A run record: {"spec", "metrics", "timings", "memory", "env", **extra}."""
    memory = {"peak_rss_mb": peak_rss_mb()}
    try:
        import torch

        if getattr(device, "type", "") == "cuda":
            memory["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    return {"spec": spec, "metrics": metrics, "timings": timings, "memory": memory, "env": environment(device),
            **extra}


__all__ = ["count_steps", "environment", "make_record", "peak_rss_mb", "timed"]
