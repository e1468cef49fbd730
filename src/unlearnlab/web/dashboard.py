"""The visual comparator: a FastAPI app over a results store (JSON API under /api, static pages, the plotly.min.js of
the installed plotly package; no CDN, works offline) and `serve()`, which runs it with uvicorn on loopback unless
told otherwise. With a deletion service, the deletion API is mounted under /ledger-api and the Deletions view can
verify certificates on the server with the same API keys."""
from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..errors import ConfigError
from .cache import AnalysisCache
from .dashboard_api import make_router

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
NO_CACHE = {"Cache-Control": "no-store"}


def plotly_js() -> Path | None:
    """The plotly.min.js bundled inside the installed plotly Python package, or None."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    return p if p.is_file() else None


def safe_path(base: Path, rel: str) -> Path:
    """The file `rel` inside `base` (symlinks resolved); HTTP 404 for anything outside it or not a file."""
    base = base.resolve()
    if not rel or "\x00" in rel or rel.startswith(("/", "\\")) or ":" in rel:
        raise HTTPException(404, f"No file {rel!r} in the results directory.")
    p = (base / rel).resolve()
    if not p.is_relative_to(base) or not p.is_file():
        raise HTTPException(404, f"No file {rel!r} in the results directory's reports.")
    return p


def _compute(store):
    def compute(record: dict) -> dict[str, Any]:
        from .analysis import analyse
        from .models import rebuild

        return analyse(rebuild(record, store), record)
    return compute


def _add_files(app: FastAPI, store) -> None:
    reports = store.root / "reports"

    @app.get("/api/reports")
    def list_reports() -> dict[str, Any]:
        """Report pages written under the results directory (reports/NAME/report.html)."""
        found = sorted(p.relative_to(reports).as_posix() for p in reports.glob("*/report.html")) \
            if reports.is_dir() else []
        return {"reports": [{"name": f.split("/")[0], "url": f"/files/{f}"} for f in found]}

    @app.get("/files/{rel:path}", include_in_schema=False)
    def report_file(rel: str) -> FileResponse:
        """A file of a report under RESULTS/reports (never outside it)."""
        return FileResponse(safe_path(reports, rel))


def _add_deletions(app: FastAPI, service) -> None:
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from ..ledger.apikeys import authorise, load_keys
    from ..ledger.certificates import verify_document
    from ..ledger.errors import NotCompletedError, UnknownRequestError
    from .deletions import create_app as deletions_app

    app.mount("/ledger-api", deletions_app(service, start_worker=False))
    bearer = HTTPBearer(auto_error=False)

    @app.get("/api/deletions/{request_id}/verify")
    def verify_certificate(request_id: str,
                           creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict[str, Any]:
        """Verify a completed request's certificate on the server (signature against the deployment's public key);
        needs an API key with the deletion API's 'status' scope when the deployment has keys."""
        keys = load_keys(service.dep.root)
        if keys:
            code, why = authorise(keys, creds.credentials if creds else None, "status")
            if code:
                raise HTTPException(code, why)
        try:
            cert = service.certificate(request_id)
        except UnknownRequestError as e:
            raise HTTPException(404, str(e)) from None
        except NotCompletedError as e:
            raise HTTPException(409, str(e)) from None
        return verify_document(cert, service.dep.public_key_path).to_dict()


def create_app(store, *, deletions=None, start_worker: bool = True) -> FastAPI:
    """The dashboard app on `store` (a Store); `deletions` (a DeletionService) adds the ledger view and API."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if deletions is not None and start_worker:
            deletions.start()
        try:
            yield
        finally:
            if deletions is not None and start_worker:
                deletions.stop()

    app = FastAPI(title="unlearnlab dashboard", version=__version__, lifespan=lifespan,
                  description="JSON API of the visual comparator; every page reads these endpoints.")
    app.state.store, app.state.analyses, app.state.compute = store, AnalysisCache(store), _compute(store)
    app.include_router(make_router())
    _add_files(app, store)
    if deletions is not None:
        _add_deletions(app, deletions)

    @app.get("/api/info")
    def info(request: Request) -> dict[str, Any]:
        """What this server shows: the results directory, run count, optional parts available."""
        return {"version": __version__, "results": str(store.root), "runs": store.count_runs(),
                "deletions": deletions is not None, "umap": importlib.util.find_spec("umap") is not None,
                "plotly": plotly_js() is not None, "analyses_computed": request.app.state.analyses.computed}

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly() -> FileResponse:
        """The plotly bundle of the installed plotly package (served locally)."""
        p = plotly_js()
        if p is None:
            raise HTTPException(404, "plotly is not installed: pip install 'unlearnlab[web]'.")
        return FileResponse(p, media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        """The single page of the dashboard."""
        return FileResponse(STATIC / "index.html", headers=NO_CACHE)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def check_host(host: str, allow_remote: bool) -> str | None:
    """None for a loopback host; a warning for another host when `allow_remote`, else a ConfigError."""
    if host in LOOPBACK:
        return None
    if not allow_remote:
        raise ConfigError(f"Refusing to bind {host}: the dashboard shows every stored run to anyone who reaches the "
                          "port. Bind 127.0.0.1 (the default), or pass --allow-remote to expose it deliberately.")
    return (f"warning: serving on {host}, reachable from other machines; anyone who reaches port can read every run "
            "in the results directory.")


def serve(results: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int = 8765,
          allow_remote: bool = False, deployment: str | os.PathLike | None = None, log_level: str = "warning",
          echo=print) -> None:
    """Run the dashboard with uvicorn until interrupted; prints the URL (and a warning for a non-loopback host)."""
    import uvicorn

    from ..store import Store

    warning = check_host(host, allow_remote)
    service = None
    if deployment is not None:
        from ..ledger.apikeys import load_keys
        from ..ledger.service import DeletionService

        if host not in LOOPBACK and not load_keys(deployment):
            raise ConfigError(f"Refusing to serve the deletion API on {host} without API keys; create keys first "
                              "(unlearnlab ledger keys create --scope ... --deployment DIR) or bind 127.0.0.1.")
        service = DeletionService(deployment)
    app = create_app(Store(results), deletions=service)
    if warning:
        echo(warning)
    shown = f"[{host}]" if ":" in host else host
    echo(f"unlearnlab dashboard on http://{shown}:{port}/  (results: {app.state.store.root}; Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


__all__ = ["LOOPBACK", "check_host", "create_app", "plotly_js", "safe_path", "serve"]
