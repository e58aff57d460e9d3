"""Low-level image metrics of the field: PixCorr and SSIM (MindEye / Brain-Diffuser).

The protocol (FIELD.md §3), applied identically to ground truths and reconstructions:

1. convert to RGB and resize to ``425 × 425`` with PIL's ``Image.BILINEAR``
   (antialiased when shrinking, as MindEye); the aspect ratio is not kept;
2. scale to float64 in ``[0, 1]`` (divide by 255);
3. **PixCorr**: Pearson ``r`` between the two flattened ``425·425·3`` RGB pixel vectors
   of one pair; the paper number is the mean over images;
4. **SSIM**: ``skimage.color.rgb2gray`` on each image, then
   ``skimage.metrics.structural_similarity(gray_pred, gray_true,
   gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)``;
   the paper number is the mean over images.

Argument order is ``(y_true, y_pred)`` everywhere (ground truth first).  Both metrics
are symmetric, so the order changes nothing but readability.

Why *true 2-D* SSIM.  The reference scripts call ``structural_similarity(...,
multichannel=True)`` on 2-D grayscale arrays.  scikit-image <= 0.19 took that to mean
"the last axis holds channels" and averaged 1-D SSIMs computed down each column; from
0.20 on the keyword is ignored and true 2-D SSIM results (about 0.05 lower on a test
pair).  Brain-Diffuser pinned scikit-image 0.17.2 (column-wise), MindEye 0.20.0 and
MindEye2 0.22.0 (2-D), so their SSIM columns are not like-for-like.  This module
always computes true 2-D SSIM and :func:`protocol_info` records it, together with the
installed scikit-image version, for the summary JSON.

Why PIL for resizing.  torchvision's tensor ``Resize`` switched antialiasing on by
default in 0.17 (MindEye2 pinned 0.16: off), so "bilinear" in the papers means
different pixels depending on the pinned version.  PIL's ``BILINEAR`` resize always
filters over the whole source footprint (antialiased), does not depend on torch, and
is what MindEye's PIL-based pipeline does.

Constant images.  Pearson ``r`` is undefined when either image of a pair is constant
(zero variance): :func:`pixcorr` returns ``nan`` for that pair rather than a made-up
0, so a blank (safety-filtered) reconstruction that slipped through is visible in the
mean.  Callers are expected to flag blank images before scoring
(:func:`fmri2image.evaluation.images.is_blank`).  SSIM stays defined for constant
images (its stabilising constants), so :func:`ssim` returns a finite value.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import package_versions, usable_cpus
from fmri2image.errors import DataFormatError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "PROTOCOL_SIZE",
    "SSIM_KWARGS",
    "pixcorr",
    "pixcorr_identification",
    "protocol_info",
    "protocol_pixels",
    "ssim",
]

PROTOCOL_SIZE = 425
"""Side, in pixels, of the square both images of a pair are resized to."""

SSIM_KWARGS: dict[str, Any] = {
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}
"""Keyword arguments of ``skimage.metrics.structural_similarity`` in the protocol."""

_BATCH = 16
"""Images converted to protocol pixels at a time (bounds memory: 16 × 4.3 MB per side)."""


def protocol_pixels(image: Image.Image, size: int = PROTOCOL_SIZE) -> np.ndarray:
    """One image as the protocol sees it.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode; converted to RGB first (grayscale replicated, alpha dropped).
    size : int
        Side of the square output (the protocol uses :data:`PROTOCOL_SIZE`).

    Returns
    -------
    numpy.ndarray of float64, shape (size, size, 3)
        Pixels in ``[0, 1]`` after a PIL ``Image.BILINEAR`` resize (antialiased when
        shrinking; the aspect ratio is not kept).
    """
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise DataFormatError(
            f"expected a PIL image, got {type(image).__name__}; decode files with "
            "fmri2image.data.images.decode_image or pass an array of protocol pixels."
        )
    if int(size) != size or size < 1:
        raise DataFormatError(f"size must be a positive integer, got {size!r}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    resized = rgb.resize((int(size), int(size)), resample=Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255.0


def pixcorr(
    y_true: Sequence[Image.Image] | np.ndarray, y_pred: Sequence[Image.Image] | np.ndarray
) -> np.ndarray:
    """PixCorr of each pair: Pearson ``r`` over the flattened RGB protocol pixels.

    Parameters
    ----------
    y_true, y_pred : sequence of PIL.Image.Image, or numpy.ndarray of shape (n, 425, 425, 3)
        Ground truths and reconstructions, pair ``i`` at position ``i`` of both.  PIL
        images are resized by the protocol (:func:`protocol_pixels`); an array must
        already hold protocol pixels (float in ``[0, 1]``).

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        ``r`` per pair, in ``[-1, 1]``; ``nan`` where either image is constant (Pearson
        ``r`` is undefined there; it is not replaced by 0).  The paper number is the
        mean over pairs.

    Raises
    ------
    DataFormatError
        If the lengths differ, or an array has the wrong shape, non-finite values or
        values outside ``[0, 1]``.
    """
    out = [_pearson_rows(t, p) for t, p in _protocol_batches(y_true, y_pred)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float64)


def pixcorr_identification(
    y_true: Sequence[Image.Image] | np.ndarray, y_pred: Sequence[Image.Image] | np.ndarray
) -> np.ndarray:
    """PixCorr 2-way identification of each reconstruction (chance 0.5).

    For reconstruction ``j``: the share of the other ground truths ``i`` whose PixCorr
    with it (Pearson ``r`` over the flattened RGB protocol pixels) is below that of its
    own ground truth, as MindEye's 2-way identification does with network features,
    here on the pixels themselves: can the layout and colour of a picture tell which
    image was seen?

    Parameters
    ----------
    y_true, y_pred : as in :func:`pixcorr` (at least two pairs)

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
    """
    from fmri2image.evaluation.identification import two_way_identification

    true, pred = [], []
    for t, p in _protocol_batches(y_true, y_pred):
        true.append(t.reshape(len(t), -1).astype(np.float32))
        pred.append(p.reshape(len(p), -1).astype(np.float32))
    return two_way_identification(np.concatenate(true), np.concatenate(pred))


def ssim(
    y_true: Sequence[Image.Image] | np.ndarray, y_pred: Sequence[Image.Image] | np.ndarray
) -> np.ndarray:
    """SSIM of each pair: true 2-D SSIM of the grayscale protocol pixels.

    ``skimage.color.rgb2gray`` on both images, then
    ``structural_similarity(gray_pred, gray_true, **SSIM_KWARGS)`` (Gaussian window,
    sigma 1.5, population covariance, data range 1), as in MindEye with scikit-image
    >= 0.20 (see the module docstring for the ``multichannel=True`` trap).

    Parameters
    ----------
    y_true, y_pred : sequence of PIL.Image.Image, or numpy.ndarray of shape (n, 425, 425, 3)
        As in :func:`pixcorr`.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        SSIM per pair (1 for identical images; finite for constant images too).

    Raises
    ------
    DataFormatError
        As in :func:`pixcorr`.
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    def one(pair: tuple[np.ndarray, np.ndarray]) -> float:
        true, pred = pair
        return structural_similarity(rgb2gray(pred), rgb2gray(true), **SSIM_KWARGS)

    # The pairs of a batch are scored on parallel threads (scipy.ndimage's filters
    # release the GIL); each score is computed exactly as on its own.
    scores: list[float] = []
    with ThreadPoolExecutor(_threads(), thread_name_prefix="ssim") as pool:
        for t_batch, p_batch in _protocol_batches(y_true, y_pred):
            scores.extend(pool.map(one, zip(t_batch, p_batch, strict=True)))
    return np.asarray(scores, dtype=np.float64)


def _threads() -> int:
    """Threads for per-image work: the CPUs this process may use, at most 8."""
    return max(1, min(8, usable_cpus()))


def protocol_info() -> dict[str, Any]:
    """The low-level protocol and the library versions that computed it, JSON-ready.

    Returns
    -------
    dict
        ``size``, ``resize``, ``scale``, ``pixcorr``, ``ssim`` (with its keyword
        arguments and the note that it is true 2-D SSIM) and ``versions``
        (scikit-image, Pillow, numpy), for the evaluation summary.
    """
    return {
        "size": PROTOCOL_SIZE,
        "resize": (
            f"PIL Image.BILINEAR to {PROTOCOL_SIZE}x{PROTOCOL_SIZE} (antialiased when "
            "shrinking), aspect ratio not kept; RGB"
        ),
        "scale": "float64 in [0, 1] (uint8 / 255)",
        "pixcorr": "Pearson r over the flattened RGB pixels per image; nan for a constant image",
        "ssim": {
            "grayscale": "skimage.color.rgb2gray",
            "function": "skimage.metrics.structural_similarity(gray_pred, gray_true, ...)",
            "kwargs": dict(SSIM_KWARGS),
            "dimensions": (
                "true 2-D SSIM (as scikit-image >= 0.20; Brain-Diffuser's scikit-image "
                "0.17.2 with multichannel=True averaged column-wise 1-D SSIM, about 0.05 "
                "higher)"
            ),
        },
        "aggregate": "mean over images",
        "versions": {**package_versions(("scikit-image", "Pillow")), "numpy": np.__version__},
    }


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson ``r`` between row ``i`` of ``a`` and of ``b``, over all other axes.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (n, ...)
        Same shape.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        ``nan`` where a row of either is constant.
    """
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    constant = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", a, b)
    den = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[constant] = np.nan
    return np.clip(r, -1.0, 1.0)


def _protocol_batches(
    y_true: Sequence[Image.Image] | np.ndarray,
    y_pred: Sequence[Image.Image] | np.ndarray,
    batch: int = _BATCH,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Protocol pixels of both sides, ``batch`` pairs at a time.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray), each of shape (b, 425, 425, 3), float64 in [0, 1]
    """
    true = _checked_images(y_true, "y_true")
    pred = _checked_images(y_pred, "y_pred")
    if len(true) != len(pred):
        raise DataFormatError(
            f"y_true has {len(true)} images but y_pred has {len(pred)}; pair each "
            "reconstruction with its ground truth (fmri2image.evaluation.images.pair_images)."
        )
    for start in range(0, len(true), batch):
        stop = start + batch
        yield _batch_pixels(true[start:stop]), _batch_pixels(pred[start:stop])


def _checked_images(
    images: Sequence[Image.Image] | np.ndarray, name: str
) -> np.ndarray | list[Image.Image]:
    """``images`` validated: a protocol-pixel array, or a list of PIL images."""
    from PIL import Image

    if isinstance(images, np.ndarray):
        return _checked_array(images, name)
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise DataFormatError(
            f"{name} must be a sequence of PIL images or an array of shape "
            f"(n, {PROTOCOL_SIZE}, {PROTOCOL_SIZE}, 3); got {type(images).__name__}."
        )
    images = list(images)
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise DataFormatError(
                f"{name}[{i}] is a {type(im).__name__}, not a PIL image; pass either a "
                f"sequence of PIL images or one array of shape (n, {PROTOCOL_SIZE}, "
                f"{PROTOCOL_SIZE}, 3)."
            )
    return images


def _checked_array(array: np.ndarray, name: str) -> np.ndarray:
    """An array of protocol pixels, or a :class:`DataFormatError` saying what is wrong."""
    expected = (PROTOCOL_SIZE, PROTOCOL_SIZE, 3)
    if array.ndim != 4 or array.shape[1:] != expected:
        raise DataFormatError(
            f"{name} has shape {array.shape}; an array must already hold protocol pixels, "
            f"shape (n, {PROTOCOL_SIZE}, {PROTOCOL_SIZE}, 3). Pass PIL images to have them "
            "resized by the protocol, or build the array with protocol_pixels()."
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise DataFormatError(
            f"{name} has dtype {array.dtype}; protocol pixels are floats in [0, 1] "
            "(divide uint8 images by 255)."
        )
    # Two passes instead of three: min and max propagate NaN, which fails both
    # comparisons, and an infinity is outside [0, 1].
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if not (lo >= 0.0 and hi <= 1.0):
        if not np.isfinite(array).all():
            raise DataFormatError(f"{name} contains NaN or infinite values.")
        raise DataFormatError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]; scale it first "
            "(for images in [-1, 1]: (x + 1) / 2; for 0-255 values: x / 255)."
        )
    return array


def _batch_pixels(images: np.ndarray | list[Image.Image]) -> np.ndarray:
    """Protocol pixels of a slice of :func:`_checked_images`' result, float64."""
    if isinstance(images, np.ndarray):
        return images.astype(np.float64, copy=False)
    return np.stack([protocol_pixels(im) for im in images])
