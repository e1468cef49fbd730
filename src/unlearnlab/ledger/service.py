"""The deletion service: validate and queue requests, apply them in batches, chain every step, sign receipts.

Life of a request: ``received`` (queued) -> ``processing`` (claimed by a batch) -> ``completed`` (or
``failed``); each step is a new ledger entry. All queued requests for the scheme form one batch and one
``scheme.delete(all ids)``. The batch's new scheme state is staged, then made live by swapping
scheme/CURRENT (the commit point), then the ledger, queue and certificates are finalised in one
transaction. After a crash, a started batch whose version is live is finalised from its stored evidence;
otherwise it is re-run from the unchanged live state: no request is lost or applied twice.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from ..exact.base import DeletionScheme, UnknownRecordError
from .certificates import sign_certificate, write_certificate
from .chain import VerifyReport, canonical_json
from .db import iso, one_month_after, utcnow
from .deployment import Deployment
from .errors import (
    DuplicateRequestError,
    NoLineageError,
    NoRecordsForSubjectError,
    NotCompletedError,
    RequestError,
    UnknownRecordsError,
    UnknownRequestError,
)
from .queue import RequestQueue

log = logging.getLogger("unlearnlab.ledger")
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PER_RECORD_KEYS = ("deleted", "already_deleted")


def check_request_id(request_id: str) -> str:
    """A valid request id (1-128 chars of letters, digits, . _ : -), or RequestError."""
    rid = str(request_id or "").strip()
    if not REQUEST_ID.match(rid):
        raise RequestError(f"Invalid request id {request_id!r}: use 1-128 letters, digits, '.', '_', ':' or '-', "
                           "starting with a letter or digit (e.g. req-2024-0001).")
    return rid


def guarantee_of(evidence: dict[str, Any], scheme: str) -> dict[str, Any]:
    """The guarantee level (exact / certified with epsilon, delta / empirical) named by the evidence."""
    g: dict[str, Any] = {"level": evidence.get("guarantee", "empirical")}
    for k in ("epsilon", "delta"):
        if k in evidence:
            g[k] = evidence[k]
    return g


class DeletionService:
    """Deletion requests for one deployment: submit, batch-process, status, certificates, overdue, verify."""

    def __init__(self, deployment: Deployment | str | os.PathLike, *, window_s: float | None = None,
                 max_batch: int | None = None, clock: Callable[[], Any] = utcnow, poll_s: float = 1.0):
        self.dep = deployment if isinstance(deployment, Deployment) else Deployment(deployment)
        self.queue = RequestQueue(self.dep.engine)
        self.window_s = self.dep.window_s if window_s is None else float(window_s)
        self.max_batch, self.clock, self.poll_s = max_batch, clock, poll_s
        self._scheme: DeletionScheme | None = None
        self._version: str | None = None
        self._mutex = threading.RLock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # -- scheme ----------------------------------------------------------------------------------
    def scheme(self) -> DeletionScheme:
        """The live scheme, reloaded when another process committed a newer version."""
        with self._mutex:
            live = self.dep.current_version()
            if self._scheme is None or self._version != live:
                self._scheme, self._version = self.dep.load_scheme(live), live
            return self._scheme

    def _lineage(self, records: list[str]) -> dict[str, list[str]]:
        with self._mutex:
            scheme = self.scheme()
            if not scheme.records:
                raise NoLineageError(scheme.name)
            try:
                lineage = scheme.lineage(records)
            except UnknownRecordError as exc:
                raise UnknownRecordsError(list(exc.unknown) or records, len(self.dep.record_ids)) from exc
        if any(not lineage.get(r) for r in records):
            raise NoLineageError(scheme.name)
        return {r: sorted(lineage[r]) for r in records}

    # -- submission ------------------------------------------------------------------------------
    def submit(self, request_id: str, subject: str, records: Sequence[str] | None = None) -> dict[str, Any]:
        """Validate and queue a request; the same id with the same content returns the existing request."""
        rid, shash = check_request_id(request_id), self.dep.hasher(subject)
        with self.dep.engine.connect() as conn:
            existing = self.queue.get(rid, conn)
            recs = self._records_for(records, self.dep.subjects.records_of(shash, conn))
            fingerprint = hashlib.sha256(canonical_json({"s": shash, "r": recs}).encode()).hexdigest()
            if existing is None:
                unknown = [r for r in recs if r not in self.dep.record_ids]
                if unknown:
                    raise UnknownRecordsError(unknown, len(self.dep.record_ids))
                self._refuse_claimed(conn, rid, recs)  # erased records are duplicates, not unknown ones
        if existing is not None:  # outside the read: SQLite allows one open transaction per process here
            return self._same_or_conflict(existing, fingerprint)
        lineage = self._lineage(recs)
        artefacts = sorted({a for arts in lineage.values() for a in arts})
        now = self.clock()
        row = {"request_id": rid, "subject_hash": shash, "records": recs, "fingerprint": fingerprint,
               "artefacts": artefacts, "scheme": self.dep.scheme_name, "status": "queued",
               "received_at": iso(now), "deadline": iso(one_month_after(now))}
        body = {"event": "received", **{k: row[k] for k in ("subject_hash", "records", "artefacts", "scheme",
                                                            "received_at", "deadline")},
                "lineage": lineage, "guarantee": {"level": self.dep.config.get("guarantee")}}
        try:
            with self.dep.engine.begin() as conn:
                self._refuse_claimed(conn, rid, recs)
                self.queue.insert(conn, row)
                self.dep.ledger.append(conn, [(rid, "received", body)])
        except sa.exc.IntegrityError:
            again = self.queue.get(rid)
            if again is None:
                raise DuplicateRequestError(
                    f"Request {rid!r} names records another request claimed at the same moment; "
                    "query GET /deletions or `unlearnlab ledger list` and retry if needed.") from None
            return self._same_or_conflict(again, fingerprint)
        self._wake.set()
        return self._view({**row, "batch_id": None, "completed_at": None, "certificate": None, "error": None})

    @staticmethod
    def _records_for(records: Sequence[str] | None, owned: list[str]) -> list[str]:
        if isinstance(records, str):
            records = [records]
        recs = sorted({str(r).strip() for r in (records or []) if str(r).strip()})
        if not recs:
            if not owned:
                raise NoRecordsForSubjectError()
            return owned
        if owned and not set(recs) <= set(owned):
            extra = sorted(set(recs) - set(owned))
            raise RequestError(f"{len(extra)} record(s) are not registered to this subject, e.g. {extra[:3]}. "
                               "A subject may only erase its own records; omit --records to erase all of them.")
        return recs

    def _same_or_conflict(self, existing: dict[str, Any], fingerprint: str) -> dict[str, Any]:
        if existing["fingerprint"] != fingerprint:
            raise DuplicateRequestError(
                f"Request id {existing['request_id']!r} was already used for a different subject or record set. "
                "Use a new request id for a new request; resend the same content to read the existing one.")
        return self.status(existing["request_id"])

    def _refuse_claimed(self, conn: sa.Connection, rid: str, recs: list[str]) -> None:
        claimed = self.queue.claimed_by(conn, recs)
        if claimed:
            by = sorted(set(claimed.values()))
            raise DuplicateRequestError(
                f"{len(claimed)} record(s) of request {rid!r} are already covered by request(s) {by[:5]} "
                f"(e.g. {sorted(claimed)[:3]}); a record is erased once. Check those requests' status with "
                "GET /deletions/{id} or `unlearnlab ledger show ID`.")

    # -- processing ------------------------------------------------------------------------------
    def process_pending(self, max_batch: int | None = None) -> list[dict[str, Any]]:
        """Resume interrupted batches, then apply all queued requests as one batch; returns batch summaries."""
        with self.dep.lock():  # flock: excludes other processes and other threads of this one
            done = [self._resume(b) for b in self.queue.open_batches()]
            batch = self._claim(max_batch if max_batch is not None else self.max_batch)
            if batch is not None:
                done.append(self._apply(batch, resumed=False))
            if done:
                self.sign_head()
            return done

    def sign_head(self) -> dict[str, Any]:
        """Sign the chain head (entries, last seq and hash, time) and write it to heads/latest.json and
        heads/<seq>.json. An auditor who keeps a head outside the deployment can later prove with
        verify(head=...) that the chain still extends it: a truncated or rewritten tail no longer holds that
        entry."""
        seq, h = self.dep.ledger.head()
        doc = sign_certificate({"kind": "chain-head", "seq": seq, "hash": h, "time": iso(self.clock()),
                                "deployment": self.dep.root.name}, self.dep.signing_key)
        for name in (f"{seq:08d}.json", "latest.json"):
            write_certificate(doc, self.dep.root / "heads" / name)
        return doc

    def recover(self) -> list[dict[str, Any]]:
        """Finish or re-run batches a crash interrupted, and rewrite missing certificate files."""
        with self.dep.lock():
            done = [self._resume(b) for b in self.queue.open_batches()]
        for req in self.queue.list(statuses=["completed"]):
            if not self.dep.certificate_path(req["request_id"]).exists() and req["certificate"]:
                write_certificate(req["certificate"], self.dep.certificate_path(req["request_id"]))
        return done

    def _claim(self, limit: int | None) -> dict[str, Any] | None:
        with self.dep.engine.begin() as conn:
            reqs = self.queue.queued(conn, self.dep.scheme_name, limit)
            if not reqs:
                return None
            n = self.queue.batch_count(conn) + 1
            batch_id = f"b{n:06d}"
            batch = {"batch_id": batch_id, "scheme": self.dep.scheme_name,
                     "request_ids": [r["request_id"] for r in reqs], "base_version": self.dep.current_version(),
                     "new_version": f"{n:06d}-{batch_id}", "started_at": iso(self.clock())}
            self.queue.new_batch(conn, batch)
            ids = batch["request_ids"]
            self.queue.set_status(conn, ids, status="processing", batch_id=batch_id)
            self.dep.ledger.append(conn, [(r, "processing", {"event": "processing", "batch_id": batch_id,
                                                             "started_at": batch["started_at"]}) for r in ids])
        return batch

    def _resume(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.dep.current_version() == batch["new_version"]:
            log.warning("batch %s was applied before a crash; finalising it", batch["batch_id"])
            evidence = self.dep.read_evidence(batch["new_version"])
            evidence["purged_files"] = sorted(set(evidence.get("purged_files", [])) | set(self.dep.purge_stale()))
            return self._finalise(batch, evidence)
        log.warning("batch %s was interrupted before its commit; re-running it", batch["batch_id"])
        return self._apply(batch, resumed=True)

    def _apply(self, batch: dict[str, Any], *, resumed: bool) -> dict[str, Any]:
        with self.dep.engine.connect() as conn:
            reqs = self.queue.in_batch(conn, batch["batch_id"])
        ids = sorted({r for req in reqs for r in req["records"]})
        scheme = self.dep.open_work_copy(batch["base_version"], batch["new_version"])
        try:
            evidence = dict(scheme.delete(ids))
        except Exception as exc:
            log.exception("batch %s failed", batch["batch_id"])
            shutil.rmtree(self.dep.work_dir(batch["new_version"]), ignore_errors=True)
            return self._fail(batch, reqs, f"{type(exc).__name__}: {exc}")
        own = [self.dep.relative(f, batch["new_version"]) for f in evidence.get("purged_files", [])]
        evidence["purged_files"] = sorted(set(own) | set(self._version_files(batch["base_version"])))
        evidence["resumed_after_crash"] = resumed
        self.dep.stage_version(scheme, batch["new_version"], evidence)
        self.dep.commit_version(batch["new_version"])  # commit point
        self.dep.purge_stale()
        return self._finalise(batch, evidence)

    def _version_files(self, version: str) -> list[str]:
        base = self.dep.root / "scheme" / version
        return [str(p.relative_to(self.dep.root)) for p in sorted(base.rglob("*")) if p.is_file()]

    def _finalise(self, batch: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
        now = iso(self.clock())
        guarantee = guarantee_of(evidence, batch["scheme"])
        with self.dep.engine.begin() as conn:
            reqs = self.queue.in_batch(conn, batch["batch_id"])
            bodies = [(req["request_id"], "completed", self._completed_body(req, evidence, guarantee, batch, now))
                      for req in reqs]
            entries = self.dep.ledger.append(conn, bodies)
            for req, (_, _, body), entry in zip(reqs, bodies, entries, strict=True):
                payload = {**body, "request_id": req["request_id"],
                           "ledger": {"seq": entry.seq, "hash": entry.hash}, "issued_at": now}
                payload.pop("event", None)
                cert = sign_certificate(payload, self.dep.signing_key)
                self.queue.set_status(conn, [req["request_id"]], status="completed", completed_at=now,
                                      certificate=canonical_json(cert))
                req["certificate"] = cert
            self.queue.finish_batch(conn, batch["batch_id"], "committed", evidence, now)
        for req in reqs:
            write_certificate(req["certificate"], self.dep.certificate_path(req["request_id"]))
        return {"batch_id": batch["batch_id"], "requests": len(reqs), "records": len(evidence.get("deleted", [])),
                "state": "committed", "seconds": evidence.get("seconds")}

    @staticmethod
    def _completed_body(req: dict[str, Any], evidence: dict[str, Any], guarantee: dict[str, Any],
                        batch: dict[str, Any], now: str) -> dict[str, Any]:
        mine = set(req["records"])
        ev = {k: v for k, v in evidence.items() if k not in PER_RECORD_KEYS}
        for k in PER_RECORD_KEYS:
            ev[k] = [r for r in evidence.get(k, []) if r in mine]
        ev["batch_records"] = sum(len(evidence.get(k, [])) for k in PER_RECORD_KEYS)
        return {"event": "completed", "subject_hash": req["subject_hash"], "records": req["records"],
                "artefacts": req["artefacts"], "scheme": req["scheme"], "guarantee": guarantee, "evidence": ev,
                "batch_id": batch["batch_id"], "state_version": batch["new_version"],
                "received_at": req["received_at"], "deadline": req["deadline"], "completed_at": now}

    def _fail(self, batch: dict[str, Any], reqs: list[dict[str, Any]], error: str) -> dict[str, Any]:
        now = iso(self.clock())
        ids = [r["request_id"] for r in reqs]
        with self.dep.engine.begin() as conn:
            self.dep.ledger.append(conn, [(r, "failed", {"event": "failed", "batch_id": batch["batch_id"],
                                                         "error": error, "failed_at": now}) for r in ids])
            self.queue.set_status(conn, ids, status="failed", error=error)
            self.queue.release(conn, ids)
            self.queue.finish_batch(conn, batch["batch_id"], "failed", {"error": error}, now)
        return {"batch_id": batch["batch_id"], "requests": len(ids), "state": "failed", "error": error}

    # -- queries ---------------------------------------------------------------------------------
    def status(self, request_id: str) -> dict[str, Any]:
        """The request's current status, deadline, overdue flag and (when completed) certificate."""
        req = self.queue.get(check_request_id(request_id))
        if req is None:
            raise UnknownRequestError(request_id)
        return self._view(req)

    def _view(self, req: dict[str, Any]) -> dict[str, Any]:
        req = {k: v for k, v in req.items() if k != "fingerprint"}
        req["overdue"] = req["status"] != "completed" and req["deadline"] < iso(self.clock())
        return req

    def certificate(self, request_id: str) -> dict[str, Any]:
        """The signed certificate of a completed request (its file is rewritten if missing)."""
        req = self.status(request_id)
        if req["status"] != "completed" or not req["certificate"]:
            raise NotCompletedError(f"Request {request_id!r} is {req['status']}; a certificate exists only once it "
                                    "has completed. Poll its status and ask again.")
        path = self.dep.certificate_path(req["request_id"])
        if not path.exists():
            write_certificate(req["certificate"], path)
        return req["certificate"]

    def requests(self, *, overdue: bool = False, status: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
        """Requests, oldest first; `overdue` keeps those past their deadline and not completed."""
        if overdue:
            rows = self.queue.list(statuses=["queued", "processing", "failed"],
                                   deadline_before=iso(self.clock()), limit=limit)
        else:
            rows = self.queue.list(statuses=[status] if status else None, limit=limit)
        for r in rows:
            r.pop("fingerprint", None)
            r.pop("certificate", None)
            r["overdue"] = r["status"] != "completed" and r["deadline"] < iso(self.clock())
        return rows

    def verify(self, public_key: Any = None, head: dict[str, Any] | None = None) -> VerifyReport:
        """Verify the chain, the certificates and the queue against each other (ledger/audit.py)."""
        from .audit import verify_deployment

        return verify_deployment(self, public_key, head)

    # -- background worker -----------------------------------------------------------------------
    def start(self) -> None:
        """Recover, then process queued requests in a background thread, batching within `window_s`."""
        if self._thread is not None:
            return
        self.recover()
        self._stop.clear()
        self._wake.set()
        self._thread = threading.Thread(target=self._loop, name="unlearnlab-deletions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the background worker after its current batch."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set() or not (self.queue.has_queued() or self.queue.open_batches()):
                continue
            self._stop.wait(self.window_s)  # let more requests join this batch
            try:
                self.process_pending()
            except Exception:
                log.exception("deletion batch failed; it will be resumed")
                self._stop.wait(self.poll_s)
