"""Named registries, the seams where encoders, mappers, generators, metrics and datasets plug in.

A :class:`Registry` maps names to entries.  Adding a component is one ``register_*``
call of the stage that owns the registry (``register_encoder``,
``register_mapper``, ``register_generator``, ``register_metric``,
``register_dataset``), from fmri2image itself, from user code, or from an installed
*plugin package* that declares a Python entry point::

    # the plugin's pyproject.toml
    [project.entry-points."fmri2image.encoders"]
    my-encoder = "my_package.encoders:build_my_encoder"

An entry point's name is the component's registry name and its object is what the
matching ``register_*`` call takes (an encoder factory, a ``Mapper`` subclass, a
``Generator`` subclass, a ``Metric``, a ``Dataset`` subclass).  Plugins are loaded
lazily: listing a registry reads the installed packages' metadata (no import), and
a plugin's module is imported only when its component is first asked for by name,
or when a listing needs the entries themselves.  A plugin that fails to load is
reported (:attr:`Registry.plugin_errors`, ``fmri2image doctor``) and never breaks
the other components.

Generic families are registered by prefix: ``registry.register_prefix("hf",
factory)`` makes ``registry.get("hf:google/vit-base-patch16-224")`` call
``factory("google/vit-base-patch16-224")``.

Every entry declares what it needs (:class:`Needs`: an optional extra, packages,
weights, pipeline inputs, a GPU), so ``fmri2image doctor``, ``fmri2image models``
and the pipeline read declarations instead of special-casing names.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fmri2image.errors import ConfigError

T = TypeVar("T")

__all__ = ["ENTRY_POINT_GROUPS", "Needs", "Registry", "import_target"]

log = logging.getLogger(__name__)

#: The entry-point group of each registry (``[project.entry-points."<group>"]``).
ENTRY_POINT_GROUPS = {
    "encoder": "fmri2image.encoders",
    "mapping model": "fmri2image.mappers",
    "generator": "fmri2image.generators",
    "metric": "fmri2image.metrics",
    "dataset": "fmri2image.datasets",
}


@dataclass(frozen=True)
class Needs:
    """What a registered component needs before it can run, declared once.

    Attributes
    ----------
    extra : str or None
        The fmri2image optional extra that installs its packages
        (``pip install 'fmri2image[<extra>]'``), e.g. ``"hf"``, ``"diffusion"``.
    packages : tuple of str
        Distributions it imports when built (``"transformers"``, ``"diffusers"``).
    weights : str
        Where its weights come from, in words (``""``: none, or they ship with a
        package).
    offline : bool
        Runs on a machine with no network: nothing to download.
    inputs : tuple of str
        Pipeline inputs a run must supply, by name (see
        :data:`fmri2image.generation.PIPELINE_INPUTS`): ``"database"`` is the
        feature folder of the run's first image database.
    gpu : bool
        Slow without a GPU.
    """

    extra: str | None = None
    packages: tuple[str, ...] = ()
    weights: str = ""
    offline: bool = True
    inputs: tuple[str, ...] = ()
    gpu: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "extra": self.extra,
            "packages": list(self.packages),
            "weights": self.weights,
            "offline": self.offline,
            "inputs": list(self.inputs),
            "gpu": self.gpu,
        }


def import_target(target: str) -> Any:
    """The object a ``"package.module:Name"`` string names (imported now): how entries
    registered by path are loaded on first use, so listing a registry stays cheap."""
    import importlib

    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{target!r} must be 'package.module:Name'.")
    return getattr(importlib.import_module(module), attr)


class Registry(Generic[T]):
    """Map names (and ``prefix:argument`` forms) to objects or factories.

    Parameters
    ----------
    kind : str
        What the registry holds ("encoder", "ridge solver", ...); used in errors.
    group : str, optional
        Entry-point group whose plugins this registry loads (lazily).
    plugin : callable, optional
        ``plugin(name, obj)`` registers one loaded entry-point object: the owning
        stage's ``register_*`` function.  Required with ``group``.
    """

    def __init__(
        self,
        kind: str,
        *,
        group: str | None = None,
        plugin: Callable[[str, Any], Any] | None = None,
    ) -> None:
        if (group is None) != (plugin is None):
            raise ValueError("Registry: give both group and plugin, or neither.")
        self.kind = kind
        self.group = group
        self._plugin = plugin
        self._items: dict[str, T] = {}
        self._prefixes: dict[str, Callable[[str], T]] = {}
        self._entry_points: dict[str, Any] | None = None  # name -> EntryPoint, not loaded
        #: Plugins that failed to load: name -> "what went wrong".
        self.plugin_errors: dict[str, str] = {}

    # ------------------------------------------------------------------ plugins
    def _discover(self) -> dict[str, Any]:
        """Installed entry points of :attr:`group` not loaded yet (metadata only)."""
        if self._entry_points is None:
            found: dict[str, Any] = {}
            if self.group is not None:
                from importlib.metadata import entry_points

                for ep in entry_points(group=self.group):
                    found.setdefault(ep.name, ep)
            self._entry_points = found
        return self._entry_points

    def _load_plugin(self, name: str) -> bool:
        """Import the plugin ``name`` and register it; False (and a recorded error)
        when it cannot be loaded."""
        ep = self._discover().pop(name, None)
        if ep is None or name in self._items:
            return name in self._items
        try:
            obj = ep.load()
            assert self._plugin is not None
            self._plugin(name, obj)
        except Exception as exc:  # a broken plugin must not break the others
            self.plugin_errors[name] = (
                f"{ep.value} (entry point {name!r} of group {self.group!r}, from "
                f"{getattr(ep.dist, 'name', 'an installed package')}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            )
            log.warning("warning: %s plugin %s", self.kind, self.plugin_errors[name])
            return False
        if name not in self._items:
            self.plugin_errors[name] = (
                f"{ep.value} (entry point {name!r} of group {self.group!r}) was loaded but "
                f"registered no {self.kind} of that name."
            )
            return False
        return True

    def load_plugins(self) -> None:
        """Import every installed plugin of this registry (listings that need entries)."""
        for name in list(self._discover()):
            self._load_plugin(name)

    # ------------------------------------------------------------------ entries
    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ConfigError(f"{self.kind} '{name}' is already registered.")
            self._items[name] = item
            if self._entry_points is not None:  # registered by hand: the plugin is not needed
                self._entry_points.pop(name, None)
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
        if name in self._discover() and self._load_plugin(name):
            return self._items[name]
        if name in self.plugin_errors:
            raise ConfigError(f"The {self.kind} plugin {self.plugin_errors[name]}")
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
        """Registered names and the names of installed plugins not loaded yet, sorted."""
        return sorted(set(self._items) | set(self._discover()))

    def prefixes(self) -> list[str]:
        return sorted(self._prefixes)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._items or name in self._discover())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
