"""The engine under a multi-process launch (accelerate launch / torchrun): one store, touched by rank 0 only.

Every rank runs the same jobs in the same order on the serial backend; training inside the jobs is data parallel
(unlearnlab.distributed). Rank 0 alone reads and writes the store; what it reads (a stored run, a cache hit or miss,
the id of a new run) is broadcast, so the ranks never diverge (one loading while another trains would deadlock),
and the weights of a cached model are broadcast from rank 0 (no shared filesystem needed). Jobs are not claimed in
the store's jobs table under a launch: do not point a second sweep at the same store while a launch runs.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import distributed


class RankStore:
    """A Store seen from one rank of a launch: each method runs on rank 0 and returns rank 0's answer everywhere."""

    uncoordinated = True  # coord.py: no job claims (claims and their polling are per process, not per launch)

    def __init__(self, store: Any, root: str | Path):
        self._inner = store if distributed.is_main() else None
        self.root = Path(root)

    def load_model(self, key: str, model: Any) -> dict | None:
        """Rank 0 reads the cache entry; on a hit every rank receives its weights; returns the meta (or None)."""
        meta = distributed.on_main(lambda: self._inner.load_model(key, model))
        if meta is not None:
            distributed.broadcast_state(model)
        return meta

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return distributed.on_main(lambda: getattr(self._inner, name)(*args, **kwargs))
        return call

    def __repr__(self) -> str:
        return f"RankStore({str(self.root)!r}, rank {distributed.rank()})"


def open_store(root: str | Path) -> Any:
    """The Store at `root`; under a multi-process launch a RankStore (only rank 0 opens the database)."""
    from ..store import Store

    if not distributed.launched():
        return Store(root)
    return RankStore(Store(root) if distributed.is_main() else None, root)


def for_launch(store: Any, sink: Callable[[dict], None]) -> tuple[Any, Callable[[dict], None]]:
    """(store, sink) for the scheduler of one rank: a RankStore, and progress events on rank 0 only."""
    if store is not None and not isinstance(store, RankStore):
        store = RankStore(store, store.root)
    return store, (sink if distributed.is_main() else (lambda ev: None))


__all__ = ["RankStore", "for_launch", "open_store"]
