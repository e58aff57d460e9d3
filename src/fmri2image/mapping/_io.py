"""Save and load a fitted mapping model (any registered :class:`Mapper`) without pickle.

A saved mapping is a folder with two files:

``mapping.safetensors``
    The mapper's arrays (:meth:`Mapper._save_state`); for :class:`RidgeMapping`
    ``coef`` (n_selected_voxels, n_targets), ``voxel_indices``, ``x_mean``,
    ``x_scale``, ``y_mean``, ``y_scale``, ``alphas`` (the grid), ``alpha`` (chosen
    per target), ``cv_scores`` (n_alphas, n_targets), ``best_score``.
``config.json``
    ``format`` (``"fmri2image.mapping/<name>"``, ``<name>`` the
    :data:`~fmri2image.mapping.MAPPERS` entry), ``format_version``, the
    constructor ``params``, the ``fitted`` JSON state (for ridge: solver, number
    of folds, the fit diagnostics) and the SHA-256 of the weights file (checked on
    load).

Folders written by earlier releases (``format: "fmri2image.mapping.RidgeMapping"``,
version 1, ridge only) still load.  Loading needs no training data and runs no
code from the files.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmri2image import __version__
from fmri2image._io import file_sha256, load_json, load_safetensors, save_json, save_safetensors
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.mapping.base import (
    MAPPERS,
    Mapper,
    _format_of,
    _name_of,
    _unknown_format,
)

__all__ = ["FORMAT_VERSION", "load_mapping", "save_mapping"]

#: Version of the generic layout; version 1 was the ridge-only layout (still read).
FORMAT_VERSION = 2
WEIGHTS_FILE = "mapping.safetensors"
CONFIG_FILE = "config.json"

#: Formats of earlier releases -> registry name.
_LEGACY_FORMATS = {"fmri2image.mapping.RidgeMapping": "ridge"}


def save_mapping(model: Mapper, path: str | os.PathLike) -> Path:
    """Write a fitted mapping to the folder ``path`` (created; files written atomically).

    Parameters
    ----------
    model : Mapper
        A fitted mapping model whose class is registered in
        :data:`~fmri2image.mapping.MAPPERS` (e.g. :class:`RidgeMapping`).
    path : str or path-like
        Destination folder.

    Returns
    -------
    path : Path
    """
    cls = type(model)
    name = getattr(cls, "format_name", "")
    if not isinstance(model, Mapper) or name not in MAPPERS or MAPPERS.get(name).load() is not cls:
        known = ", ".join(MAPPERS.names()) or "(none)"
        raise ConfigError(
            f"{cls.__name__} is not a registered mapping model (format_name={name!r}; "
            f"registered: {known}); subclass fmri2image.mapping.Mapper and call "
            "fmri2image.mapping.register_mapper(format_name, cls) before saving."
        )
    tensors, fitted = model._save_state()
    params = model._save_params()
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    fmt = _format_of(name)
    weights = save_safetensors(folder / WEIGHTS_FILE, tensors, metadata={"format": fmt})
    config = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "fmri2image_version": __version__,
        "mapper": name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": params,
        "fitted": fitted,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": file_sha256(weights),
    }
    save_json(folder / CONFIG_FILE, config)
    return folder


def load_mapping(path: str | os.PathLike) -> Mapper:
    """Load a mapping written by :func:`save_mapping` (this or an earlier release).

    Parameters
    ----------
    path : str or path-like
        Folder holding ``config.json`` and ``mapping.safetensors``.

    Returns
    -------
    model : Mapper
        Fitted, of the class its ``format`` names; ``predict`` works immediately.
        A :class:`RidgeMapping` fitted with a splitter object as ``cv`` gets
        ``cv=5`` (the splitter's repr is kept in ``config.json``).

    Raises
    ------
    DataFormatError
        The folder is not a saved mapping, names a format no registered mapper
        reads, is newer than this release, or its weights do not match the
        recorded checksum.
    """
    folder = Path(path)
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise DataFormatError(
            f"{folder} is not a saved mapping: it must contain {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by fmri2image.mapping.save_mapping). Check the path."
        )
    config = load_json(cfg_path)
    if not isinstance(config, dict):
        raise DataFormatError(f"{cfg_path} is not a mapping config (a JSON object expected).")
    fmt = config.get("format")
    legacy = fmt in _LEGACY_FORMATS
    name = _LEGACY_FORMATS[fmt] if legacy else _name_of(fmt)
    if name is None or name not in MAPPERS:
        raise _unknown_format(fmt, str(cfg_path))
    version = config.get("format_version", -1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataFormatError(
            f"{cfg_path} was written by a newer fmri2image (format version "
            f"{version!r} > {FORMAT_VERSION}); upgrade fmri2image to load it."
        )
    if file_sha256(w_path) != config.get("weights_sha256"):
        raise DataFormatError(
            f"{w_path} does not match the checksum recorded in {cfg_path}: the files come from "
            "different saves or the weights were modified. Save the mapping again."
        )
    tensors, _ = load_safetensors(w_path)
    params, fitted = config.get("params"), config.get("fitted")
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise DataFormatError(f"{cfg_path} lacks its 'params' or 'fitted' section.")
    if legacy:  # version 1 kept the ridge diagnostics beside "fitted"
        fitted = {**fitted, "diagnostics_": config.get("diagnostics")}
    cls = MAPPERS.get(name).load()
    try:
        return cls._load_state(params, tensors, fitted)
    except DataFormatError as exc:
        raise DataFormatError(f"{folder}: {exc}") from exc
    except (TypeError, ValueError, KeyError) as exc:
        raise DataFormatError(
            f"{folder} does not hold a valid {cls.__name__} state ({exc}); it was written by an "
            "incompatible version of that mapper. Save the mapping again."
        ) from exc
