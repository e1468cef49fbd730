"""A killed run takes its local-backend workers with it: each pool worker watches its parent and exits when it is
gone (before, `kill` of a benchmark left its workers computing and storing trials with the code of before an
edit, which a rerun then reused)."""
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
