"""Auditing a deployment: the hash chain, the certificates' signatures, signed heads and the queue, checked
against each other (DeletionService.verify)."""
from __future__ import annotations

from typing import Any

from .chain import VerifyReport


def verify_deployment(service, public_key: Any = None, head: dict[str, Any] | None = None) -> VerifyReport:
    """Verify the chain, the certificates and the queue against each other.

    The chain is walked (edited, reordered or removed entries) with the hashes the certificates name as anchors.
    Every certificate file must be signed by the deployment's key, or by `public_key` when an auditor pins one
    kept outside the deployment (a swapped keys/signing.pub then cannot vouch for a forged certificate). Every
    request the queue marks completed must have a readable, authentic certificate for that request whose ledger
    anchor is the request's own `completed` entry; a certificate for a request that is not completed is a
    failure too. `head`: a signed chain head (sign_head) kept outside the deployment; the chain must still
    hold its entry unchanged. Run recover() first so that a certificate a crash left unwritten is restored."""
    import json

    from .certificates import CertificateError, verify_document

    key = service.dep.public_key_path if public_key is None else public_key
    expected: dict[int, str] = {}
    if head is not None:
        try:
            check = verify_document(head, key)
        except CertificateError as e:
            return VerifyReport(False, 0, "", None, f"the chain head given is not a signed head ({e})")
        body = check.certificate
        if not check.ok or body.get("kind") != "chain-head" or not isinstance(body.get("seq"), int):
            return VerifyReport(False, 0, "", None, "the chain head given is not authentic "
                                                    f"({check.reason or 'not a chain head'})")
        if body["seq"] > 0:
            expected[body["seq"]] = str(body.get("hash"))
    problems: dict[str, tuple[int | None, str]] = {}  # request id -> (seq, reason)
    certified: dict[str, dict[str, Any]] = {}
    for path in sorted((service.dep.root / "certificates").glob("*.json")):
        rid = path.stem
        try:
            check = verify_document(json.loads(path.read_text(encoding="utf-8")), key)
        except (OSError, ValueError, CertificateError) as e:
            problems[rid] = (None, f"request {rid}: its certificate {path.name} is unreadable ({e})")
            continue
        if not check.ok:
            problems[rid] = (None, f"request {rid}: its certificate is not authentic ({check.reason})")
            continue
        led = check.certificate.get("ledger") or {}
        if check.request_id != rid or not isinstance(led.get("seq"), int) or not isinstance(led.get("hash"), str):
            problems[rid] = (None, f"request {rid}: its certificate names request {check.request_id!r} or no "
                                   "ledger entry")
            continue
        expected[led["seq"]] = led["hash"]
        certified[rid] = led
    report = service.dep.ledger.verify(expected)
    if not report.ok:
        return report
    entries = {e.seq: e for e in service.dep.ledger.entries()}
    completed = {r["request_id"] for r in service.queue.list(statuses=["completed"])}
    for rid in sorted(completed - set(problems)):
        led = certified.get(rid)
        if led is None:
            problems[rid] = (None, f"request {rid} is marked completed but its certificate is missing "
                                   f"({service.dep.certificate_path(rid).name})")
            continue
        entry = entries.get(led["seq"])
        if entry is None or entry.request_id != rid or entry.status != "completed":
            problems[rid] = (led["seq"], f"request {rid}: the ledger entry its certificate names is not its "
                                         "completed entry")
    for rid in sorted(set(certified) - completed):
        problems[rid] = (certified[rid]["seq"], f"request {rid} has a certificate but the queue does not mark "
                                                "it completed")
    if problems:
        seq, reason = next(iter(problems.values()))
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        return VerifyReport(False, report.entries, report.head, seq, reason + more)
    return report
