"""API keys of a deployment's HTTP API: shown once at creation, stored only as SHA-256 hashes.

Scopes (what a key may do):
    read    list requests, read any request's status and certificate, verify the ledger, read the public key
    submit  submit deletion requests and poll their status and certificates (a data controller's client)
    admin   everything

Keys live in DIR/keys/api_keys.json (mode 0600). With no key configured the API only serves a loopback address.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from .errors import LedgerError

SCOPES = ("read", "submit", "admin")
GRANTS = {"read": {"read", "status"}, "submit": {"submit", "status"}, "admin": {"read", "submit", "status"}}
PREFIX = "ulk_"


def _path(root: str | Path) -> Path:
    return Path(root) / "keys" / "api_keys.json"


def _write(root: str | Path, keys: list[dict[str, Any]]) -> None:
    """Replace the key file atomically, mode 0600."""
    import os

    p = _path(root)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(keys, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys(root: str | Path) -> list[dict[str, Any]]:
    """The stored key entries (id, name, scope, sha256, created); [] when none were created."""
    p = _path(root)
    if not p.is_file():
        return []
    try:
        keys = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(keys, list):
            raise ValueError("not a list")
        return keys
    except (OSError, ValueError) as e:
        raise LedgerError(f"{p} is unreadable ({e}); restore it from a backup or delete it and create new "
                          "keys.") from None


def create_key(root: str | Path, scope: str, name: str = "") -> tuple[str, dict[str, Any]]:
    """A new random key with `scope`: returns (the key, shown this once; its stored entry without the key)."""
    if scope not in SCOPES:
        raise LedgerError(f"Unknown scope {scope!r}; choose one of {', '.join(SCOPES)}.")
    key = PREFIX + secrets.token_urlsafe(32)
    entry = {"id": _digest(key)[:12], "name": name, "scope": scope, "sha256": _digest(key),
             "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    _write(root, load_keys(root) + [entry])
    return key, entry


def revoke_key(root: str | Path, key_id: str) -> bool:
    """Remove the key with id `key_id`; False if there is none."""
    keys = load_keys(root)
    kept = [k for k in keys if k.get("id") != key_id]
    if len(kept) == len(keys):
        return False
    _write(root, kept)
    return True


def authorise(keys: list[dict[str, Any]], presented: str | None, need: str) -> tuple[int, str]:
    """(0, key id) when `presented` is a configured key whose scope grants `need`; else (401 or 403, reason)."""
    if not presented:
        return 401, "an API key is required: send 'Authorization: Bearer <key>' (create one with `unlearnlab " \
                    "ledger keys create --scope ...`)"
    digest = _digest(presented)
    match = next((k for k in keys if hmac.compare_digest(str(k.get("sha256", "")), digest)), None)
    if match is None:
        return 401, "the API key is not valid for this deployment"
    if need not in GRANTS.get(match.get("scope", ""), set()):
        return 403, f"the key's scope {match.get('scope')!r} does not allow this ({need} is needed)"
    return 0, str(match["id"])


__all__ = ["GRANTS", "SCOPES", "authorise", "create_key", "load_keys", "revoke_key"]
