"""The store as a pandas DataFrame (`runs_frame`) and the store a report reads (`open_store`)."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError


def open_store(store: Any = None):
    """A Store from None ($UNLEARNLAB_HOME or ./results), a path, or a Store (returned as is)."""
    from ..store import Store

    return store if isinstance(store, Store) else Store(store)


def runs_frame(store: Any = None, **filters: Any):
    """A pandas DataFrame, one row per stored run (newest first), columns from unlearnlab.store.flatten(record).

    Filters select rows: `method="ga"` (spec.* columns may drop the prefix; `__` stands for a dot, as in
    `metrics__UA=...`); a list/tuple/set value means any of them; a callable value is a row predicate on the column.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ConfigError("runs_frame needs pandas, which is not installed: "
                          "pip install 'unlearnlab[report]'.") from None
    from ..errors import UnknownNameError
    from ..store import flatten

    rows = [flatten(r) for r in open_store(store).list_runs()]
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r)))
    for key, want in filters.items():
        col = key.replace("__", ".")
        col = f"spec.{col}" if col not in df.columns and f"spec.{col}" in df.columns else col
        if df.empty:
            continue
        if col not in df.columns:
            raise UnknownNameError("runs_frame column", key, df.columns)
        if callable(want):
            mask = df[col].map(want).astype(bool)
        elif isinstance(want, (list, tuple, set, frozenset)):
            mask = df[col].isin(list(want))
        else:
            mask = df[col] == want
        df = df[mask]
    return df.reset_index(drop=True)
