"""Sample-grid figures of a report: the PNG each generative-model record stores as an artifact (`samples_png`),
copied next to the report's other figures (one per method setting, its first seed)."""
from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def sample_grids(sc: dict[str, Any], fig_dir: Path, slug: str,
                 artifact_path: Callable[[str], Path] | None) -> list[dict[str, Any]]:
    """Figure entries ({"kind", "caption", "png", "svg"}) of the sample grids of a scenario's settings; none when
    the records hold no grid or the store that holds them is not given."""
    if artifact_path is None:
        return []
    out = []
    for label, entry in sc["settings"].items():
        runs = entry["runs"]
        seed = next((s for s in sorted(runs, key=str) if (runs[s].get("artifacts") or {}).get("samples_png")), None)
        if seed is None:
            continue
        try:
            src = artifact_path(runs[seed]["artifacts"]["samples_png"])
        except Exception:  # an artifact missing from this store: the report stands without that grid
            continue
        png = fig_dir / f"{slug}-samples-{re.sub(r'[^A-Za-z0-9]+', '-', label).strip('-')[:40]}.png"
        shutil.copyfile(src, png)
        layout = (runs[seed].get("details") or {}).get("grid_layout", "one row per class, in class order")
        out.append({"kind": "samples", "caption": f"samples of {label} (seed {seed}): {layout}", "png": png,
                    "svg": png})
    return out


__all__ = ["sample_grids"]
