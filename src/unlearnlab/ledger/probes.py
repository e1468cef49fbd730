"""Tampering probes: what an attacker who can write a deployment's directory and database would do, so that tests
and `benchmarks/security_probe.py` can check `ledger verify` catches each of them (see docs/security.md)."""
from __future__ import annotations

import json
from pathlib import Path

from .chain import GENESIS, canonical_json, entry_hash
from .db import deletion_requests, ledger_entries
from .deployment import Deployment


def rewrite_end_to_end(dep: Deployment, request_id: str, new_records: list[str]) -> Path:
    """Edit a completed request's entries, recompute every hash after them so the chain links again, and patch the
    certificate's ledger anchor to the new hash (its signature left as it was). Returns the certificate's path."""
    with dep.engine.begin() as conn:
        rows = conn.execute(ledger_entries.select().order_by(ledger_entries.c.seq)).fetchall()
        prev, new_hash = GENESIS, {}
        for r in rows:
            body = json.loads(r.body)
            if r.request_id == request_id and "records" in body:
                body["records"] = new_records
            text = canonical_json(body)
            h = entry_hash(prev, text)
            conn.execute(ledger_entries.update().where(ledger_entries.c.seq == r.seq)
                         .values(body=text, hash=h, prev_hash=prev))
            new_hash[r.seq], prev = h, h
    path = dep.certificate_path(request_id)
    doc = json.loads(path.read_text())
    doc["certificate"]["ledger"]["hash"] = new_hash[doc["certificate"]["ledger"]["seq"]]
    path.write_text(json.dumps(doc))
    return path


def truncate_last_request(dep: Deployment) -> str:
    """Remove the last request's entries, queue row and certificate (a clean-looking shorter history)."""
    with dep.engine.begin() as conn:
        last = conn.execute(ledger_entries.select().order_by(ledger_entries.c.seq.desc()).limit(1)).first()
        conn.execute(ledger_entries.delete().where(ledger_entries.c.request_id == last.request_id))
        conn.execute(deletion_requests.delete().where(deletion_requests.c.request_id == last.request_id))
    dep.certificate_path(last.request_id).unlink(missing_ok=True)
    return str(last.request_id)


def force_status(dep: Deployment, request_id: str, status: str = "completed") -> None:
    """Flip a request's status in the queue table without a chain entry or a certificate."""
    with dep.engine.begin() as conn:
        conn.execute(deletion_requests.update().where(deletion_requests.c.request_id == request_id)
                     .values(status=status))


def swap_key_and_forge(dep: Deployment, request_id: str) -> None:
    """Re-sign the request's (tampered) certificate with a fresh key and put that key in keys/signing.pub."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .certificates import public_pem, sign_certificate

    key = Ed25519PrivateKey.generate()
    path = dep.certificate_path(request_id)
    cert = json.loads(path.read_text())["certificate"]
    path.write_text(json.dumps(sign_certificate({k: v for k, v in cert.items() if k not in ("version", "key_id")},
                                                key)))
    dep.public_key_path.write_bytes(public_pem(key.public_key()))


__all__ = ["force_status", "rewrite_end_to_end", "swap_key_and_forge", "truncate_last_request"]
