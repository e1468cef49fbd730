"""Shared by the benchmark scripts: the run log (command, cores, date, phase times) and the engine report's
leaderboards appended to a benchmark's markdown doc."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def run_log(path: Path, empty: dict, report_only: bool) -> dict:
    """The benchmark's log at `path` (else `empty`), stamped with this command, the cores and the date, except on
    --report-only where the producing run's stamp is kept (the doc names the command that computed its numbers)."""
    log = json.loads(path.read_text()) if path.is_file() else dict(empty)
    if not report_only or "command" not in log:
        log.update({"command": "python " + " ".join(sys.argv), "cores": len(os.sched_getaffinity(0)),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    return log


def leaderboard_lines(rep: dict, rep_dir: Path, heading: str) -> list[str]:
    """The report's markdown (its figure links made relative to the doc beside `rep_dir`) under `heading`."""
    md = rep["markdown"].read_text(encoding="utf-8").replace("](figures/", f"]({rep_dir.name}/figures/")
    return [heading, "", f"Also as HTML: `{rep_dir.name}/report.html`.", "", md.split("\n", 1)[1] if "\n" in md else md]
