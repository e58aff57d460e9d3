"""The demo's labelled image database: ImageNet-style wnid folders.

``<out>/database/<wnid>/<wnid>_<n>.JPEG`` holds ``images_per_category`` other
crops (separate random draws, image numbers distinct from the stimuli's) of every
available category: the training and test categories (ImageNet contains GOD's
categories too) and the catalogue categories that are not stimuli (distractors).
:func:`fmri2image.features.scan_image_folder` reads it with ``layout="wnid"``,
so it can serve as a retrieval database like an ImageNet folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fmri2image._io import tqdm_kwargs
from fmri2image.demo.catalogue import DemoCategory
from fmri2image.demo.stimuli import DATABASE, PhotoCache, category_rng, render_images

__all__ = ["DATABASE_DIR", "DatabaseInfo", "write_image_database"]

#: Folder of the database inside the demo dataset.
DATABASE_DIR = "database"


@dataclass(frozen=True)
class DatabaseInfo:
    """What :func:`write_image_database` wrote.

    Attributes
    ----------
    root : pathlib.Path
        The database folder (holds one folder per wnid).
    wnids : tuple of str
        Class folders, sorted.
    n_images : int
        Images over all classes.
    """

    root: Path
    wnids: tuple[str, ...]
    n_images: int

    @property
    def n_classes(self) -> int:
        return len(self.wnids)


def write_image_database(
    root: str | Path,
    categories: Sequence[DemoCategory],
    images_per_category: int,
    *,
    seed: int,
    image_size: int,
    photos: PhotoCache,
    exclude_numbers: Mapping[str, Sequence[int]] | None = None,
    progress: bool = True,
) -> DatabaseInfo:
    """Write ``images_per_category`` crops of every category into wnid folders.

    Parameters
    ----------
    root : path
        Database folder (created).
    categories : sequence of DemoCategory
        Installed categories (training, test and distractors).
    images_per_category : int
        At least 1.
    seed : int
        Dataset seed; each category draws from its own database stream.
    image_size : int
        Longer side in pixels.
    photos : PhotoCache
    exclude_numbers : mapping of str to sequence of int, optional
        Image numbers per wnid already used by stimuli.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DatabaseInfo
    """
    from tqdm.auto import tqdm

    from fmri2image._io import atomic_write

    root = Path(root)
    exclude_numbers = exclude_numbers or {}
    n = 0
    for cat in tqdm(categories, desc="image database", unit="class", **tqdm_kwargs(progress)):
        folder = root / cat.wnid
        folder.mkdir(parents=True, exist_ok=True)
        images = render_images(
            cat,
            images_per_category,
            category_rng(seed, DATABASE, cat.wnid),
            image_size=image_size,
            photos=photos,
            exclude_numbers=exclude_numbers.get(cat.wnid, ()),
        )
        for img in images:
            with atomic_write(folder / f"{img.name}.JPEG", "wb") as fh:
                fh.write(img.jpeg)
        n += len(images)
    return DatabaseInfo(root, tuple(sorted(c.wnid for c in categories)), n)
