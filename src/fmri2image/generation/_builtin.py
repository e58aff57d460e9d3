"""Registry entries of the built-in generators (lazy: nothing heavy is imported here).

A generator's module is imported only when the generator is built, or when its
``Options`` are asked for (:func:`fmri2image.generation.generator_options`).
"""

from __future__ import annotations

import importlib
from typing import Any


class lazy:  # noqa: N801  (used like a function: lazy("invert", "InvertGenerator"))
    """A factory that imports ``fmri2image.generation.<module>.<attr>`` only when used.

    Calling it builds the generator (``attr(*args, **kwargs)``); :meth:`resolve`
    returns the class itself, so its ``Options`` can be read without building it.
    """

    def __init__(self, module: str, attr: str, *args: Any) -> None:
        self.module, self.attr, self.args = module, attr, args
        self.__name__ = self.__qualname__ = f"{module}.{attr}"

    def resolve(self) -> Any:
        mod = importlib.import_module(f"fmri2image.generation.{self.module}")
        return getattr(mod, self.attr)

    def __call__(self, **kwargs: Any) -> Any:
        return self.resolve()(*self.args, **kwargs)


# Entries (one register_generator call each) follow, e.g.:
#   register_generator("invert", lazy("invert", "InvertGenerator"),
#                      conditioning="embedding", description="...", offline=True)
