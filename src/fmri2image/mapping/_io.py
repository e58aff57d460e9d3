"""Save and load a fitted :class:`RidgeMapping` without pickle.

A saved mapping is a folder with two files:

``mapping.safetensors``
    Arrays: ``coef`` (n_selected_voxels, n_targets), ``voxel_indices``,
    ``x_mean``, ``x_scale``, ``y_mean``, ``y_scale``, ``alphas`` (the grid),
    ``alpha`` (chosen per target), ``cv_scores`` (n_alphas, n_targets).
``config.json``
    Constructor parameters, fitted scalars, the fit diagnostics
    (:class:`~fmri2image.mapping.FitDiagnostics`), format version and the SHA-256
    of the weights file (checked on load).

Loading needs no training data and runs no code from the files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image import __version__
from fmri2image._io import file_sha256, load_json, load_safetensors, save_json, save_safetensors
from fmri2image.errors import DataFormatError
from fmri2image.mapping._diagnostics import FitDiagnostics
from fmri2image.mapping._ridge import RidgeMapping

__all__ = ["FORMAT_VERSION", "load_mapping", "save_mapping"]

FORMAT_VERSION = 1
WEIGHTS_FILE = "mapping.safetensors"
CONFIG_FILE = "config.json"

_ARRAYS = {
    "coef": "coef_",
    "voxel_indices": "voxel_indices_",
    "x_mean": "x_mean_",
    "x_scale": "x_scale_",
    "y_mean": "y_mean_",
    "y_scale": "y_scale_",
    "alpha": "alpha_",
    "cv_scores": "cv_scores_",
    "best_score": "best_score_",
}


def _jsonable_param(name: str, value: Any) -> Any:
    if name == "alphas":
        return None  # stored as an array
    if name == "cv" and not (isinstance(value, (int, str)) and not isinstance(value, bool)):
        return repr(value)  # a splitter object: recorded, restored as the default
    return value.item() if isinstance(value, np.generic) else value


def save_mapping(model: RidgeMapping, path: str | os.PathLike) -> Path:
    """Write a fitted mapping to the folder ``path`` (created; files written atomically).

    Parameters
    ----------
    model : RidgeMapping
        A fitted mapping.
    path : str or path-like
        Destination folder.

    Returns
    -------
    path : Path
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(model, "coef_")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: np.asarray(getattr(model, attr)) for key, attr in _ARRAYS.items()}
    tensors["alphas"] = np.asarray(model.alphas, dtype=np.float64).ravel()
    weights = save_safetensors(
        folder / WEIGHTS_FILE, tensors, metadata={"format": "fmri2image.mapping"}
    )
    params = {k: _jsonable_param(k, v) for k, v in model.get_params(deep=False).items()}
    config = {
        "format": "fmri2image.mapping.RidgeMapping",
        "format_version": FORMAT_VERSION,
        "fmri2image_version": __version__,
        "params": params,
        "fitted": {
            "solver_": model.solver_,
            "n_splits_": int(model.n_splits_),
            "n_features_in_": int(model.n_features_in_),
            "y_1d_": bool(model.y_1d_),
        },
        "diagnostics": model.diagnostics_.to_dict() if hasattr(model, "diagnostics_") else None,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": file_sha256(weights),
    }
    save_json(folder / CONFIG_FILE, config)
    return folder


def load_mapping(path: str | os.PathLike) -> RidgeMapping:
    """Load a mapping written by :func:`save_mapping`.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``config.json`` and ``mapping.safetensors``.

    Returns
    -------
    model : RidgeMapping
        Fitted; ``predict`` works immediately. If it was fitted with a splitter
        object as ``cv``, ``cv`` is restored as 5 (the splitter's repr is kept in
        ``config.json``).
    """
    folder = Path(path)
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise DataFormatError(
            f"{folder} is not a saved mapping: it must contain {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written by fmri2image.mapping.save_mapping). Check the path."
        )
    config = load_json(cfg_path)
    if config.get("format") != "fmri2image.mapping.RidgeMapping":
        raise DataFormatError(
            f"{cfg_path} does not describe a RidgeMapping (format={config.get('format')!r})."
        )
    if int(config.get("format_version", -1)) > FORMAT_VERSION:
        raise DataFormatError(
            f"{cfg_path} was written by a newer fmri2image (format version "
            f"{config['format_version']} > {FORMAT_VERSION}); upgrade fmri2image to load it."
        )
    if file_sha256(w_path) != config.get("weights_sha256"):
        raise DataFormatError(
            f"{w_path} does not match the checksum recorded in {cfg_path}: the files come from "
            "different saves or the weights were modified. Save the mapping again."
        )
    tensors, _ = load_safetensors(w_path)
    missing = sorted((set(_ARRAYS) | {"alphas"}) - set(tensors))
    if missing:
        raise DataFormatError(f"{w_path} lacks the arrays {missing}; save the mapping again.")

    params = dict(config["params"])
    params["alphas"] = tensors["alphas"]
    # Files written before score_pooling existed averaged one score per fold.
    params.setdefault("score_pooling", "pooled" if params.get("cv") == "loo" else "fold-mean")
    if isinstance(params.get("cv"), str) and params["cv"] != "loo":
        params["cv"] = 5
    model = RidgeMapping(**params)
    for key, attr in _ARRAYS.items():
        setattr(model, attr, tensors[key])
    for attr, value in config["fitted"].items():
        setattr(model, attr, value)
    if config.get("diagnostics") is not None:
        model.diagnostics_ = FitDiagnostics.from_dict(config["diagnostics"])
    n_sel, n_targets = model.coef_.shape
    shapes_ok = (
        model.voxel_indices_.shape == (n_sel,)
        and model.x_mean_.shape == model.x_scale_.shape == (n_sel,)
        and model.y_mean_.shape == model.y_scale_.shape == (n_targets,)
        and (n_sel == 0 or int(model.voxel_indices_.max()) < model.n_features_in_)
    )
    if not shapes_ok:
        raise DataFormatError(
            f"{w_path} holds arrays of inconsistent shapes; save the mapping again."
        )
    return model
