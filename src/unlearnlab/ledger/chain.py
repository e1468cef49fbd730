"""Append-only, hash-chained ledger: entry hash = SHA-256(previous hash || canonical JSON of the entry).

The Ledger class has no update or delete method: a status change is a new chained entry.
`verify()` walks the chain and reports the first entry that was edited, reordered or removed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import sqlalchemy as sa

from .db import ledger_entries
from .errors import LedgerError

GENESIS = "0" * 64
ADVISORY_KEY = 0x756E6C6561726E  # "unlearn"


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, tuples and sets to plain JSON values (non-finite floats -> text)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch scalars and arrays
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def canonical_json(obj: Any) -> str:
    """The canonical text that is hashed and signed: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(prev_hash: str, body: str) -> str:
    """SHA-256 over the previous hash and the entry's canonical JSON."""
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One ledger entry as stored: sequence number, content, and its place in the chain."""

    seq: int
    request_id: str
    status: str
    body: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON: its content plus seq, prev_hash and hash."""
        return {**self.body, "seq": self.seq, "prev_hash": self.prev_hash, "hash": self.hash}


@dataclasses.dataclass(frozen=True)
class VerifyReport:
    """Outcome of a chain verification: ok, entries checked, and the first bad entry with the reason."""

    ok: bool
    entries: int
    head: str
    bad_seq: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dataclasses.asdict(self)


class Ledger:
    """The hash-chained ledger table on a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._lock = threading.Lock()

    def append(self, conn: sa.Connection, items: Sequence[tuple[str, str, dict[str, Any]]]) -> list[Entry]:
        """Append (request_id, status, body) items in order inside the caller's transaction `conn`."""
        with self._lock:
            if conn.dialect.name == "postgresql":  # serialise appenders across processes until commit
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
            last = conn.execute(
                sa.select(ledger_entries.c.seq, ledger_entries.c.hash).order_by(ledger_entries.c.seq.desc()).limit(1)
            ).first()
            seq, prev = (int(last.seq), last.hash) if last else (0, GENESIS)
            out, rows = [], []
            for request_id, status, body in items:
                seq += 1
                full = to_jsonable({**body, "seq": seq, "request_id": request_id, "status": status})
                text = canonical_json(full)
                h = entry_hash(prev, text)
                rows.append({"seq": seq, "request_id": request_id, "status": status,
                             "body": text, "prev_hash": prev, "hash": h})
                out.append(Entry(seq, request_id, status, full, prev, h))
                prev = h
            if rows:
                conn.execute(ledger_entries.insert(), rows)
            return out

    def append_now(self, items: Sequence[tuple[str, str, dict[str, Any]]]) -> list[Entry]:
        """Append items in a transaction of their own (retried if another writer took the same seq)."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return self.append(conn, items)
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise
        raise LedgerError("unreachable")

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, GENESIS) for an empty ledger."""
        with self.engine.connect() as conn:
            last = conn.execute(sa.select(ledger_entries.c.seq, ledger_entries.c.hash)
                                .order_by(ledger_entries.c.seq.desc()).limit(1)).first()
        return (int(last.seq), last.hash) if last else (0, GENESIS)

    def _rows(self, where: Any = None, limit: int | None = None, after: int = 0) -> Iterable[Any]:
        q = sa.select(ledger_entries).where(ledger_entries.c.seq > after).order_by(ledger_entries.c.seq)
        if where is not None:
            q = q.where(where)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return conn.execute(q).all()

    @staticmethod
    def _entry(row: Any) -> Entry:
        return Entry(int(row.seq), row.request_id, row.status, json.loads(row.body), row.prev_hash, row.hash)

    def entries(self, request_id: str | None = None, limit: int | None = None, after: int = 0) -> list[Entry]:
        """Entries in chain order, optionally only those of one request."""
        where = None if request_id is None else ledger_entries.c.request_id == request_id
        return [self._entry(r) for r in self._rows(where, limit, after)]

    def count(self, status: str | None = None) -> int:
        """Number of entries (with a given status)."""
        q = sa.select(sa.func.count()).select_from(ledger_entries)
        if status is not None:
            q = q.where(ledger_entries.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def verify(self, expected: Mapping[int, str] | None = None) -> VerifyReport:
        """Walk the chain; report the first edited, reordered or removed entry.

        `expected` maps seq -> hash known from outside the table (e.g. issued certificates); a
        missing or different entry there is reported too (this catches removal of the last entries).
        """
        prev, n, want = GENESIS, 0, dict(expected or {})
        for row in self._rows():
            n += 1
            seq = int(row.seq)
            bad = self._check_row(row, n, prev)
            if bad:
                return VerifyReport(False, n - 1, prev, seq, bad)
            if seq in want and want.pop(seq) != row.hash:
                return VerifyReport(False, n - 1, prev, seq,
                                    f"entry {seq} differs from the hash recorded in its certificate or signed head")
            prev = row.hash
        if want:
            seq = min(want)
            return VerifyReport(False, n, prev, seq,
                                f"entry {seq} is missing: a certificate or signed head refers to it but the ledger "
                                f"ends at {n}")
        return VerifyReport(True, n, prev)

    @staticmethod
    def _check_row(row: Any, position: int, prev: str) -> str:
        seq = int(row.seq)
        if seq != position:
            return (f"entry {position} is missing (next entry found has seq {seq}): "
                    "an entry was removed" if seq > position else f"entry {seq} is out of order")
        if row.prev_hash != prev:
            return f"entry {seq} does not link to the previous entry (removed or reordered entries before it)"
        try:
            body = json.loads(row.body)
        except json.JSONDecodeError:
            return f"entry {seq} is not valid JSON (edited)"
        if entry_hash(prev, row.body) != row.hash or canonical_json(body) != row.body:
            return f"entry {seq} was edited: its content does not match its hash"
        if (body.get("seq"), body.get("request_id"), body.get("status")) != (seq, row.request_id, row.status):
            return f"entry {seq} was edited: its columns do not match its hashed content"
        return ""
