"""Frozen config dataclasses whose fields carry help text; building them validates overrides."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from .errors import ConfigError, UnknownNameError

SEARCH_KINDS = ("log", "float", "int", "choice")


def param(default: Any, help: str, *, choices: tuple | None = None, low: float | None = None,
          high: float | None = None, search: tuple | None = None) -> Any:
    """A dataclass field with help text, optional validation bounds/choices and an optional tuning search space.

    `search` is ("log", lo, hi) (log-uniform), ("float", lo, hi), ("int", lo, hi) or ("choice", v1, v2, ...).
    """
    meta = {"help": help, "choices": choices, "low": low, "high": high, "search": None}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults in frozen configs")
    if search is not None:
        meta["search"] = check_search(search, choices=choices, low=low, high=high)
    return dataclasses.field(default=default, metadata=meta)


def check_search(search: Any, *, choices: tuple | None = None, low: float | None = None,
                 high: float | None = None) -> tuple:
    """Validate a search-space tuple (see `param`) against a field's bounds/choices; returns it as a tuple."""
    form = "('log', lo, hi), ('float', lo, hi), ('int', lo, hi) or ('choice', v1, v2, ...)"
    if not isinstance(search, (tuple, list)) or not search or search[0] not in SEARCH_KINDS:
        raise ConfigError(f"search must be one of {form}. Got {search!r} instead.")
    kind, *vals = search
    if kind == "choice":
        if not vals:
            raise ConfigError(f"search ('choice', ...) needs at least one value. Got {search!r} instead.")
        if choices and any(v not in choices for v in vals):
            raise ConfigError(f"search {search!r} has values outside the field's choices {choices}.")
    else:
        if len(vals) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            raise ConfigError(f"search ({kind!r}, lo, hi) needs two numbers. Got {search!r} instead.")
        if not vals[0] < vals[1] or (kind == "log" and vals[0] <= 0):
            raise ConfigError(f"search {search!r} needs lo < hi (and lo > 0 for 'log').")
        if kind == "int" and not all(float(v).is_integer() for v in vals):
            raise ConfigError(f"search ('int', lo, hi) needs integer bounds. Got {search!r} instead.")
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums and ((low is not None and min(nums) < low) or (high is not None and max(nums) > high)):
        raise ConfigError(f"search {search!r} leaves the field's valid range [{low}, {high}]; narrow it.")
    return (kind, *vals)


def fields(cls: type) -> list[dataclasses.Field]:
    """The dataclass fields of a config class."""
    return list(dataclasses.fields(cls))


def _coerce(name: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if typ is bool or typ == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ConfigError(f"{name} must be true or false. Got {value!r} instead.")
    if typ in (int, "int"):
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name} must be an integer. Got {value!r} instead.")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer. Got {value!r} instead.") from None
    if typ in (float, "float"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number. Got {value!r} instead.") from None
    if typ in (str, "str"):
        return str(value)
    if origin is tuple or typ in ("tuple", tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        args = [a for a in typing.get_args(typ) if a is not Ellipsis]
        if len(args) == 1:  # tuple[int, ...] and friends: coerce every item
            return tuple(_coerce(name, v, args[0]) for v in value)
        return tuple(value)
    return value


def build(cls: type, overrides: dict[str, Any] | None = None, *, what: str = "config") -> Any:
    """Instantiate `cls` with `overrides`, rejecting unknown keys and out-of-range values."""
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in known:
            raise UnknownNameError(f"{what} field", key, known)
        f = known[key]
        value = _coerce(f"{what}.{key}", value, hints.get(key, f.type))
        meta = f.metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(
                f"{what}.{key} must be one of {', '.join(map(str, meta['choices']))}. Got {value!r} instead."
            )
        if meta.get("low") is not None and value < meta["low"]:
            raise ConfigError(f"{what}.{key} must be >= {meta['low']}. Got {value!r} instead.")
        if meta.get("high") is not None and value > meta["high"]:
            raise ConfigError(f"{what}.{key} must be <= {meta['high']}. Got {value!r} instead.")
        kwargs[key] = value
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def describe(cls: type) -> list[dict[str, Any]]:
    """Field name, default and help text (plus "search" for tunable fields) of each field of `cls`."""
    out = []
    for f in dataclasses.fields(cls):
        entry = {"name": f.name, "default": f.default, "help": f.metadata.get("help", "")}
        if f.metadata.get("search"):  # only for tunable fields, so other configs describe exactly as before
            entry["search"] = list(f.metadata["search"])
        out.append(entry)
    return out


def search_space(config_cls: type) -> dict[str, tuple]:
    """The declared tuning search space of a config class: field name -> search tuple (see `param`)."""
    return {f.name: f.metadata["search"] for f in dataclasses.fields(config_cls) if f.metadata.get("search")}
