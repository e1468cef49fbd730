"""A killed run takes its local-backend workers with it: each pool worker watches its parent and exits when it is
gone (before, `kill` of a benchmark left its workers computing and storing trials with the code of before an
edit, which a rerun then reused). An interrupted run ends its running jobs instead of waiting for them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import multiprocessing as mp, os, time
from unlearnlab.engine.backends import _init_worker

def child(parent):
    _init_worker(1, None, parent)
    time.sleep(60)

if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\\tZ" not in next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_pool_worker_exits_when_its_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(1.5)
        assert _alive(child), "the worker should run while its parent does"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while _alive(child) and time.time() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the worker outlived its killed parent"
    finally:
        parent.kill()


INTERRUPTED = """
import os, sys, time
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from unlearnlab.engine.backends import stop_pool

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    try:
        futs = [pool.submit(time.sleep, 60) for _ in range(3)]
        while not pool._processes:
            time.sleep(0.05)
        print(*pool._processes, flush=True)
        futs[0].result()
    except KeyboardInterrupt:
        stop_pool(pool)
        print("stopped", flush=True)
        sys.exit(3)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_an_interrupted_pool_ends_its_running_jobs(tmp_path):
    """`timeout -s INT` signals the parent alone; leaving a `with ProcessPoolExecutor` block would then wait 60 s
    for the running job and start the queued ones (the benchmark's tuning studies ran on for minutes)."""
    script = tmp_path / "parent.py"
    script.write_text(INTERRUPTED)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        time.sleep(1.0)
        t0 = time.time()
        os.kill(parent.pid, signal.SIGINT)
        assert parent.wait(timeout=20) == 3 and time.time() - t0 < 15
        assert parent.stdout.read().strip() == "stopped"
        assert workers and not any(_alive(w) for w in workers), "a pool worker outlived the interrupted run"
    finally:
        parent.kill()


def test_the_engine_aborts_its_backend_when_interrupted(monkeypatch):
    """execute() closes the backend with abort=True when the run did not finish (Ctrl-C, an exception), so the
    local pool terminates its workers instead of waiting for their jobs; a finished run closes normally."""
    from unlearnlab.engine import runner
    from unlearnlab.spec import from_dict

    closed = []

    class Interrupted:
        name, workers, slots = "fake", 1, 1

        def submit(self, job, store_root):
            pass

        def wait(self, timeout):
            raise KeyboardInterrupt

        def close(self, abort=False):
            closed.append(abort)

    monkeypatch.setattr(runner, "make_backend", lambda *a, **k: Interrupted())
    spec = from_dict({"dataset": "blobs", "model": "mlp", "recipe": {"epochs": 1}, "methods": ["ft"], "seeds": 1})
    with pytest.raises(KeyboardInterrupt):
        runner.execute([spec], backend="serial")
    assert closed == [True]
