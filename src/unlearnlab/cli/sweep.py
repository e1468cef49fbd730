"""`unlearnlab sweep SPEC.yaml` (a grid of runs as one job graph) and `unlearnlab sweep status [NAME]`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ..errors import UnlearnLabError
from . import _store, app, err, fail, out, print_table
from .commands import BACKEND_HELP, RESULTS_HELP


@app.command("sweep")
def sweep_cmd(
    target: str = typer.Argument(..., help="a sweep YAML file (see examples/), or 'status'"),
    name: str | None = typer.Argument(None, help="with 'status': only this sweep's jobs"),
    backend: str | None = typer.Option(None, help=BACKEND_HELP + " (default: the spec's, else local)"),
    workers: int | None = typer.Option(None, min=1, help="parallel jobs (default: the machine's cores)"),
    address: str | None = typer.Option(None, help="Ray cluster address to join (--backend ray)"),
    cpus_per_job: float = typer.Option(1.0, min=0.0, help="Ray: CPUs each job requests"),
    gpus_per_job: float = typer.Option(0.0, min=0.0, help="Ray: GPUs each job requests (0.5 packs two per GPU; "
                                       "default 1 for --device cuda runs, else 0)"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    fresh: bool = typer.Option(False, "--fresh", help="recompute runs already in the store"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output on stdout"),
) -> None:
    """Run a sweep (datasets x forget sets x methods x settings x seeds) as one job graph, or show its status.

    Killed sweeps restart where they stopped; a failing job is recorded and does not stop the others; two processes
    on the same results directory never compute the same job.

    Example: unlearnlab sweep examples/digits_sweep.yaml --backend local && unlearnlab sweep status digits-sweep
    """
    if target == "status":
        _status(name, results, as_json)
        return
    from .. import api
    from ..engine.events import renderer

    try:
        store = _store(results)
        with renderer() as sink:
            res = api.sweep(target, store=store, backend=backend, workers=workers, address=address,
                            resume=not fresh, events=sink, cpus_per_job=cpus_per_job,
                            gpus_per_job=gpus_per_job)
    except UnlearnLabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "errors"} | {"errors": [
            {k: e[k] for k in ("job", "error")} for e in res["errors"]]}, indent=1, default=str))
    else:
        for title, rows in res["tables"].items():
            print_table(rows, api.TABLE_METRICS, title=title)
        if res.get("report"):
            out.print(f"report: {res['report']}", highlight=False)
    for e in res["errors"]:
        if not e["skipped"]:
            err.print(f"error: {e['job']}: {e['error']}", highlight=False, markup=False)
    if res["errors"]:
        raise typer.Exit(1)


def _status(name: str | None, results: Path | None, as_json: bool) -> None:
    from ..engine import coord

    try:
        store = _store(results, existing=True)
        rows = coord.jobs(store, name)
    except UnlearnLabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(rows, indent=1, default=str))
        return
    if not rows:
        err.print(f"no jobs{' of sweep ' + repr(name) if name else ''} in {store.root}", highlight=False)
        raise typer.Exit(2 if name else 0)
    by: dict[str, dict[str, int]] = {}
    for r in rows:
        counts = by.setdefault(r["sweep"] or "(unnamed runs)", {})
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    for sweep, counts in by.items():
        out.print(f"{sweep}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), highlight=False)
    now = time.time()
    for r in rows:
        if r["status"] in ("running", "stale"):
            out.print(f"  {r['status']:<7} {r['label']}  ({r['owner']}, {now - (r['started'] or now):.0f}s)",
                      highlight=False)
        elif r["status"] == "failed":
            out.print(f"  failed  {r['label']}: {r['error']}", highlight=False, markup=False)
