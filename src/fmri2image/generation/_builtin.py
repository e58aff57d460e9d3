"""Registry entries of the built-in generators (lazy: nothing heavy is imported here).

Each module adds its entries in a ``register()`` function called below; a
generator's module is imported only when the generator is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy(module: str, attr: str, *args: Any) -> Callable[..., Any]:
    """A factory that imports ``fmri2image.generation.<module>`` only when called."""

    def call(**kwargs: Any) -> Any:
        mod = importlib.import_module(f"fmri2image.generation.{module}")
        return getattr(mod, attr)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{attr}"
    return call


# Entries are added by the generator modules' authors here, e.g.:
#   register_generator("invert", lazy("invert", "InvertGenerator"),
#                      conditioning="embedding", description="...", offline=True)
