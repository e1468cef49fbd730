"""The serve command: the visual comparator (web dashboard) over a results directory."""
from __future__ import annotations

from pathlib import Path

import typer

from . import _store, app, fail
from .commands import RESULTS_HELP


@app.command("serve")
def serve_cmd(results: Path = typer.Option(None, "--results", help=RESULTS_HELP),
              port: int = typer.Option(8765, "--port", min=1, max=65535, help="TCP port"),
              host: str = typer.Option("127.0.0.1", "--host", help="address to bind (loopback by default)"),
              allow_remote: bool = typer.Option(False, "--allow-remote",
                                                help="allow a non-loopback --host (prints a warning)"),
              deployment: Path = typer.Option(None, "--deployment",
                                              help="also serve this deletion deployment's API and ledger view")
              ) -> None:
    """Start the web dashboard that compares stored runs (needs the `web` extra); prints its URL.

    Example: unlearnlab serve --results results --port 8765
    """
    try:
        from ..web.dashboard import serve
    except ImportError as e:
        fail(RuntimeError(f"the dashboard needs the web extra ({e.name} is missing): pip install 'unlearnlab[web]'"))
    from ..errors import UnlearnLabError

    try:
        root = _store(results, existing=True).root
        serve(root, host=host, port=port, allow_remote=allow_remote, deployment=deployment, echo=typer.echo)
    except UnlearnLabError as e:
        fail(e)
