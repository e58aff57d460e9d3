"""A small named registry, used for encoders, solvers, indexes, generators and metrics.

Adding a model to the comparison is one ``register`` call.  Generic families are
registered by prefix: ``registry.register_prefix("hf", factory)`` makes
``registry.get("hf:google/vit-base-patch16-224")`` call
``factory("google/vit-base-patch16-224")``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from fmri2image.errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Map names (and ``prefix:argument`` forms) to objects or factories.

    Parameters
    ----------
    kind : str
        What the registry holds ("encoder", "ridge solver", ...); used in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ConfigError(f"{self.kind} '{name}' is already registered.")
            self._items[name] = item
            return item

        return _add if obj is None else _add(obj)

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what it held (plug-ins and tests clean up with it)."""
        try:
            return self._items.pop(name)
        except KeyError:
            raise ConfigError(f"{self.kind} '{name}' is not registered.") from None

    def register_prefix(self, prefix: str, factory: Callable[[str], T]) -> None:
        """Resolve ``"<prefix>:<arg>"`` names by calling ``factory(arg)``."""
        self._prefixes[prefix] = factory

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        prefix, sep, arg = name.partition(":")
        if sep and prefix in self._prefixes:
            if not arg:
                raise ConfigError(f"{self.kind} name '{name}' needs a value after '{prefix}:'.")
            return self._prefixes[prefix](arg)
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        forms = "".join(f", '{p}:<...>'" for p in sorted(self._prefixes))
        raise ConfigError(
            f"Unknown {self.kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}{forms}."
        )

    def names(self) -> list[str]:
        return sorted(self._items)

    def prefixes(self) -> list[str]:
        return sorted(self._prefixes)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
