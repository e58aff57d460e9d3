"""What every dataset's fixture writer shares: stimulus pictures, and voxel responses
that carry a planted signal or none.

Each dataset module writes small folders in its exact release format
(:func:`fmri2image.data.deeprecon.write_deeprecon_fixture`,
:func:`fmri2image.data.things.write_things_fixture`,
:func:`fmri2image.data.nsd.write_nsd_fixture`); they take the pictures and a
:data:`Respond` function from here, so the same pictures and the same brain can be
written in every layout (GOD's too, :func:`fmri2image.data.layout.write_god_subject`)
and a test can check that no loader loses signal or leaks test data::

    pics = fixture_pictures(n_categories=12, per_category=6, seed=0)
    respond = planted_response(n_voxels=90, seed=1, noise=0.5)
    voxels = respond(pics.images[rows], rng)          # (len(rows), 90)

The planted response reads a picture's coarse colour layout (a fixed random linear
map of its 4 × 4 mean colours), as early visual cortex would; :func:`noise_response`
reads nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "FixturePictures",
    "Respond",
    "fixture_pictures",
    "noise_response",
    "planted_response",
    "split_voxels",
]

#: ``respond(images, rng) -> voxels``: images (n, H, W, 3) uint8 → (n, n_voxels) float.
Respond = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class FixturePictures:
    """Pictures grouped in categories.

    Attributes
    ----------
    images : ndarray of shape (n, size, size, 3), uint8
    categories : ndarray of shape (n,), int64
        The category (0-based) of each picture; pictures of a category share a
        colour scheme.
    """

    images: np.ndarray
    categories: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, rows: np.ndarray | list[int]) -> FixturePictures:
        rows = np.asarray(rows, dtype=np.int64)
        return FixturePictures(self.images[rows], self.categories[rows])


def fixture_pictures(
    n_categories: int, per_category: int, *, size: int = 32, seed: int = 0
) -> FixturePictures:
    """``n_categories × per_category`` pictures: coloured blobs on a grey ground, a
    colour scheme per category, a layout per picture (so pictures of a category
    differ, and early visual responses tell them apart)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, cats = [], []
    for c in range(n_categories):
        palette = rng.integers(20, 236, (3, 3))
        for _ in range(per_category):
            img = np.full((size, size, 3), 128.0)
            for colour in palette:
                cy, cx = rng.uniform(0.15, 0.85, 2)
                r = rng.uniform(0.12, 0.3)
                blob = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
                img[blob] = colour
            img += rng.normal(0, 6, img.shape)
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            cats.append(c)
    return FixturePictures(np.stack(images), np.asarray(cats, dtype=np.int64))


def _layout(images: np.ndarray, grid: int = 4) -> np.ndarray:
    """Each picture's ``grid × grid`` mean colours, flattened, in [0, 1]."""
    n, h, w, _ = images.shape
    x = images[:, : h - h % grid, : w - w % grid].astype(np.float64) / 255.0
    x = x.reshape(n, grid, x.shape[1] // grid, grid, x.shape[2] // grid, 3).mean(axis=(2, 4))
    return x.reshape(n, -1)


def planted_response(n_voxels: int, *, seed: int = 0, noise: float = 0.5) -> Respond:
    """Voxels = a fixed random linear read-out of the colour layout (unit variance
    over pictures, roughly) + Gaussian noise of standard deviation ``noise`` per trial."""
    weights = np.random.default_rng(seed).normal(size=(48, n_voxels)) / np.sqrt(48 * 0.05)

    def respond(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = _layout(np.asarray(images))
        signal = (x - 0.5) @ weights
        return signal + rng.normal(0.0, noise, signal.shape)

    return respond


def noise_response(n_voxels: int) -> Respond:
    """Voxels that read nothing of the picture: unit Gaussian noise."""

    def respond(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, 1.0, (len(images), n_voxels))

    return respond


def split_voxels(n_voxels: int, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Boolean masks that share ``n_voxels`` among ``names`` in contiguous, nearly equal
    parts (every voxel in exactly one)."""
    edges = np.linspace(0, n_voxels, len(names) + 1).round().astype(int)
    masks = {}
    for name, lo, hi in zip(names, edges[:-1], edges[1:]):
        m = np.zeros(n_voxels, dtype=bool)
        m[lo:hi] = True
        masks[name] = m
    return masks
