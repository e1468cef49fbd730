"""Results store: run records in SQLite (WAL, one transaction per run) plus content-addressed artifacts.

Layout under the root ($UNLEARNLAB_HOME, else ./results): runs.sqlite (+ -wal/-shm while open),
artifacts/, models/, tmp/ (see artifacts.py).

Guarantees:
- A run is written by one INSERT inside BEGIN IMMEDIATE ... COMMIT; a writer interrupted at any
  point (Ctrl-C, kill -9) leaves either the whole row or nothing. WAL mode lets readers in other
  processes see the last committed state while a writer writes; busy_timeout makes writers queue.
- Records are stored as JSON text. Floats round-trip exactly (shortest repr); non-finite floats
  are written as the tokens NaN, Infinity and -Infinity (Python's json convention, also used by
  JSON export) and read back as float nan/inf. Tuples come back as lists, numpy/torch scalars as
  Python numbers; non-string dict keys and other types are refused with a StoreError.
- The database carries its schema version in a `meta` table; a newer one is refused clearly.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import os
import re
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Self

from .artifacts import ArtifactStore, StoreWarning, dumps, file_lock, jsonable, write_text_atomic
from .errors import ConfigError, StoreError

SCHEMA_VERSION: int = 1
DB_NAME = "runs.sqlite"
_BUSY_MS = 30_000
_CSV_GROUPS = ("spec", "metrics", "timings", "memory", "env")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    spec_key TEXT NOT NULL,
    created TEXT NOT NULL,
    dataset TEXT,
    method TEXT,
    status TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_spec_key ON runs (spec_key, status);
CREATE INDEX IF NOT EXISTS runs_dataset_method ON runs (dataset, method);
"""


def spec_key(spec: dict) -> str:
    """Content key of a run spec: sha256 of its canonical JSON (sorted keys, no whitespace), first 20 hex."""
    canon = json.dumps(jsonable(spec, "spec"), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


def default_root() -> Path:
    """$UNLEARNLAB_HOME if set, else ./results."""
    return Path(os.environ.get("UNLEARNLAB_HOME") or "results")


def _name_of(value: Any) -> str | None:
    """The filterable name of a spec entry: a string as is, or a dict's 'name'."""
    value = value.get("name") if isinstance(value, dict) else value
    return None if value is None else str(value)


def _loads(text: str) -> Any:
    return json.loads(text)  # accepts NaN / Infinity / -Infinity, the tokens dumps() writes


def flatten(record: dict) -> dict[str, Any]:
    """One CSV row: id/created/spec_key/status, then spec.*, metrics.*, timings.*, memory.*, env.* leaves."""
    row: dict[str, Any] = {k: record.get(k) for k in ("id", "created", "spec_key", "status", "schema_version")}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(value, (dict, list)):
            row[prefix] = dumps(value)
        else:
            row[prefix] = value

    for group in _CSV_GROUPS:
        if group in record:
            walk(group, record[group])
    return row


class Store(ArtifactStore):
    """Run records (SQLite) + artifacts + model cache under one results directory."""

    def __init__(self, root: str | os.PathLike | None = None):
        super().__init__(default_root() if root is None else root)
        self.db_path = self.root / DB_NAME
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._connect()

    # -- connection -------------------------------------------------------------------------------
    def _db_error(self, e: sqlite3.Error) -> StoreError:
        """A StoreError for a failed database operation: busy/IO problems vs a corrupt file."""
        if isinstance(e, sqlite3.OperationalError) and "malformed" not in str(e):
            return StoreError(f"Cannot access the results database {self.db_path} ({e}). If another process is "
                              "writing it, wait and retry; otherwise check disk space and permissions.")
        return StoreError(f"The results database {self.db_path} cannot be read ({e}); it is corrupt or not an "
                          f"unlearnlab store. Move it away (e.g. `mv {self.db_path} {self.db_path}.bad`, with its "
                          "-wal/-shm files) and run again: a new empty store will be created.")

    def _unwritable(self, e: Exception) -> StoreError:
        return StoreError(f"Cannot open the results database {self.db_path} ({e}). Check that the directory is "
                          "writable, or choose another with $UNLEARNLAB_HOME.")

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.db_path, timeout=_BUSY_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as e:
            raise self._unwritable(e) from None
        try:  # set-up under a file lock: switching to WAL can return "locked" without waiting
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            with file_lock(self.root / ".runs.lock"):
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                if self._schema_version(conn) != SCHEMA_VERSION:
                    self._create_schema(conn)
        except sqlite3.Error as e:
            conn.close()
            raise self._db_error(e) from None
        except OSError as e:  # the lock file
            conn.close()
            raise self._unwritable(e) from None
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """The stored schema version (None for a new, empty database); refuses newer or foreign databases."""
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables - {"runs"}:
                raise StoreError(f"{self.db_path} is an SQLite database of another program (tables: "
                                 f"{', '.join(sorted(tables))}), not an unlearnlab store. Move it away or "
                                 "choose another results directory ($UNLEARNLAB_HOME).")
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise StoreError(f"The results database {self.db_path} has schema version {version}, written by a "
                             f"newer unlearnlab; this version reads up to {SCHEMA_VERSION}. Upgrade unlearnlab "
                             "or use another results directory ($UNLEARNLAB_HOME).")
        return version

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables (in one write transaction, safe against a concurrent creator)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(stmt)
            if self._schema_version(conn) is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection of this process (reopened after a fork)."""
        if self._conn is None or self._pid != os.getpid():
            self._connect()
        return self._conn  # type: ignore[return-value]

    def close(self) -> None:
        """Close the database connection (the store reopens it on next use)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def __getstate__(self) -> dict:
        return {"root": str(self.root)}  # connections do not cross processes: the copy reconnects

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"])  # type: ignore[misc]

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise self._db_error(e) from None

    # -- runs -------------------------------------------------------------------------------------
    def add_run(self, record: dict) -> str:
        """Store a run in one transaction; assigns id, created (UTC ISO) and spec_key; returns the id.

        `status` defaults to 'completed' (only completed runs are found by find_run); `schema_version`
        defaults to SCHEMA_VERSION. The caller's dict is not modified.
        """
        if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
            raise StoreError("A run record must be a dict with a 'spec' dict (dataset, forget, model, method, "
                             f"config, seed); got {type(record).__name__}"
                             f"{'' if not isinstance(record, dict) else ' without a spec dict'}.")
        rec = jsonable(record, "record")
        rec.setdefault("schema_version", SCHEMA_VERSION)
        rec.setdefault("status", "completed")
        rec["id"] = uuid.uuid4().hex[:12]
        rec["created"] = datetime.now(UTC).isoformat(timespec="microseconds")
        rec["spec_key"] = spec_key(rec["spec"])
        row = (rec["id"], rec["spec_key"], rec["created"], _name_of(rec["spec"].get("dataset")),
               _name_of(rec["spec"].get("method")), str(rec["status"]), dumps(rec))

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            _crash_point("run-inserted")

        self.transact(insert)
        return rec["id"]

    def transact(self, fn: Any) -> Any:
        """fn(connection) inside one BEGIN IMMEDIATE ... COMMIT (rolled back on any error); returns its result."""
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                    conn.execute("COMMIT")
                    return out
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._db_error(e) from None

    def find_run(self, spec: dict) -> str | None:
        """Id of the newest completed run with the same spec (so an interrupted sweep can skip it)."""
        rows = self._query("SELECT id FROM runs WHERE spec_key = ? AND status = 'completed' "
                           "ORDER BY created DESC, rowid DESC LIMIT 1", (spec_key(spec),))
        return rows[0][0] if rows else None

    def _resolve(self, run_id: str) -> str:
        """The full id that `run_id` (a full id or unique prefix) names, else a helpful StoreError."""
        run_id = run_id.strip().lower() if isinstance(run_id, str) else run_id
        if not isinstance(run_id, str) or not re.fullmatch(r"[0-9a-f]{1,32}", run_id):
            raise StoreError(f"{run_id!r} is not a run id; ids are hex strings as shown by `unlearnlab runs list`.")
        ids = [r[0] for r in self._query("SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id",
                                         (len(run_id), run_id))]
        if len(ids) == 1:
            return ids[0]
        if ids:
            shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
            raise StoreError(f"Run id prefix {run_id!r} is ambiguous: it matches {len(ids)} runs ({shown}). "
                             "Give more characters.")
        known = [r[0] for r in self._query("SELECT id FROM runs")]
        close = difflib.get_close_matches(run_id, [k[:len(run_id)] for k in known], n=3, cutoff=0.6)
        close_full = [k for k in known if k[:len(run_id)] in close][:3]
        hint = f" Did you mean {', '.join(close_full)}?" if close_full else ""
        raise StoreError(f"No run {run_id!r} in {self.db_path}.{hint} List runs with `unlearnlab runs list`.")

    def get_run(self, run_id: str) -> dict:
        """The record of run `run_id` (a full id or a unique prefix)."""
        full = self._resolve(run_id)
        rows = self._query("SELECT record FROM runs WHERE id = ?", (full,))
        if not rows:
            raise StoreError(f"Run {full} was deleted while reading it; list runs again.")
        return _loads(rows[0][0])

    def list_runs(self, *, dataset: str | None = None, method: str | None = None,
                  limit: int | None = None) -> list[dict]:
        """Run records, newest first, optionally filtered by dataset / method name and capped at `limit`."""
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ConfigError(f"limit must be a positive integer or None. Got {limit!r} instead.")
        where, args = [], []
        for col, val in (("dataset", dataset), ("method", method)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(str(val))
        sql = "SELECT record FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, rowid DESC" + (" LIMIT ?" if limit else "")
        rows = self._query(sql, tuple(args) + ((limit,) if limit else ()))
        return [_loads(r[0]) for r in rows]

    def method_seconds(self, dataset: str | dict | None = None) -> dict[str, float]:
        """Median wall seconds of the stored runs per method (on `dataset`, a name or a spec's {name, path}): what
        a scheduler expects a method's next run to take (engine/runner.py starts the slowest first); runs that
        reused a per-process cache (method_info '<what>_reused': True: Fisher's later tuning trials) do not count."""
        times: dict[str, list[float]] = {}
        for r in self.list_runs(dataset=_name_of(dataset)):
            t = (r.get("timings") or {}).get("wall_s")
            reused = any(k.endswith("_reused") and v is True for k, v in (r.get("method_info") or {}).items())
            if isinstance(t, (int, float)) and t > 0 and not reused:
                times.setdefault(str(r["spec"].get("method")), []).append(float(t))
        return {m: sorted(v)[len(v) // 2] for m, v in times.items()}

    def count_runs(self) -> int:
        """Number of stored runs."""
        return int(self._query("SELECT count(*) FROM runs")[0][0])

    def delete_run(self, run_id: str) -> None:
        """Delete run `run_id` (full id or unique prefix); its artifacts stay (they may be shared)."""
        full = self._resolve(run_id)
        with self._lock:
            try:
                with_tx(self.conn, "DELETE FROM runs WHERE id = ?", (full,))
            except sqlite3.Error as e:
                raise self._db_error(e) from None

    def annotate(self, run_id: str, key: str, value: Any) -> dict:
        """Set `record[key] = value` on a stored run (e.g. its audit) in one transaction; returns the record."""
        full = self._resolve(run_id)
        if key in ("id", "spec", "spec_key", "created", "metrics"):
            raise StoreError(f"{key!r} defines a run and cannot be changed; store extra results under another key.")
        value = jsonable(value, key)

        def update(conn: sqlite3.Connection) -> dict:
            rows = conn.execute("SELECT record FROM runs WHERE id = ?", (full,)).fetchall()
            if not rows:
                raise StoreError(f"Run {full} was deleted while annotating it; list runs again.")
            rec = _loads(rows[0][0])
            rec[key] = value
            conn.execute("UPDATE runs SET record = ? WHERE id = ?", (dumps(rec), full))
            return rec

        return self.transact(update)

    # -- export -----------------------------------------------------------------------------------
    def export(self, run_ids: list[str] | None, fmt: Literal["csv", "json"],
               path_or_stream: str | os.PathLike | IO[str]) -> int:
        """Write runs (all, oldest first, when `run_ids` is None) as CSV or JSON; returns how many were written.

        CSV: one row per run with flattened spec.* metrics.* timings.* memory.* env.* columns (nested lists as
        JSON text, nan/inf as 'nan'/'inf'). JSON: a list of records (NaN/Infinity tokens for non-finite floats).
        A path is written atomically (temp file + rename); a stream is written as is.
        """
        if fmt not in ("csv", "json"):
            raise ConfigError(f"Export format must be 'csv' or 'json'. Got {fmt!r} instead.")
        if run_ids is None:
            records = list(reversed(self.list_runs()))
        else:
            records = [self.get_run(r) for r in run_ids]
        buf = io.StringIO(newline="")
        if fmt == "json":
            json.dump(records, buf, allow_nan=True, indent=1, ensure_ascii=False)
            buf.write("\n")
        else:
            rows = [flatten(r) for r in records]
            cols = list(dict.fromkeys(k for row in rows for k in row))
            fixed = [c for c in cols if "." not in c]
            cols = fixed + sorted((c for c in cols if "." in c),
                                  key=lambda c: (_CSV_GROUPS.index(c.split(".")[0]), c))
            w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        text = buf.getvalue()
        if hasattr(path_or_stream, "write"):
            path_or_stream.write(text)  # type: ignore[union-attr]
        else:
            write_text_atomic(Path(path_or_stream), text)
        return len(records)


def with_tx(conn: sqlite3.Connection, sql: str, args: tuple) -> None:
    """Run one statement in its own BEGIN IMMEDIATE transaction (rolled back on any error)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(sql, args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _crash_point(stage: str) -> None:
    """No-op between the INSERT and the COMMIT; crash-safety tests replace it to pause or kill the writer."""


__all__ = ["SCHEMA_VERSION", "Store", "StoreError", "StoreWarning", "default_root", "flatten", "spec_key"]
