"""Wall time of light CLI commands (issue 13: `--help` < 0.3 s, `methods` < 1 s), median of interleaved runs.

    .venv/bin/python benchmarks/cli_speed.py --repeats 5
    .venv/bin/python benchmarks/cli_speed.py --src before=/tmp/old/src --src after=src   # two source trees

Each repeat runs every (tree, command) once in turn, so load on a shared machine hits every variant alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (("--help",), ("methods",), ("methods", "--json"))


def wall(src: str, args: tuple[str, ...]) -> float:
    """Seconds for one `python -m unlearnlab.cli ARGS` with `src` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": src}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "unlearnlab.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    """Time every command of every source tree `--repeats` times, interleaved; print a markdown table of medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", action="append", default=[], help="LABEL=PATH of a source tree (default: this repo's)")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    trees = dict(s.split("=", 1) for s in a.src) or {"src": str(Path(__file__).resolve().parents[1] / "src")}
    times: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    for _ in range(a.repeats):
        for cmd in COMMANDS:
            for label, src in trees.items():
                times.setdefault((label, cmd), []).append(wall(src, cmd))
    print(f"| command | {' | '.join(trees)} |\n|---|{'---|' * len(trees)}")
    for cmd in COMMANDS:
        cells = [f"{statistics.median(times[label, cmd]):.2f} s" for label in trees]
        print(f"| unlearnlab {' '.join(cmd)} | {' | '.join(cells)} |")
    print(f"\nmedian of {a.repeats} interleaved runs; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
