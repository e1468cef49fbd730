"""CLI for deletion requests and the ledger: `delete`, `ledger init|list|show|verify|verify-cert`, `serve`.

Exit codes: 0 ok, 1 a verification failed, 2 bad usage or data. `--json` writes machine output to stdout.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import typer

from ..errors import UnlearnLabError

DEFAULT_DEPLOYMENT = os.environ.get("UNLEARNLAB_DEPLOYMENT", ".unlearnlab/deployment")
DeploymentOpt = typer.Option(DEFAULT_DEPLOYMENT, "--deployment", "-d",
                             help="deployment directory (env UNLEARNLAB_DEPLOYMENT)")
JsonOpt = typer.Option(False, "--json", help="machine-readable JSON on stdout")
CertFileArg = typer.Argument(..., help="certificate JSON file")
PublicKeyOpt = typer.Option(None, "--public-key", help="PEM public key (default: DEPLOYMENT/keys/signing.pub)")


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _emit(obj: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj, indent=2, sort_keys=True, default=str) if as_json else text)


def parse_records(spec: str | None) -> list[str]:
    """Record ids from `a,b,c` or `@file` (ids separated by commas, spaces or newlines)."""
    if not spec:
        return []
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            spec = path.read_text()
        except OSError as exc:
            raise typer.BadParameter(f"cannot read record file {path}: {exc}") from exc
    return [r for r in spec.replace(",", " ").split() if r]


def _service(deployment: str):
    """The deployment's service after recovery (as PostgreSQL replays its WAL before answering): a batch a crash
    interrupted is finished or re-run and a certificate file a crash left unwritten is written, so no command reports
    a state or a certificate path that is not on disk."""
    from ..ledger.service import DeletionService

    svc = DeletionService(deployment)
    svc.recover()
    return svc


def delete(subject: str = typer.Option(..., "--subject", "-s", help="data subject id (stored only as a keyed hash)"),
           records: str | None = typer.Option(None, "--records", "-r",
                                                 help="record ids: a,b,c or @file; omit for all the subject's"),
           deployment: str = DeploymentOpt,
           request_id: str | None = typer.Option(None, "--request-id",
                                                    help="request id (default: derived from subject + records)"),
           queue_only: bool = typer.Option(False, "--queue-only", help="only queue; a running server applies it"),
           as_json: bool = JsonOpt) -> None:
    """Erase a data subject's records from the deployed model and print the signed certificate's path."""
    try:
        svc = _service(deployment)
        recs = parse_records(records)
        rid = request_id or "req-" + hashlib.sha256(
            (svc.dep.hasher(subject) + "|" + ",".join(sorted(set(recs)))).encode()).hexdigest()[:16]
        svc.submit(rid, subject, recs)
        if not queue_only:
            svc.process_pending()
        st = svc.status(rid)
    except UnlearnLabError as exc:
        _fail(exc)
    cert = str(svc.dep.certificate_path(rid)) if st["status"] == "completed" else None
    out = {k: v for k, v in st.items() if k != "certificate"} | {"certificate_path": cert}
    _emit(out, as_json, f"{rid}: {st['status']} ({len(st['records'])} record(s), deadline {st['deadline']})"
          + (f"\ncertificate: {cert}" if cert else ""))
    if st["status"] == "failed":
        raise typer.Exit(1)


ledger_app = typer.Typer(help="Inspect and verify the deletion ledger.", no_args_is_help=True)


@ledger_app.command("init", epilog="Example: unlearnlab ledger init --deployment .unlearnlab/deployment")
def init(deployment: str = DeploymentOpt,
         scheme: str = typer.Option("analytic_head", help="deletion scheme fitted on digits"),
         database: str | None = typer.Option(None, help="ledger database URL (default: DIR/ledger.db)"),
         window: float = typer.Option(0.5, help="batching window of the server, seconds"),
         as_json: bool = JsonOpt) -> None:
    """Create a demo deployment: `scheme` fitted on digits with record ids digits-0000, digits-0001, ..."""
    from ..ledger.deployment import create_digits_deployment

    try:
        dep = create_digits_deployment(deployment, scheme=scheme, database=database, window_s=window)
    except UnlearnLabError as exc:
        _fail(exc)
    info = {"deployment": str(dep.root), "scheme": dep.scheme_name, "records": len(dep.record_ids),
            "public_key": str(dep.public_key_path)}
    _emit(info, as_json, f"created {dep.root}: {dep.scheme_name} on {len(dep.record_ids)} records")


@ledger_app.command("list", epilog="Example: unlearnlab ledger list --overdue --json")
def list_requests(deployment: str = DeploymentOpt,
                  overdue: bool = typer.Option(False, "--overdue", help="only requests past their deadline"),
                  status: str | None = typer.Option(None, help="queued, processing, completed or failed"),
                  limit: int = typer.Option(1000, help="at most this many"), as_json: bool = JsonOpt) -> None:
    """List deletion requests, oldest first."""
    try:
        rows = _service(deployment).requests(overdue=overdue, status=status, limit=limit)
    except UnlearnLabError as exc:
        _fail(exc)
    lines = [f"{r['request_id']:<28} {r['status']:<10} {len(r['records']):>5} rec  deadline {r['deadline'][:19]}"
             + ("  OVERDUE" if r["overdue"] else "") for r in rows]
    _emit(rows, as_json, "\n".join(lines) if lines else "no requests")


@ledger_app.command("show", epilog="Example: unlearnlab ledger show req-2024-0001 --json")
def show(request_id: str = typer.Argument(..., help="request id"), deployment: str = DeploymentOpt,
         as_json: bool = JsonOpt) -> None:
    """Show a request's status and its ledger entries."""
    try:
        svc = _service(deployment)
        st = svc.status(request_id)
        entries = [e.to_dict() for e in svc.dep.ledger.entries(request_id=st["request_id"])]
    except UnlearnLabError as exc:
        _fail(exc)
    out = {**{k: v for k, v in st.items() if k != "certificate"}, "entries": entries}
    text = "\n".join([f"{st['request_id']}: {st['status']}  received {st['received_at']}  deadline {st['deadline']}",
                      f"records: {', '.join(st['records'])}", f"artefacts: {', '.join(st['artefacts'])}"]
                     + [f"  #{e['seq']} {e['status']:<10} {e['hash'][:16]}" for e in entries])
    _emit(out, as_json, text)


@ledger_app.command("verify", epilog="Example: unlearnlab ledger verify --deployment .unlearnlab/deployment "
                                      "--public-key ~/audit/signing.pub")
def verify(deployment: str = DeploymentOpt, as_json: bool = JsonOpt,
           public_key: Path | None = typer.Option(None, "--public-key", help="the signing key's PEM kept OUTSIDE the "
                                                  "deployment (pinned); default: keys/signing.pub beside the data, "
                                                  "which whoever can write the deployment can swap"),
           head_file: Path | None = typer.Option(None, "--head", help="a signed chain head saved earlier with "
                                                 "`ledger head --out`: the chain must still extend it")) -> None:
    """Verify the hash chain, every certificate's signature and the queue against them; exit 1 naming the first
    edited, reordered or removed entry, or the request whose certificate is missing, forged or unanchored."""
    try:
        head_doc = None
        if head_file is not None:
            try:
                head_doc = json.loads(head_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise UnlearnLabError(f"Cannot read the chain head {head_file}: {e}") from None
        report = _service(deployment).verify(public_key, head=head_doc)
    except UnlearnLabError as exc:
        _fail(exc)
    trust = (f"key pinned from {public_key}" if public_key else
             f"trusting the key beside the data ({Path(deployment) / 'keys' / 'signing.pub'}); pin one kept "
             "elsewhere with --public-key")
    text = (f"ok: {report.entries} entries, head {report.head[:16]}; {trust}" if report.ok
            else f"FAILED{f' at entry {report.bad_seq}' if report.bad_seq is not None else ''}: {report.reason}; "
                 f"{trust}")
    _emit({**report.to_dict(), "key": str(public_key) if public_key else "deployment", "pinned": bool(public_key)},
          as_json, text)
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("head", epilog="Example: unlearnlab ledger head --out ~/audit/head-2026-11-30.json")
def head(deployment: str = DeploymentOpt,
         out: Path | None = typer.Option(None, "--out", help="also write the signed head here (keep it OUTSIDE the "
                                         "deployment)"), as_json: bool = JsonOpt) -> None:
    """Sign the current chain head (entries, last hash, time); later `ledger verify --head FILE` proves the chain
    still extends it, so a truncated or rewritten tail is detected."""
    from ..ledger.certificates import write_certificate

    try:
        doc = _service(deployment).sign_head()
        if out is not None:
            write_certificate(doc, out)
    except (UnlearnLabError, OSError) as exc:
        _fail(exc)
    h = doc["certificate"]
    _emit(doc, as_json, f"head: entry {h['seq']}, hash {h['hash'][:16]}, signed {h['time']}"
          + (f"; written to {out}" if out else ""))


@ledger_app.command("verify-cert", epilog="Example: unlearnlab ledger verify-cert cert.json --public-key signing.pub")
def verify_cert(file: Path = CertFileArg, public_key: Path | None = PublicKeyOpt,
                deployment: str = DeploymentOpt, as_json: bool = JsonOpt) -> None:
    """Verify a certificate offline (default key: the deployment's keys/signing.pub); exit 1 if altered."""
    from ..ledger.certificates import verify_certificate

    key = public_key or Path(deployment) / "keys" / "signing.pub"
    trust = (f"key pinned from {public_key}" if public_key else f"trusting the key beside the data ({key}); pin one "
             "kept elsewhere with --public-key")
    try:
        check = verify_certificate(file, key)
    except UnlearnLabError as exc:
        _fail(exc)
    _emit({**check.to_dict(), "key": str(key), "pinned": bool(public_key)}, as_json,
          (f"ok: certificate of request {check.request_id} is authentic" if check.ok else f"FAILED: {check.reason}")
          + f"; {trust}")
    if not check.ok:
        raise typer.Exit(1)


def serve(deletions: bool = typer.Option(False, "--deletions", help="serve the deletion API"),
          deployment: str = DeploymentOpt, host: str = typer.Option("127.0.0.1", help="bind address"),
          port: int = typer.Option(8000, help="TCP port"),
          window: float | None = typer.Option(None, help="batching window, seconds (default: deployment's)"),
          max_body: int = typer.Option(1_000_000, min=1, help="largest request body in bytes (larger: 413)")
          ) -> None:
    """Serve the HTTP API (uvicorn) until interrupted."""
    if not deletions:
        typer.echo("error: nothing to serve; pass --deletions to serve the deletion API.", err=True)
        raise typer.Exit(2)
    from ..ledger.apikeys import load_keys
    from ..ledger.deployment import Deployment
    from ..web.deletions import LOOPBACK
    from ..web.deletions import serve as run_server

    try:
        Deployment(deployment)
        if host not in LOOPBACK and not load_keys(deployment):
            raise UnlearnLabError(f"Refusing to serve on {host} without API keys: anyone who reaches the port could "
                                  "submit and read deletions. Create keys first (unlearnlab ledger keys create "
                                  "--scope submit|read|admin) or bind 127.0.0.1.")
    except UnlearnLabError as exc:
        _fail(exc)
    auth = "API keys required" if load_keys(deployment) else "open (no API keys configured; loopback only)"
    typer.echo(f"serving deletions for {deployment} on http://{host}:{port} ({auth})", err=True)
    run_server(deployment, host=host, port=port, window_s=window, log_level="warning", max_body=max_body)


keys_app = typer.Typer(help="API keys of the HTTP API (shown once, stored hashed).", no_args_is_help=True)


@keys_app.command("create", epilog="Example: unlearnlab ledger keys create --scope submit --name crm")
def keys_create(scope: str = typer.Option(..., help="read, submit or admin"),
                name: str = typer.Option("", help="a label for the key"), deployment: str = DeploymentOpt,
                as_json: bool = JsonOpt) -> None:
    """Create an API key; it is printed once and only its SHA-256 is stored."""
    from ..ledger.apikeys import create_key
    from ..ledger.deployment import Deployment

    try:
        Deployment(deployment)
        key, entry = create_key(deployment, scope, name)
    except UnlearnLabError as exc:
        _fail(exc)
    info = {k: entry[k] for k in ("id", "name", "scope", "created")} | {"key": key}
    _emit(info, as_json, f"{key}\n(id {entry['id']}, scope {scope}: shown once, store it now)")


@keys_app.command("list", epilog="Example: unlearnlab ledger keys list")
def keys_list(deployment: str = DeploymentOpt, as_json: bool = JsonOpt) -> None:
    """List API keys (ids, names, scopes; never the keys)."""
    from ..ledger.apikeys import load_keys

    try:
        rows = [{k: e.get(k) for k in ("id", "name", "scope", "created")} for e in load_keys(deployment)]
    except UnlearnLabError as exc:
        _fail(exc)
    _emit(rows, as_json, "\n".join(f"{r['id']}  {r['scope']:<7} {r['created']}  {r['name']}" for r in rows)
          or "no API keys (the API serves loopback only)")


@keys_app.command("revoke", epilog="Example: unlearnlab ledger keys revoke 3fa2c1d9e0b1")
def keys_revoke(key_id: str = typer.Argument(..., help="the key's id (ledger keys list)"),
                deployment: str = DeploymentOpt) -> None:
    """Revoke an API key (takes effect on the next request)."""
    from ..ledger.apikeys import revoke_key

    try:
        if not revoke_key(deployment, key_id):
            raise UnlearnLabError(f"No API key with id {key_id!r}; see `unlearnlab ledger keys list`.")
    except UnlearnLabError as exc:
        _fail(exc)
    typer.echo(f"revoked {key_id}")


ledger_app.add_typer(keys_app, name="keys")


def register(app: typer.Typer) -> None:
    """Add `delete`, the `ledger` sub-app and `serve` to the main CLI app."""
    app.command("delete", epilog="Example: unlearnlab delete --subject alice --records digits-0001,digits-0002 "
                                 "--deployment .unlearnlab/deployment")(delete)
    app.add_typer(ledger_app, name="ledger")
    app.command("serve", epilog="Example: unlearnlab serve --deletions --deployment .unlearnlab/deployment "
                                "--port 8000")(serve)

