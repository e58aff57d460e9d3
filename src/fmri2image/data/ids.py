"""GOD stimulus-id encoding.

A GOD ``stimulus_id`` is a float whose integer part is the WordNet noun offset of
the image's category and whose fractional part times 10**6 is the ImageNet image
number::

    1518878.005958  ->  synset "n01518878", image "n01518878_5958"

Everything here goes through the exact integer key ``round(id * 1e6)``, never
through string formatting of the float: ``str(1621127.01902)`` is
``"1621127.01902"``, and parsing its digits yields image 1902 instead of 19020.
Compare ids as keys (:func:`stimulus_id_key`), not as raw floats.
"""

from __future__ import annotations

import re

import numpy as np

from fmri2image.errors import DataFormatError

__all__ = [
    "category_of",
    "image_name_to_stimulus_id",
    "image_names_to_stimulus_ids",
    "stimulus_id_key",
    "stimulus_id_keys",
    "stimulus_id_to_image_name",
    "stimulus_id_to_wnid",
    "stimulus_ids_to_categories",
    "stimulus_ids_to_image_names",
    "stimulus_ids_to_wnids",
    "wnid_to_category",
]

_SCALE = 1_000_000
# float64 ids of GOD's magnitude (~1e6) are exact to ~2e-10, i.e. 2e-4 key units.
# A key further than this from an integer means the id lost precision (float32).
_KEY_TOLERANCE = 1e-2
_IMAGE_NAME = re.compile(r"^n(\d{8})_(\d{1,6})(?:\.[A-Za-z]+)?$")


def stimulus_id_keys(ids: np.ndarray | list[float]) -> np.ndarray:
    """Exact integer keys ``round(id * 1e6)`` of stimulus ids.

    Parameters
    ----------
    ids : array-like of float, shape (n,)
        GOD stimulus ids (float64).

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    DataFormatError
        If an id is NaN, negative, or not a multiple of 1e-6 (e.g. it was stored
        as float32, which cannot represent GOD ids).
    """
    arr = np.asarray(ids)
    if arr.dtype == np.float32:
        raise DataFormatError(
            "Stimulus ids were given as float32, which cannot hold GOD ids "
            "(1518878.005958 needs ~13 significant digits). Keep them as float64 "
            "from the file on."
        )
    arr = np.asarray(arr, dtype=np.float64)
    scaled = arr * _SCALE
    bad = ~np.isfinite(scaled) | (scaled < 0)
    if bad.any():
        first = arr[bad].ravel()[0]
        raise DataFormatError(
            f"{int(bad.sum())} stimulus id(s) are NaN or negative (first: {first!r}). "
            "Only samples with a stimulus (DataType 1, 2 or 3) carry valid ids; filter "
            "rest/fixation samples before converting ids."
        )
    keys = np.rint(scaled)
    off = np.abs(scaled - keys) > _KEY_TOLERANCE
    if off.any():
        first = arr[off].ravel()[0]
        raise DataFormatError(
            f"{int(off.sum())} stimulus id(s) are not GOD ids (category + image/1e6), "
            f"e.g. {first!r}: the fractional part has more than 6 decimals. The ids were "
            "probably rounded through float32 or text with too few digits; read them "
            "as float64 from the BData file."
        )
    return keys.astype(np.int64)


def stimulus_id_key(stimulus_id: float) -> int:
    """Exact integer key ``round(id * 1e6)`` of one stimulus id.

    >>> stimulus_id_key(1621127.01902)
    1621127019020
    """
    return int(stimulus_id_keys(np.array([stimulus_id], dtype=np.float64))[0])


def _wnid(category: int) -> str:
    return f"n{int(category):08d}"


def stimulus_ids_to_categories(ids: np.ndarray | list[float]) -> np.ndarray:
    """Category (WordNet offset, ``int(id)``) of each id, int64 of shape (n,)."""
    return stimulus_id_keys(ids) // _SCALE


def category_of(stimulus_id: float) -> int:
    """Category (WordNet noun offset) of one stimulus id."""
    return stimulus_id_key(stimulus_id) // _SCALE


def stimulus_ids_to_wnids(ids: np.ndarray | list[float]) -> np.ndarray:
    """WordNet ids (``"n01518878"``) of stimulus ids, object array of shape (n,)."""
    cats = stimulus_ids_to_categories(ids)
    return np.array([_wnid(c) for c in cats.ravel()], dtype=object).reshape(cats.shape)


def stimulus_id_to_wnid(stimulus_id: float) -> str:
    """WordNet id of a stimulus id.

    >>> stimulus_id_to_wnid(1518878.005958)
    'n01518878'
    """
    return _wnid(category_of(stimulus_id))


def stimulus_ids_to_image_names(ids: np.ndarray | list[float]) -> np.ndarray:
    """ImageNet image names (``"n01518878_5958"``), object array of shape (n,)."""
    keys = stimulus_id_keys(ids)
    names = [f"{_wnid(k // _SCALE)}_{k % _SCALE}" for k in keys.ravel().tolist()]
    return np.array(names, dtype=object).reshape(keys.shape)


def stimulus_id_to_image_name(stimulus_id: float) -> str:
    """ImageNet image name of a stimulus id (no file extension).

    >>> stimulus_id_to_image_name(1621127.01902)
    'n01621127_19020'
    """
    key = stimulus_id_key(stimulus_id)
    return f"{_wnid(key // _SCALE)}_{key % _SCALE}"


def _name_key(name: str) -> int:
    m = _IMAGE_NAME.match(str(name).strip().strip("\"'"))
    if m is None:
        raise DataFormatError(
            f"{name!r} is not an ImageNet image name like 'n01518878_5958' (optionally "
            "with an extension such as '.JPEG'). Check the id file's second column."
        )
    return int(m.group(1)) * _SCALE + int(m.group(2))


def image_name_to_stimulus_id(name: str) -> float:
    """Stimulus id of an ImageNet image name or file name.

    >>> image_name_to_stimulus_id("n01621127_19020.JPEG")
    1621127.01902
    """
    return _name_key(name) / _SCALE


def image_names_to_stimulus_ids(names: list[str] | np.ndarray) -> np.ndarray:
    """Stimulus ids of image names, float64 of shape (n,)."""
    return np.array([_name_key(n) for n in names], dtype=np.int64) / _SCALE


def wnid_to_category(wnid: str) -> int:
    """WordNet offset of a wnid: ``"n01518878"`` -> 1518878."""
    if not re.fullmatch(r"n\d{8}", wnid):
        raise DataFormatError(f"{wnid!r} is not a WordNet noun id like 'n01518878'.")
    return int(wnid[1:])
