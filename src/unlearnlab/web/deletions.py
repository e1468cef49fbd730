"""HTTP API of the deletion service (FastAPI, extra `web`).

    POST /deletions                     {"request_id", "subject", "records"} -> 202 + status URL
    GET  /deletions/{id}                status, deadline, overdue flag
    GET  /deletions/{id}/certificate    the signed certificate (409 until completed)
    GET  /deletions?overdue=true        requests past their deadline and not completed
    GET  /ledger/verify                 hash-chain verification report

Errors answer ``{"error": <type>, "detail": <what and how to fix>}``: 401 no or unknown API key, 403 a key
without the scope, 404 unknown request, 409 duplicate or not yet completed, 413 body over the limit (1 MB by
default), 422 bad input. The subject is hashed on arrival and never stored or echoed.

Authentication: once a deployment has API keys (`unlearnlab ledger keys create --scope read|submit|admin`), every
endpoint needs `Authorization: Bearer <key>` with a key whose scope allows it (ledger/apikeys.py). Without keys the
API is open, and `serve()` then refuses any address but loopback.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from ..errors import ConfigError, UnlearnLabError
from ..ledger.apikeys import authorise, load_keys
from ..ledger.errors import DuplicateRequestError, NotCompletedError, UnknownRequestError
from ..ledger.service import DeletionService

MAX_BODY = 1_000_000
MAX_RECORDS = 100_000
Status = Literal["queued", "processing", "completed", "failed"]


class DeletionRequestBody(BaseModel):
    """Body of POST /deletions."""

    request_id: str = Field(..., max_length=128, description="client-chosen id (1-128 of letters, digits, . _ : -); "
                            "resending the same request is idempotent")
    subject: str = Field(..., min_length=1, max_length=512,
                         description="data subject id (hashed with the deployment's key, never stored)")
    records: list[str] | None = Field(None, max_length=MAX_RECORDS,
                                      description="record ids to erase (each at most 256 characters); omit to erase "
                                                  "all of the subject's")


class ErrorBody(BaseModel):
    """Every error response."""

    error: str = Field(..., description="error type, e.g. UnknownRequestError")
    detail: str = Field(..., description="what went wrong and how to fix it")


class RequestStatus(BaseModel):
    """A deletion request's public status (the subject is never echoed)."""

    request_id: str
    status: Status
    records: list[str]
    received_at: str
    deadline: str
    overdue: bool | None = None
    status_url: str
    certificate_url: str | None

    model_config = {"extra": "allow"}


class RequestList(BaseModel):
    """GET /deletions."""

    count: int
    requests: list[RequestStatus]


ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in (
    (401, "no API key, or not one of this deployment's"), (403, "the key's scope does not allow this"),
    (404, "unknown request"), (409, "duplicate request id, or not completed yet"), (413, "request body too large"),
    (422, "invalid input"))}


def _status_code(exc: UnlearnLabError) -> int:
    if isinstance(exc, UnknownRequestError):
        return 404
    if isinstance(exc, (DuplicateRequestError, NotCompletedError)):
        return 409
    return 422


def _public(req: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in req.items() if k != "certificate"}
    out["status_url"] = f"/deletions/{req['request_id']}"
    out["certificate_url"] = f"/deletions/{req['request_id']}/certificate" if req["status"] == "completed" else None
    return out


def create_app(service: DeletionService, *, start_worker: bool = True, max_body: int = MAX_BODY) -> FastAPI:
    """The deletion API on `service`; its background batch worker runs while the app is up. Bodies over
    `max_body` bytes get 413; with API keys configured every endpoint checks the caller's key and scope."""
    bearer = HTTPBearer(auto_error=False, description="an API key from `unlearnlab ledger keys create`")

    def need(scope: str):
        def check(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
            keys = load_keys(service.dep.root)  # re-read: keys created or revoked while serving take effect
            if not keys:
                return
            code, why = authorise(keys, creds.credentials if creds else None, scope)
            if code:
                raise HTTPException(code, why, headers={"WWW-Authenticate": "Bearer"} if code == 401 else None)
        return Depends(check)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start_worker:
            service.start()
        try:
            yield
        finally:
            if start_worker:
                service.stop()

    app = FastAPI(title="unlearnlab deletions", version="1", lifespan=lifespan, responses=ERRORS)
    app.state.service = service

    @app.exception_handler(UnlearnLabError)
    async def _error(_req: Request, exc: UnlearnLabError) -> JSONResponse:
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=_status_code(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(_req: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "Unauthorized", 403: "Forbidden", 413: "PayloadTooLarge"}.get(exc.status_code, "HTTPError")
        return JSONResponse({"error": kind, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            return JSONResponse({"error": "PayloadTooLarge", "detail": f"the body is over {max_body} bytes; send "
                                 "fewer records per request"}, status_code=413)
        if request.method in ("POST", "PUT", "PATCH") and size is None:  # chunked: count what arrives
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > max_body:
                    return JSONResponse({"error": "PayloadTooLarge", "detail": f"the body is over {max_body} "
                                         "bytes"}, status_code=413)
            request._body = body
        return await call_next(request)

    @app.post("/deletions", status_code=202, response_model=RequestStatus, dependencies=[need("submit")])
    def post_deletion(body: DeletionRequestBody) -> JSONResponse:
        """Queue a deletion request (idempotent on request_id)."""
        if body.records and any(len(r) > 256 for r in body.records):
            raise HTTPException(422, "record ids are at most 256 characters")
        req = service.submit(body.request_id, body.subject, body.records)
        url = f"/deletions/{req['request_id']}"
        return JSONResponse(_public(req), status_code=202, headers={"Location": url})

    @app.get("/deletions", response_model=RequestList, dependencies=[need("read")])
    def list_deletions(overdue: bool = False, status: Status | None = None,
                       limit: int = Query(1000, ge=1, le=100_000)) -> dict[str, Any]:
        """Requests, oldest first; `overdue=true` keeps those past their deadline and not completed."""
        rows = service.requests(overdue=overdue, status=status, limit=limit)
        return {"count": len(rows), "requests": [_public(r) for r in rows]}

    @app.get("/deletions/{request_id}", response_model=RequestStatus, dependencies=[need("status")])
    def get_deletion(request_id: str) -> dict[str, Any]:
        """One request's status."""
        return _public(service.status(request_id))

    @app.get("/deletions/{request_id}/certificate", dependencies=[need("status")])
    def get_certificate(request_id: str) -> dict[str, Any]:
        """The signed certificate of a completed request."""
        return service.certificate(request_id)

    @app.get("/ledger/verify", dependencies=[need("read")])
    def verify_ledger() -> dict[str, Any]:
        """Verify the hash chain, the certificates' signatures and the queue against them."""
        return {**service.verify().to_dict(), "requests": service.queue.counts()}

    @app.get("/ledger/public-key", response_class=JSONResponse, dependencies=[need("read")])
    def public_key() -> dict[str, str]:
        """The PEM public key that verifies this deployment's certificates."""
        return {"pem": service.dep.public_key_path.read_text()}

    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(deployment: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8000,
          window_s: float | None = None, log_level: str = "warning", max_body: int = MAX_BODY) -> None:
    """Run the deletion API for `deployment` with uvicorn until interrupted (refused on a non-loopback address while
    the deployment has no API key)."""
    import uvicorn

    if host not in LOOPBACK and not load_keys(deployment):
        raise ConfigError(f"Refusing to serve on {host} without API keys: anyone who reaches the port could submit "
                          "and read deletions. Create keys first (unlearnlab ledger keys create --scope submit|read|"
                          "admin --deployment DIR) or bind 127.0.0.1.")
    service = DeletionService(deployment, window_s=window_s)
    uvicorn.run(create_app(service, max_body=max_body), host=host, port=port, log_level=log_level)
