"""Demo images: random crops of catalogue regions, as JPEG bytes.

An image of a category is one random view of one of its regions: a crop of
15–100 % (:data:`MIN_AREA`) of the largest crop with aspect in [3/4, 4/3] that fits
the region (the aspect itself jittered by up to ±20 %; at least 32 px a side), a
horizontal flip with probability 1/2, and brightness / contrast / saturation factors
in [0.8, 1.25]; resized to ``image_size`` pixels on the longer side (bicubic) and
saved as JPEG (quality 90).  Crops are this varied so that the 8 training images of
a category are not near-duplicates (see ``docs/demo-dataset.md``).

Randomness is per category and purpose (stimuli, database), drawn from
``SeedSequence([seed, purpose, offset])``, so a category's images do not change
when other categories are added or removed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmri2image.demo.catalogue import DemoCategory, PhotoRegion, PhotoRoots, find_photo
from fmri2image.errors import DataFormatError, MissingImageError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = ["DemoImage", "PhotoCache", "category_rng", "decode", "render_images"]

JPEG_QUALITY = 90
#: Smallest crop area, as a share of the largest crop that fits the region.
MIN_AREA = 0.15
#: Purposes of the per-category random streams.
STIMULI, DATABASE = 0, 1
#: ImageNet-style image numbers are drawn from this range.
_NUMBERS = (1000, 100_000)


@dataclass(frozen=True)
class DemoImage:
    """One rendered image.

    Attributes
    ----------
    wnid : str
        Category.
    number : int
        ImageNet-style image number (the file is ``<wnid>_<number>.JPEG``).
    source : str
        ``package:file`` of the photo it was cut from.
    jpeg : bytes
        The encoded image.
    """

    wnid: str
    number: int
    source: str
    jpeg: bytes

    @property
    def name(self) -> str:
        return f"{self.wnid}_{self.number}"


def category_rng(seed: int, purpose: int, wnid: str) -> np.random.Generator:
    """The random stream of one category for one purpose (stimuli or database)."""
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, int(wnid[1:])]))


class PhotoCache:
    """Decoded photos (RGB) by path, each read once."""

    def __init__(self, photo_roots: PhotoRoots | None = None) -> None:
        self.photo_roots = photo_roots
        self._photos: dict[Path, Image.Image] = {}

    def path(self, region: PhotoRegion) -> Path:
        path = find_photo(region, self.photo_roots)
        if path is None:
            raise MissingImageError(
                f"The photo {region.source} is not installed. Install the package that "
                f"ships it, or leave its category out (available_categories() lists what "
                "this machine has)."
            )
        return path

    def region(self, region: PhotoRegion) -> tuple[Image.Image, tuple[int, int, int, int]]:
        """The decoded photo and the region's box, checked against its size."""
        from PIL import Image as PILImage

        path = self.path(region)
        if path not in self._photos:
            with PILImage.open(path) as im:
                self._photos[path] = im.convert("RGB")
        photo = self._photos[path]
        w, h = photo.size
        box = region.box or (0, 0, w, h)
        left, top, right, bottom = box
        if not (0 <= left < right <= w and 0 <= top < bottom <= h):
            raise DataFormatError(
                f"{path} is {w}x{h} pixels, but the demo catalogue cuts the box {box} "
                f"from it ({region.source}). The installed photo differs from the one the "
                "catalogue was made for; remove or update its catalogue entry."
            )
        return photo, box


def _augment(
    photo: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator, size: int
) -> Image.Image:
    """One random crop / flip / colour jitter of ``box``; longer side ``size``."""
    from PIL import Image as PILImage
    from PIL import ImageEnhance

    left, top, right, bottom = box
    w, h = right - left, bottom - top
    aspect = float(np.clip(w / h * np.exp(rng.uniform(-0.2, 0.2)), 0.75, 4 / 3))
    # Largest crop of this aspect inside the region, then 40-100 % of its area.
    cw, ch = (w, w / aspect) if w / aspect <= h else (h * aspect, h)
    scale = np.sqrt(rng.uniform(MIN_AREA, 1.0))
    cw, ch = max(32.0, cw * scale), max(32.0, ch * scale)
    x0 = left + rng.uniform(0, max(w - cw, 0))
    y0 = top + rng.uniform(0, max(h - ch, 0))
    crop = photo.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch)))
    out_w, out_h = (size, round(size * ch / cw)) if cw >= ch else (round(size * cw / ch), size)
    img = crop.resize((out_w, out_h), PILImage.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(np.exp(rng.uniform(-0.22, 0.22))))
    return img


def render_images(
    category: DemoCategory,
    n: int,
    rng: np.random.Generator,
    *,
    image_size: int,
    photos: PhotoCache,
    exclude_numbers: Sequence[int] = (),
) -> list[DemoImage]:
    """``n`` random views of a category, sorted by image number.

    Views cycle through the category's regions (in a random order), so a category
    with several photos shows each about equally often.

    Parameters
    ----------
    category : DemoCategory
        With only installed regions (:func:`~fmri2image.demo.available_categories`).
    n : int
        Number of images.
    rng : numpy.random.Generator
        The category's stream (:func:`category_rng`).
    image_size : int
        Longer side in pixels.
    photos : PhotoCache
    exclude_numbers : sequence of int
        Image numbers already taken by this category (e.g. its stimuli).

    Returns
    -------
    list of DemoImage
    """
    taken = np.asarray(sorted(set(exclude_numbers)), dtype=np.int64)
    pool = np.setdiff1d(np.arange(*_NUMBERS), taken, assume_unique=True)
    numbers = np.sort(rng.choice(pool, size=n, replace=False))
    order = rng.permutation(len(category.regions))
    out = []
    for k, number in enumerate(numbers):
        region = category.regions[order[k % len(order)]]
        photo, box = photos.region(region)
        img = _augment(photo, box, rng, image_size)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=JPEG_QUALITY)
        out.append(DemoImage(category.wnid, int(number), region.source, buf.getvalue()))
    return out


def decode(jpeg: bytes) -> Image.Image:
    """Decode JPEG bytes to an RGB image (what a loader of the files sees)."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(jpeg)) as im:
        return im.convert("RGB")
