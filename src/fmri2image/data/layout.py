"""Write folders with the layout of the GOD release (any voxels, any images).

The demo dataset (:mod:`fmri2image.demo`) is written with these functions, and so
can a test that plants its own responses (``voxels = features @ W + noise``) in
arbitrary images::

    root/Subject1.h5            write_god_subject   BData with GOD's keys
    root/training/<name>.JPEG   write_stimulus_set  stimulus images
    root/imageID_training.csv   write_id_file       "1518878.005958,n01518878_5958.JPEG"
    root/test/..., root/imageID_test.csv

Conventions are those of GOD's ``SubjectN.h5`` (see ``FIELD.md`` §1):
``VoxelData`` and ``ROI_*`` column selectors (``ROI_LVC`` = V1 ∪ V2 ∪ V3,
``ROI_HVC`` = LOC ∪ FFA ∪ PPA, ``ROI_VC`` = every ROI, added when missing),
per-voxel ``voxel_x/y/z``, and one column each for ``DataType`` (1 training,
2 test, 3 imagery), ``Run``, ``Block``, ``stimulus_id``, ``image_index`` (1-based
row in the split's id file, NaN for imagery) and ``category_index`` (1-based
index in the sorted category list of the split; imagery uses the test list).
Id files are header-less, sorted by stimulus id, with six-decimal ids.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image.errors import ConfigError

__all__ = [
    "GOD_ROI_UNIONS",
    "StimulusFiles",
    "god_sample_indices",
    "roi_masks_with_unions",
    "write_god_subject",
    "write_id_file",
    "write_stimulus_set",
]

#: Union ROIs of the GOD files and the sub-ROIs they join.
GOD_ROI_UNIONS: dict[str, tuple[str, ...]] = {
    "LVC": ("V1", "V2", "V3"),
    "HVC": ("LOC", "FFA", "PPA"),
}

_SPLITS = ("training", "test")


def _image_name(name: str) -> str:
    """``"n01518878_5958"`` from a name with or without an image extension."""
    stem = Path(str(name)).name
    for ext in (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG"):
        if stem.endswith(ext):
            return stem[: -len(ext)]
    return stem


def _sorted_names(names: Sequence[str]) -> list[str]:
    from fmri2image.data.ids import image_names_to_stimulus_ids, stimulus_id_keys
    from fmri2image.errors import DataFormatError

    stems = [_image_name(n) for n in names]
    try:
        keys = stimulus_id_keys(image_names_to_stimulus_ids(stems))
    except DataFormatError as exc:
        raise ConfigError(
            f"Stimulus images must be named like ImageNet images ('n01518878_5958'): {exc}"
        ) from exc
    if len(np.unique(keys)) != len(keys):
        raise ConfigError(
            "Two stimulus images have the same name (or the same stimulus id); give "
            "every image of a split its own '<wnid>_<number>' name."
        )
    return [stems[i] for i in np.argsort(keys, kind="stable")]


def write_id_file(path: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """Write a header-less GOD id file, sorted by stimulus id.

    Parameters
    ----------
    path : str or path-like
        Destination, e.g. ``root / "imageID_training.csv"``.
    names : sequence of str
        ImageNet image names (``"n01518878_5958"``, extension optional).

    Returns
    -------
    list of str
        The names (without extension) in file order; row ``i`` has
        ``image_index == i + 1``.

    Raises
    ------
    ConfigError
        A name is not ``<wnid>_<number>`` or two names share a stimulus id.
    """
    from fmri2image._io import atomic_write

    ordered = _sorted_names(names)
    with atomic_write(path, "w", encoding="ascii", newline="\n") as fh:
        for stem in ordered:
            wnid, _, number = stem.partition("_")
            fh.write(f"{int(wnid[1:])}.{int(number):06d},{stem}.JPEG\n")
    return ordered


@dataclass(frozen=True)
class StimulusFiles:
    """What :func:`write_stimulus_set` wrote for one split.

    Attributes
    ----------
    split : {"training", "test"}
    folder : pathlib.Path
        ``root/<split>/``.
    id_file : pathlib.Path
        ``root/imageID_<split>.csv``.
    names : tuple of str
        Image names in id-file order (sorted by stimulus id).
    """

    split: str
    folder: Path
    id_file: Path
    names: tuple[str, ...]


def _jpeg_bytes(image: Any, quality: int) -> bytes:
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            image = im.convert("RGB")
    elif isinstance(image, np.ndarray):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
            raise ConfigError(
                f"Stimulus arrays must be uint8 of shape (H, W) or (H, W, 3), got "
                f"{arr.dtype} {arr.shape}."
            )
        image = Image.fromarray(arr)
    if not isinstance(image, Image.Image):
        raise ConfigError(
            f"A stimulus image must be JPEG bytes, a PIL image, a uint8 array or a path; "
            f"got {type(image).__name__}."
        )
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_stimulus_set(
    root: str | os.PathLike,
    split: str,
    images: Mapping[str, Any],
    *,
    quality: int = 90,
) -> StimulusFiles:
    """Write a split's stimulus folder and id file, as in the GOD release.

    Parameters
    ----------
    root : str or path-like
        Dataset folder.
    split : {"training", "test"}
    images : mapping of str to image
        Image name (``"n01518878_5958"``) -> JPEG bytes (written verbatim), a PIL
        image, a uint8 array of shape (H, W, 3) or the path of an image file
        (others are encoded as JPEG with ``quality``).
    quality : int, default 90
        JPEG quality for images that are not JPEG bytes already.

    Returns
    -------
    StimulusFiles
    """
    from fmri2image._io import atomic_write

    if split not in _SPLITS:
        raise ConfigError(f"split must be 'training' or 'test', got {split!r}.")
    root = Path(root)
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    by_stem = {_image_name(k): v for k, v in images.items()}
    ordered = write_id_file(root / f"imageID_{split}.csv", list(by_stem))
    for stem in ordered:
        with atomic_write(folder / f"{stem}.JPEG", "wb") as fh:
            fh.write(_jpeg_bytes(by_stem[stem], quality))
    return StimulusFiles(split, folder, root / f"imageID_{split}.csv", tuple(ordered))


def god_sample_indices(
    stimulus_ids: np.ndarray, data_type: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GOD's ``image_index`` and ``category_index`` columns from the samples.

    Parameters
    ----------
    stimulus_ids : ndarray of shape (n_samples,)
        GOD stimulus ids (imagery: category ids such as ``1518878.0``).
    data_type : ndarray of shape (n_samples,)
        1 training, 2 test, 3 imagery.

    Returns
    -------
    image_index : ndarray of shape (n_samples,), float64
        1-based row of the image in its split's id file (the sorted unique ids of
        the split's samples); NaN for imagery.
    category_index : ndarray of shape (n_samples,), float64
        1-based index of the category in the sorted categories of the split
        (imagery: of the test split, or of the imagery samples when none is a test
        category).
    """
    from fmri2image.data.ids import stimulus_id_keys

    keys = stimulus_id_keys(np.asarray(stimulus_ids, dtype=np.float64))
    dt = np.asarray(data_type).astype(np.int64)
    cats = keys // 1_000_000
    image_index = np.full(len(keys), np.nan)
    category_index = np.full(len(keys), np.nan)
    split_cats: dict[int, np.ndarray] = {}
    for t in (1, 2):
        m = dt == t
        uniq = np.unique(keys[m])
        image_index[m] = np.searchsorted(uniq, keys[m]) + 1
        split_cats[t] = np.unique(cats[m])
        category_index[m] = np.searchsorted(split_cats[t], cats[m]) + 1
    m = dt == 3
    if m.any():
        ref = split_cats[2]
        if not np.isin(cats[m], ref).all():
            ref = np.unique(cats[m])
        category_index[m] = np.searchsorted(ref, cats[m]) + 1
    return image_index, category_index


def roi_masks_with_unions(
    rois: Mapping[str, np.ndarray | Sequence[bool]], n_voxels: int
) -> dict[str, np.ndarray]:
    """``ROI_*`` masks with GOD's unions added where missing.

    Parameters
    ----------
    rois : mapping of str to bool array of shape (n_voxels,)
        ROI name (``"V1"`` or ``"ROI_V1"``) -> membership.
    n_voxels : int

    Returns
    -------
    dict of str to ndarray of bool
        Keys ``ROI_<name>`` in input order, then ``ROI_LVC`` / ``ROI_HVC`` (when
        all their sub-ROIs are given) and ``ROI_VC`` (the union of all) if absent.
    """
    out: dict[str, np.ndarray] = {}
    for name, mask in rois.items():
        key = name if name.startswith("ROI_") else f"ROI_{name}"
        arr = np.asarray(mask)
        if arr.shape != (n_voxels,) or arr.dtype != bool:
            raise ConfigError(
                f"ROI {name!r} must be a boolean mask of shape ({n_voxels},), got "
                f"{arr.dtype} {arr.shape}."
            )
        out[key] = arr
    for union, parts in GOD_ROI_UNIONS.items():
        keys = [f"ROI_{p}" for p in parts]
        if f"ROI_{union}" not in out and all(k in out for k in keys):
            out[f"ROI_{union}"] = np.logical_or.reduce([out[k] for k in keys])
    if "ROI_VC" not in out and out:
        out["ROI_VC"] = np.logical_or.reduce(list(out.values()))
    return out


def _blocks(run: np.ndarray) -> np.ndarray:
    """1-based position of each sample within its run, in sample order."""
    block = np.empty(len(run))
    counts: dict[float, int] = {}
    for i, r in enumerate(run.tolist()):
        counts[r] = counts.get(r, 0) + 1
        block[i] = counts[r]
    return block


def write_god_subject(
    path: str | os.PathLike,
    voxels: np.ndarray,
    *,
    data_type: np.ndarray | Sequence[int],
    run: np.ndarray | Sequence[int],
    stimulus_id: np.ndarray | Sequence[float],
    rois: Mapping[str, np.ndarray | Sequence[bool]],
    block: np.ndarray | Sequence[int] | None = None,
    image_index: np.ndarray | None = None,
    category_index: np.ndarray | None = None,
    voxel_xyz: np.ndarray | None = None,
    header: Mapping[str, str] | None = None,
) -> Path:
    """Write one subject's BData file with the keys of GOD's ``SubjectN.h5``.

    Parameters
    ----------
    path : str or path-like
        Destination, e.g. ``root / "Subject1.h5"``.
    voxels : ndarray of shape (n_samples, n_voxels)
        Voxel responses, one row per sample.
    data_type, run : array-like of shape (n_samples,)
        ``DataType`` (1 training, 2 test, 3 imagery) and ``Run``.
    stimulus_id : array-like of shape (n_samples,)
        GOD stimulus ids (:func:`fmri2image.data.image_name_to_stimulus_id`);
        imagery samples carry the category id (``1518878.0``).
    rois : mapping of str to bool array of shape (n_voxels,)
        ROI memberships (``"V1"`` ... or ``"ROI_V1"`` ...); GOD's unions are
        added (:func:`roi_masks_with_unions`).
    block : array-like of shape (n_samples,), optional
        ``Block``; default: 1-based trial position within the run.
    image_index, category_index : ndarray of shape (n_samples,), optional
        Default: :func:`god_sample_indices` (consistent with id files written by
        :func:`write_id_file` from the same images).
    voxel_xyz : ndarray of shape (n_voxels, 3), optional
        Voxel coordinates in mm; default: distinct points of a 3 mm grid.
    header : mapping of str to str, optional
        Extra ``/header`` entries.

    Returns
    -------
    pathlib.Path
    """
    from fmri2image.data.bdata import BDataBuilder

    x = np.asarray(voxels, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"voxels must be 2-D (n_samples, n_voxels), got shape {x.shape}.")
    n_samples, n_voxels = x.shape
    columns: dict[str, np.ndarray] = {}
    for key, value in (("DataType", data_type), ("Run", run), ("stimulus_id", stimulus_id)):
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.shape != (n_samples,):
            raise ConfigError(
                f"{key} has {arr.size} values for {n_samples} samples; give one per row of voxels."
            )
        columns[key] = arr
    bad = ~np.isin(columns["DataType"], (1, 2, 3))
    if bad.any():
        raise ConfigError(
            f"DataType must be 1 (training), 2 (test) or 3 (imagery); got "
            f"{sorted(set(columns['DataType'][bad].tolist()))[:5]}."
        )
    if image_index is None or category_index is None:
        ii, ci = god_sample_indices(columns["stimulus_id"], columns["DataType"])
        image_index = ii if image_index is None else image_index
        category_index = ci if category_index is None else category_index
    block_arr = _blocks(columns["Run"]) if block is None else np.asarray(block, np.float64)
    masks = roi_masks_with_unions(rois, n_voxels)
    if voxel_xyz is None:
        i = np.arange(n_voxels)
        voxel_xyz = 3.0 * np.stack([i % 32, (i // 32) % 32, i // 1024], axis=1)
    xyz = np.asarray(voxel_xyz, dtype=np.float64)
    if xyz.shape != (n_voxels, 3):
        raise ConfigError(f"voxel_xyz must have shape ({n_voxels}, 3), got {xyz.shape}.")

    b = BDataBuilder()
    b.add(x, "VoxelData")
    b.add_metadata("VoxelData", np.ones(n_voxels), "1 = voxel data", where="VoxelData")
    for key, mask in masks.items():
        roi = key[4:]
        parts = GOD_ROI_UNIONS.get(roi)
        what = f"ROI {roi} voxel" + (f" ({' + '.join(parts)})" if parts else "")
        b.add_metadata(key, np.where(mask, 1.0, np.nan), f"1 = {what}", where="VoxelData")
    for axis, col in zip("xyz", xyz.T):
        b.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate (mm)", where="VoxelData")
    described = (
        ("DataType", columns["DataType"], "1 = training, 2 = test, 3 = imagery"),
        ("Run", columns["Run"], "Run number"),
        ("Block", block_arr, "Trial position within the run (1-based)"),
        (
            "stimulus_id",
            columns["stimulus_id"],
            "ImageNet stimulus id (category.image; imagery: category)",
        ),
        (
            "image_index",
            np.asarray(image_index, np.float64),
            "1-based row in imageID_<split>.csv (NaN for imagery)",
        ),
        (
            "category_index",
            np.asarray(category_index, np.float64),
            "1-based category index within the split",
        ),
    )
    for key, values, desc in described:
        if values.shape != (n_samples,):
            raise ConfigError(f"{key} must have shape ({n_samples},), got {values.shape}.")
        b.add(values, key)
        b.add_metadata(key, np.ones(1), f"1 = {key}: {desc}", where=key)
    return b.write(path, header=header)
