"""Lazy package attributes (PEP 562), so importing a package loads none of its modules.

>>> __getattr__, __dir__ = lazy_exports(__name__, {"RidgeMapping": "fmri2image.mapping._ridge"})

The first access of ``package.RidgeMapping`` imports its module and caches the value
in the package's namespace; ``fmri2image --help`` therefore never loads torch,
scikit-learn or scikit-image through a package ``__init__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, resolving ``name -> module`` on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Attribute name -> fully qualified module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
