"""Command-line interface: a thin layer over unlearnlab.api (tables or --json to stdout, progress to stderr).

Exit codes: 0 ok, 1 a requested check failed, 2 usage/config/data errors.
"""
from __future__ import annotations

import math
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a loaded 2-core machine a spinning pool made the digits MLP's
# training 78 s instead of 6.5 s with 2 threads (1.0 s with 1). Set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..errors import UnlearnLabError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="unlearnlab: make a trained model forget data and measure how well it forgot.\n\n"
                       "Example: unlearnlab run --dataset digits --forget random:10% --methods all --seeds 3")
runs_app = typer.Typer(no_args_is_help=True, help="Inspect and export stored runs.\n\nExample: unlearnlab runs list")
app.add_typer(runs_app, name="runs")
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def fail(e: Exception, code: int = 2) -> None:
    """Print a one-line error to stderr and exit with `code`."""
    err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unlearnlab {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")) -> None:
    """unlearnlab command line."""


class Lazy:
    """A module imported on first attribute access, so that `unlearnlab --help` and commands that never train do
    not pay for importing torch (the API modules import it at module level)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        import importlib

        return getattr(importlib.import_module(self._name), attr)


def is_main() -> bool:
    """True on rank 0 of a multi-process launch and in a single process (unlearnlab.distributed, imported lazily)."""
    if not any(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return True
    from ..distributed import is_main as main_rank

    return main_rank()


def _store(results: Path | None, *, existing: bool = False):
    """The results store; `existing`: for commands that only read runs, refuse (StoreError) a directory holding no
    store instead of creating an empty one there."""
    from ..errors import StoreError
    from ..store import DB_NAME, Store, default_root

    if existing:
        root = Path(results) if results is not None else default_root()
        if not (root / DB_NAME).is_file():
            raise StoreError(f"No runs: looked in {root.resolve()} and found no results store there (no {DB_NAME}). "
                             "Pass --results DIR (or set UNLEARNLAB_HOME) to the directory your runs went to.")
    return Store(results)


def fmt(summary: dict[str, float] | float | None, digits: int = 2) -> str:
    """'mean ± std' (std only with n > 1)."""
    if summary is None:
        return "-"
    if isinstance(summary, (int, float)):
        return f"{summary:.{digits}f}"
    m, s, n = summary.get("mean", math.nan), summary.get("std", math.nan), summary.get("n", 1)
    return f"{m:.{digits}f}" + (f" ± {s:.{digits}f}" if n > 1 and not math.isnan(s) else "")


def print_table(rows: list[dict[str, Any]], columns: tuple[str, ...], title: str = "") -> None:
    """Render comparison rows as a rich table on stdout."""
    t = Table(title=title or None)
    t.add_column("method")
    for c in columns:
        t.add_column(c, justify="right")
    for r in rows:
        def digits(c):
            return 3 if c == "RTE/retrain" else 2
        t.add_row(escape(str(r["method"])), *[fmt(r.get(c), digits(c)) for c in columns])
    out.print(t)


from . import audit as _audit  # noqa: E402,F401
from . import commands  # noqa: E402,F401  (registers run/methods/runs commands)
from . import report as _report  # noqa: E402,F401
from . import sweep as _sweep  # noqa: E402,F401
from . import tune as _tune  # noqa: E402,F401

try:  # deletion-service commands (ledger extra)
    from .ledger import register as _register_ledger

    _register_ledger(app)
except ImportError:
    pass
from . import serve as _serve  # noqa: E402,F401  (after the ledger: its `serve` becomes `serve --deletions`)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except UnlearnLabError as e:
        err.print(f"error: {e}", highlight=False, markup=False)
        sys.exit(2)
