"""Analyses cached in the store: computed once per run content, stored as a content-addressed artifact with a small
index file (STORE/dashboard/<key>.json -> artifact digest), kept in memory while the server runs."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..artifacts import dumps
from .analysis import CKA_N, SAMPLE, VERSION

MEMORY = 32  # analyses kept in memory


def analysis_key(record: dict) -> str:
    """Content key of a run's analysis: the run's spec key (what defines its model) and the analysis settings."""
    body = json.dumps({"spec": record.get("spec_key"), "v": VERSION, "sample": SAMPLE, "cka": CKA_N}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class AnalysisCache:
    """get(record, compute) returns the stored analysis of the run, computing (and storing) it only the first time;
    `computed` counts the analyses this process computed (a test checks the second request computes nothing)."""

    def __init__(self, store) -> None:
        self.store = store
        self.dir = store.root / "dashboard"
        self.computed = 0
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _remember(self, key: str, value: dict) -> dict:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY:
            self._memory.popitem(last=False)
        return value

    def _load(self, key: str) -> dict | None:
        index = self.dir / f"{key}.json"
        if not index.is_file():
            return None
        try:
            digest = json.loads(index.read_text())["artifact"]
            return json.loads(self.store.artifact_path(digest).read_bytes())
        except Exception:  # noqa: BLE001 - a broken or foreign entry is recomputed
            index.unlink(missing_ok=True)
            return None

    def _save(self, key: str, value: dict) -> None:
        digest = self.store.put_bytes(dumps(value).encode())
        self.dir.mkdir(exist_ok=True)
        tmp = self.dir / f".{key}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
        tmp.write_text(json.dumps({"key": key, "artifact": digest, "run": value.get("run_id")}))
        os.replace(tmp, self.dir / f"{key}.json")

    def cached(self, record: dict) -> bool:
        """True when the analysis of `record` is stored (no computation needed)."""
        key = analysis_key(record)
        return key in self._memory or (self.dir / f"{key}.json").is_file()

    def get(self, record: dict, compute: Callable[[dict], dict[str, Any]]) -> dict[str, Any]:
        """The analysis of `record`: from memory, else from the store, else compute(record) once and store it."""
        key = analysis_key(record)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # concurrent requests for one run compute it once
            if key in self._memory:
                return self._memory[key]
            value = self._load(key)
            if value is None:
                value = compute(record)
                self.computed += 1
                self._save(key, value)
            return self._remember(key, value)


__all__ = ["AnalysisCache", "analysis_key"]
