"""Shared by the benchmark scripts: the engine report's leaderboards appended to a benchmark's markdown doc."""
from __future__ import annotations

from pathlib import Path


def leaderboard_lines(rep: dict, rep_dir: Path, heading: str) -> list[str]:
    """The report's markdown (its figure links made relative to the doc beside `rep_dir`) under `heading`."""
    md = rep["markdown"].read_text(encoding="utf-8").replace("](figures/", f"]({rep_dir.name}/figures/")
    return [heading, "", f"Also as HTML: `{rep_dir.name}/report.html`.", "", md.split("\n", 1)[1] if "\n" in md else md]
