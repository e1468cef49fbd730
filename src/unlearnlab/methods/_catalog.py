"""Method metadata (name, kinds, description, config fields) without importing torch or any method module.

`unlearnlab methods` lists ~30 methods; importing them costs ~3 s (torch and every method file). The listing is served
from `_catalog.json`, generated from the real registry by `python -m unlearnlab.methods._catalog`; a test fails when
it differs from the registry (like docs/methods.md, regenerate both when a method's metadata changes). The file
records the method modules it was built from: when a module was added or removed since, the catalog is rebuilt from
the registry in memory, so a method dropped in as one file is listed at once, only slower.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INDEX = HERE / "_catalog.json"
SCHEMA = 1


def modules() -> list[str]:
    """Names of the modules the method registry imports (those of this package not starting with '_')."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.name.startswith("_"))


def entry(m: Any) -> dict[str, Any]:
    """One method's metadata as plain JSON data; `default` as `--json` prints it, `repr` as the text listing does."""
    from ..config import describe

    fields = []
    for f in describe(m.config):
        rec = {"name": f["name"], "default": json.loads(json.dumps(f["default"], default=str)),
               "repr": repr(f["default"]), "help": f["help"]}
        if "search" in f:
            rec["search"] = json.loads(json.dumps(f["search"], default=str))
        fields.append(rec)
    return {"name": m.name, "description": m.description, "paper": m.paper, "kinds": list(m.kinds),
            "doc": " ".join((m.config.__doc__ or "").split()), "fields": fields}


def from_registry() -> list[dict[str, Any]]:
    """The metadata of every registered method, sorted by name (imports torch and every method module)."""
    from .base import METHODS

    return sorted((entry(m) for _, m in METHODS.items()), key=lambda e: e["name"])


def load_index() -> dict[str, Any] | None:
    """The stored index, or None when it is missing, unreadable, of another schema or built from other modules."""
    try:
        index = json.loads(INDEX.read_text())
        current = index.get("schema") == SCHEMA and index.get("modules") == modules()
    except (OSError, ValueError, AttributeError):
        return None
    return index if current else None


def catalog(kind: str = "") -> list[dict[str, Any]]:
    """Metadata of the methods for model `kind` (all if empty), sorted by name: from the index when it is current and
    the registry is not loaded yet, else from the registry (which then also lists methods registered at run time)."""
    base = sys.modules.get(f"{__package__}.base")
    index = None if base is not None and base.METHODS.loaded else load_index()
    items = index["methods"] if index is not None else from_registry()
    return [e for e in items if not kind or kind in e["kinds"]]


def write_index(path: Path = INDEX) -> None:
    """Regenerate the index from the registry."""
    payload = {"schema": SCHEMA, "generated_by": "python -m unlearnlab.methods._catalog",
               "modules": modules(), "methods": from_registry()}
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write_index()
    print(f"wrote {INDEX}")
