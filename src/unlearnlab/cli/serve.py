"""The serve command: the visual comparator (web dashboard) over a results directory, the deletion API, or both.

    unlearnlab serve                          dashboard of ./results on http://127.0.0.1:8765/
    unlearnlab serve --deletions              the deletion API alone (as before; port 8000)
    unlearnlab serve --dashboard --deletions  the dashboard with the deletion API under /ledger-api and its ledger view
"""
from __future__ import annotations

import os
from pathlib import Path

import typer

from . import _store, app, fail
from .commands import RESULTS_HELP

DEPLOYMENT = os.environ.get("UNLEARNLAB_DEPLOYMENT", ".unlearnlab/deployment")


app.registered_commands[:] = [c for c in app.registered_commands if c.name != "serve"]  # the ledger's: see above


@app.command("serve")
def serve_cmd(results: Path = typer.Option(None, "--results", help=RESULTS_HELP),
              port: int = typer.Option(None, "--port", min=1, max=65535,
                                       help="TCP port (default 8765; 8000 for the deletion API alone)"),
              host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback by default)"),
              allow_remote: bool = typer.Option(False, "--allow-remote",
                                                help="let the dashboard bind a non-loopback --host (prints a warning)"),
              deletions: bool = typer.Option(False, "--deletions",
                                             help="serve the deletion API (alone, unless --dashboard is given)"),
              dashboard: bool = typer.Option(False, "--dashboard",
                                             help="with --deletions: serve the dashboard too, with its ledger view"),
              deployment: str = typer.Option(DEPLOYMENT, "--deployment", "-d",
                                             help="deletion deployment directory (env UNLEARNLAB_DEPLOYMENT)"),
              window: float | None = typer.Option(None, help="deletion batching window, seconds"),
              max_body: int = typer.Option(1_000_000, min=1, help="largest deletion request body in bytes")
              ) -> None:
    """Start the web dashboard that compares stored runs (extra `web`) and prints its URL; or the deletion API.

    Example: unlearnlab serve --results results --port 8765
    """
    if deletions and not dashboard:
        from .ledger import serve as serve_deletions

        serve_deletions(deletions=True, deployment=deployment, host=host, port=port or 8000, window=window,
                        max_body=max_body)
        return
    try:
        from ..web.dashboard import serve
    except ImportError as e:
        fail(RuntimeError(f"the dashboard needs the web extra ({e.name} is missing): pip install 'unlearnlab[web]'"))
    from ..errors import UnlearnLabError

    try:
        root = _store(results, existing=True).root
        serve(root, host=host, port=port or 8765, allow_remote=allow_remote,
              deployment=deployment if deletions else None, echo=typer.echo)
    except UnlearnLabError as e:
        fail(e)
