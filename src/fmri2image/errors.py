"""Errors a user can act on.

Every exception raised for bad input derives from :class:`Fmri2ImageError`.  Its
message is one paragraph that says what is wrong and how to fix it; the CLI prints
it without a traceback (unless ``--debug``) and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataFormatError",
    "DependencyError",
    "Fmri2ImageError",
    "MissingDataFileError",
    "MissingImageError",
    "ModelUnavailableError",
]


class Fmri2ImageError(Exception):
    """Base class for errors caused by input the user can fix."""

    exit_code: int = 2


class DataFormatError(Fmri2ImageError, ValueError):
    """A data file exists but does not have the expected content or layout."""


class MissingDataFileError(Fmri2ImageError, FileNotFoundError):
    """A data file (BData HDF5, id file) the user pointed to does not exist."""


class MissingImageError(Fmri2ImageError, FileNotFoundError):
    """A stimulus or database image named by an id file is not on disk."""


class ModelUnavailableError(Fmri2ImageError, OSError):
    """Model weights cannot be found locally and cannot be downloaded."""


class DependencyError(Fmri2ImageError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


class ConfigError(Fmri2ImageError, ValueError):
    """A parameter or option has an invalid value."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise :class:`DependencyError`.

    Parameters
    ----------
    module : str
        Importable module name, e.g. ``"faiss"``.
    extra : str
        The pip extra that installs it, e.g. ``"ray"`` for ``fmri2image[ray]``.
    feature : str
        What the user asked for, used in the message.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{feature} needs the optional package '{module}', which is not installed "
            f"({exc}). Install it with: pip install 'fmri2image[{extra}]'"
        ) from exc
