"""Name -> object registries (methods, datasets, models, metrics) with did-you-mean lookups."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of entries; `package` is imported lazily to let modules self-register. Modules whose names
    start with '_' or with a prefix in `skip` are not imported (they register nothing)."""

    def __init__(self, kind: str, package: str | None = None, skip: tuple[str, ...] = ()):
        self.kind = kind
        self.package = package
        self.skip = ("_", *skip)
        self._entries: dict[str, T] = {}
        self._loaded = package is None

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name` (names are unique)."""
        if name in self._entries and self._entries[name] is not entry:
            raise ConfigError(f"{self.kind} {name!r} is registered twice; rename one of them.")
        self._entries[name] = entry
        return entry

    @property
    def loaded(self) -> bool:
        """Whether the package's modules have been imported (so every entry is registered)."""
        return self._loaded

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith(self.skip):
                importlib.import_module(f"{self.package}.{mod.name}")

    def get(self, name: str) -> T:
        """The entry called `name`, or an UnknownNameError with suggestions."""
        self._load()
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self._entries)
        return self._entries[name]

    def names(self) -> list[str]:
        """All registered names in registration order after loading."""
        self._load()
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs."""
        self._load()
        return list(self._entries.items())


def decorator(reg: Registry[Any], name: str, **attrs: Any) -> Callable[[T], T]:
    """Register the decorated object under `name`, attaching `attrs` as attributes."""

    def wrap(obj: T) -> T:
        for k, v in attrs.items():
            setattr(obj, k, v)
        reg.add(name, obj)
        return obj

    return wrap
