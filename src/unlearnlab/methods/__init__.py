"""Unlearning methods: one file each, registered by name with a frozen config dataclass.

The names below load `base` (and torch) on first use, so that `_catalog` can list methods without them.
"""
from __future__ import annotations

from typing import Any

__all__ = ["METHODS", "MethodContext", "get_method", "run_method"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
