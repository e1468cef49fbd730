"""The report command: leaderboards, noise floor and figures of stored runs as report.md + report.html."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import typer

from ..errors import UnlearnLabError
from . import Lazy, _store, app, err, fail
from .commands import RESULTS_HELP

api = Lazy("unlearnlab.api")


@app.command("report")
def report_cmd(
    runs: list[str] | None = typer.Argument(None, help="run ids (or unique prefixes) or experiment names; "
                                            "default: every stored run"),
    out_dir: Path = typer.Option(Path("report"), "--out", help="directory for report.md, report.html, figures/"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    title: str = typer.Option("", help="report title (default: 'Unlearning report')"),
    as_json: bool = typer.Option(False, "--json", help="print the paths and leaderboards as JSON on stdout"),
) -> None:
    """Write report.md and a self-contained report.html (leaderboards, noise floor, flags, figures) of stored runs.

    Per scenario: one row per method with 95% seed intervals, a paired interval of the difference to the best, the
    two-oracle noise floor and flags (ties best, within noise floor, CHANGED NOTHING, DID NOT FORGET); figures as
    PNG and SVG.
    Prints the paths of report.md and report.html.

    Example: unlearnlab report --out report --title "digits, 3 seeds"
    """
    argv = ["unlearnlab", "report", *(runs or []), "--out", str(out_dir)]
    argv += [*(["--results", str(results)] if results else []), *(["--title", title] if title else [])]
    try:
        result = api.report(runs or None, store=_store(results, existing=True), out=out_dir, title=title,
                            command=shlex.join(argv))
    except UnlearnLabError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(result, indent=1, default=str))
        return
    n_fig = len(result["figures"]) // 2
    err.print(f"{len(result['scenarios'])} scenario(s), {n_fig} figure(s) (PNG + SVG) in {out_dir / 'figures'}",
              highlight=False, markup=False)
    typer.echo(str(result["markdown"]))
    typer.echo(str(result["html"]))
