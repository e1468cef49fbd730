"""Job coordination through the store: a `jobs` table so two processes (or hosts) never compute the same job.

A process claims a job in one BEGIN IMMEDIATE transaction. A claim held by a live owner makes others wait for it;
a claim whose owner is gone (a dead pid on this host, or no heartbeat for HEARTBEAT_TTL_S from another host) is
taken over, so a sweep killed with kill -9 resumes where it stopped. Finished jobs keep their status, seconds and
error text for `unlearnlab sweep status`.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from typing import Any

from ..artifacts import _pid_alive

HEARTBEAT_TTL_S = 120.0
_TABLE = """CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, label TEXT, kind TEXT, sweep TEXT, status TEXT,
owner TEXT, host TEXT, pid INTEGER, heartbeat REAL, started REAL, finished REAL, error TEXT, run_id TEXT)"""
HOST = socket.gethostname()


_LIVE: set[str] = set()  # schedulers alive in this process (a reused pid must not make a dead claim look alive)


def new_owner() -> str:
    """A token naming this scheduler (host, pid and a random part)."""
    owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _LIVE.add(owner)
    return owner


def _tx(store, fn) -> Any:
    """fn(connection) in one store transaction, the jobs table created first if needed."""
    def with_table(conn: sqlite3.Connection) -> Any:
        conn.execute(_TABLE)
        out = fn(conn)
        return None if isinstance(out, sqlite3.Cursor) else out  # plain values only (a launch broadcasts them)
    return store.transact(with_table)


def _alive(row: tuple, me: str) -> bool:
    """Whether the owner of a 'running' row still works on it (this host: its pid lives; elsewhere: heartbeat)."""
    owner, host, pid, beat = row
    if owner == me:
        return True
    if host == HOST:
        return owner in _LIVE if int(pid) == os.getpid() else _pid_alive(int(pid))
    return time.time() - float(beat or 0) < HEARTBEAT_TTL_S


def claim(store, key: str, *, owner: str, label: str = "", kind: str = "", sweep: str = "") -> str | None:
    """Claim job `key` for `owner`: None when claimed, else the live owner's token (wait for it)."""
    def fn(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT status, owner, host, pid, heartbeat FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is not None and row[0] == "running" and _alive(row[1:], owner):
            return row[1] if row[1] != owner else None
        now = time.time()
        conn.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, NULL, NULL, NULL)",
                     (key, label, kind, sweep, owner, HOST, os.getpid(), now, now))
        return None
    return _tx(store, fn)


def status_of(store, key: str, owner: str) -> str:
    """'running' (by a live owner), 'done', 'failed', 'stale' (owner gone) or 'absent'."""
    def fn(conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT status, owner, host, pid, heartbeat FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None:
            return "absent"
        if row[0] == "running":
            return "running" if _alive(row[1:], owner) else "stale"
        return row[0]
    return _tx(store, fn)


def finish(store, key: str, *, owner: str, ok: bool, error: str = "", run_id: str = "") -> None:
    """Record the end of a job this owner claimed."""
    _tx(store, lambda conn: conn.execute(
        "UPDATE jobs SET status = ?, finished = ?, error = ?, run_id = ? WHERE key = ? AND owner = ?",
        ("done" if ok else "failed", time.time(), error or None, run_id or None, key, owner)))


def heartbeat(store, keys: list[str], owner: str) -> None:
    """Refresh the heartbeat of this owner's running jobs."""
    if keys:
        now = time.time()
        _tx(store, lambda conn: conn.executemany("UPDATE jobs SET heartbeat = ? WHERE key = ? AND owner = ?",
                                                 [(now, k, owner) for k in keys]))


def release_all(store, owner: str) -> None:
    """Drop this owner's unfinished claims (an interrupted scheduler), so others may take them at once."""
    _LIVE.discard(owner)
    _tx(store, lambda conn: conn.execute("DELETE FROM jobs WHERE owner = ? AND status = 'running'", (owner,)))


def jobs(store, sweep: str | None = None) -> list[dict]:
    """Every job row (optionally of one sweep name), newest first."""
    def fn(conn: sqlite3.Connection) -> list[dict]:
        sql = "SELECT key, label, kind, sweep, status, owner, host, pid, heartbeat, started, finished, error, run_id " \
              "FROM jobs" + (" WHERE sweep = ?" if sweep is not None else "") + " ORDER BY started DESC"
        cols = ("key", "label", "kind", "sweep", "status", "owner", "host", "pid", "heartbeat", "started", "finished",
                "error", "run_id")
        rows = [dict(zip(cols, r)) for r in conn.execute(sql, (sweep,) if sweep is not None else ())]
        for r in rows:
            if r["status"] == "running" and not _alive((r["owner"], r["host"], r["pid"], r["heartbeat"]), ""):
                r["status"] = "stale"
        return rows
    return _tx(store, fn)


__all__ = ["claim", "finish", "heartbeat", "jobs", "new_owner", "release_all", "status_of"]
