"""Embed a small in-memory collection of images with one encoder.

For image databases (thousands to millions of files, shards, resumable runs,
several encoders per decode) use the extraction engine in
:mod:`fmri2image.features.extract` instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fmri2image._io import tqdm_kwargs
from fmri2image.errors import ConfigError, DataFormatError, MissingImageError
from fmri2image.features.base import Encoder

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["embed_images", "load_rgb"]


def load_rgb(image: Image.Image | str | os.PathLike[str]) -> Image.Image:
    """Return ``image`` as an RGB PIL image, opening it first if it is a path.

    Raises
    ------
    MissingImageError
        The path does not exist.
    DataFormatError
        The file is not an image PIL can decode.
    """
    from PIL import Image as PILImage

    from fmri2image.data.images import decode_errors, decode_image

    if isinstance(image, PILImage.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if not isinstance(image, str | os.PathLike):
        raise ConfigError(
            f"Expected a PIL image or a file path, got {type(image).__name__}. Convert "
            "arrays with PIL.Image.fromarray(array) first."
        )
    path = os.fspath(image)
    if not os.path.exists(path):
        raise MissingImageError(f"Image file not found: {path}. Check the path or the id list.")
    try:
        return decode_image(path, None)
    except decode_errors() as exc:
        raise DataFormatError(
            f"Cannot decode image {path} ({exc}). Replace or remove the corrupt file."
        ) from exc


def embed_images(
    encoder: Encoder,
    images: Sequence[Image.Image | str | os.PathLike[str]],
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Embed images with ``encoder`` (its own preprocessing), batch by batch.

    Parameters
    ----------
    encoder : Encoder
        From :func:`fmri2image.features.get_encoder`.
    images : sequence of PIL.Image or path
        Images in memory or files to open; converted to RGB.
    batch_size : int
        Images per forward pass.
    progress : bool
        Show a tqdm progress bar (also silenced by ``TQDM_DISABLE=1``).

    Returns
    -------
    ndarray of shape (n_images, encoder.dim), float32
        Row ``i`` embeds ``images[i]``.
    """
    import torch
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    images = list(images)
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    # Pass ``disable`` only to switch the bar off, so TQDM_DISABLE=1 still works.
    bar_kwargs = tqdm_kwargs(progress)
    bar = tqdm(starts, total=len(starts), desc=f"embed {encoder.name}", unit="batch", **bar_kwargs)
    for start in bar:
        chunk = images[start : start + batch_size]
        batch = torch.stack([encoder.preprocess(load_rgb(im)) for im in chunk])
        out[start : start + len(chunk)] = encoder.embed(batch).numpy()
    return out
