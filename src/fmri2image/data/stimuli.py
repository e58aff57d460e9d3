"""GOD stimulus images: id files, image paths and loading.

The stimulus images are not public (ImageNet licence); the authors share them on
request as::

    <root>/training/n01518878_10042.JPEG ...      (1200 images)
    <root>/test/n01443537_22563.JPEG ...          (50 images)
    <root>/imageID_training.csv                   (or image_training_id.csv)
    <root>/imageID_test.csv                       (or image_test_id.csv)

Id files have no header; each row is ``stimulus_id,file_name`` (the file name may
be quoted), e.g. ``1518878.010042,n01518878_10042.JPEG``.  ``<root>`` is the GOD
folder itself or its ``images/`` or ``stimuli/`` subfolder.

Dataset paths stay inside the dataset: a listed file name must be a bare file name
(no ``/`` or ``\\``, no drive, not ``.`` or ``..``), so it always names an entry of
``<root>/training`` or ``<root>/test``; anything else is a :class:`DataFormatError`
raised while reading the id file, before any image is looked at.  Symbolic links
are followed: a bare name that is a link to an image elsewhere (or a
``training/`` folder that is itself a link) is allowed, because pointing a dataset
at images stored on another disk is a deliberate choice of whoever made the link,
whereas a name in an id file is data that may come from anywhere.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Literal

import numpy as np

from fmri2image._io import tqdm_kwargs
from fmri2image.data.bdata import MissingDataFileError
from fmri2image.data.ids import (
    image_name_to_stimulus_id,
    stimulus_id_keys,
    stimulus_ids_to_image_names,
    stimulus_ids_to_wnids,
)
from fmri2image.errors import ConfigError, DataFormatError, MissingImageError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "ID_FILE_NAMES",
    "IMAGE_EXTENSIONS",
    "STIMULUS_SUBDIRS",
    "StimulusSet",
    "check_stimulus_ids",
    "find_stimulus_root",
    "load_images",
    "load_stimuli",
    "load_stimulus_set",
    "read_id_file",
]

Split = Literal["training", "test"]

#: Id-file names per split, in lookup order (both releases' spellings).
ID_FILE_NAMES: dict[str, tuple[str, ...]] = {
    "training": ("imageID_training.csv", "image_training_id.csv"),
    "test": ("imageID_test.csv", "image_test_id.csv"),
}
#: Extensions tried when the file named in the id file is absent, in order.
IMAGE_EXTENSIONS = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG")
#: Folders (relative to the GOD folder) searched for id files and image folders.
STIMULUS_SUBDIRS = (".", "images", "stimuli")


#: Most offending names quoted in one error message.
_MAX_LISTED = 5


def _is_bare_name(name: str) -> bool:
    """Whether ``name`` is a plain file name that cannot leave the folder it is joined to."""
    return not (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.sep in name
        or (os.altsep is not None and os.altsep in name)
        or bool(PureWindowsPath(name).drive)  # "C:x.JPEG" is relative to a drive
    )


def _check_bare_names(path: Path, names: Sequence[str | None], linenos: Sequence[int]) -> None:
    """Raise one :class:`DataFormatError` listing every listed name that is not bare."""
    bad = [(ln, n) for ln, n in zip(linenos, names) if n is not None and not _is_bare_name(n)]
    if not bad:
        return
    root = path.parent
    split = next((s for s, files in ID_FILE_NAMES.items() if path.name in files), None)
    shown = "; ".join(f"line {ln}: {n!r}" for ln, n in bad[:_MAX_LISTED])
    more = f" (and {len(bad) - _MAX_LISTED} more)" if len(bad) > _MAX_LISTED else ""
    here = f" (this id file's images belong in {root / split})" if split else ""
    raise DataFormatError(
        f"{path} names {len(bad)} stimulus image(s) that are not bare file names and "
        f"could point outside the dataset: {shown}{more}. Image names in a GOD id file "
        "must be bare file names like 'n01518878_10042.JPEG', with no folder part, "
        f"'..' or absolute path, of images inside {root / 'training'} or "
        f"{root / 'test'}{here}. Fix those rows to keep only the file name, and put the "
        "images in that folder (a symbolic link there is fine)."
    )


def read_id_file(path: str | os.PathLike) -> tuple[np.ndarray, tuple[str, ...]]:
    """Read a header-less GOD id file.

    Parameters
    ----------
    path : str or path-like
        CSV with rows ``stimulus_id,file_name`` (file name optional, may be quoted).

    Returns
    -------
    ids : ndarray of shape (n_images,), float64
        Stimulus ids in file order.
    names : tuple of str
        File names as listed (``"n01518878_10042.JPEG"``); derived from the id
        (without extension) when the file has one column.

    Raises
    ------
    MissingDataFileError
        The file does not exist.
    DataFormatError
        A row cannot be parsed, a file name is not a bare file name (it has a folder
        part, ``..`` or is absolute; every such row is listed), an id disagrees with
        its file name, or ids repeat.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(f"Stimulus id file {path} does not exist.")
    ids: list[float] = []
    names: list[str | None] = []
    linenos: list[int] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in enumerate(csv.reader(fh, skipinitialspace=True), start=1):
            row = [c.strip().strip("\"'") for c in row if c.strip()]
            if not row:
                continue
            try:
                sid = float(row[0])
            except ValueError:
                if lineno == 1 and not ids:  # tolerate a header line
                    continue
                raise DataFormatError(
                    f"{path}, line {lineno}: {row[0]!r} is not a stimulus id. Rows must "
                    "look like '1518878.010042,n01518878_10042.JPEG'."
                ) from None
            ids.append(sid)
            names.append(row[1] if len(row) > 1 else None)
            linenos.append(lineno)
    if not ids:
        raise DataFormatError(f"Stimulus id file {path} has no rows.")
    _check_bare_names(path, names, linenos)
    id_arr = np.asarray(ids, dtype=np.float64)
    keys = stimulus_id_keys(id_arr)
    derived = stimulus_ids_to_image_names(id_arr)
    out_names = []
    for i, (name, sid) in enumerate(zip(names, ids)):
        if name is None:
            out_names.append(str(derived[i]))
            continue
        if stimulus_id_keys([image_name_to_stimulus_id(Path(name).name)])[0] != keys[i]:
            raise DataFormatError(
                f"{path}: stimulus id {sid!r} does not match its file name {name!r} (the id "
                f"encodes {derived[i]}). The id file is inconsistent; get a fresh copy."
            )
        out_names.append(name)
    uniq, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        dup = stimulus_ids_to_image_names(uniq[counts > 1][:3] / 1e6)
        raise DataFormatError(
            f"{path} lists {int((counts > 1).sum())} stimulus id(s) more than once "
            f"(e.g. {', '.join(dup)}). Each image must appear once."
        )
    return id_arr, tuple(out_names)


def find_stimulus_root(god_dir: str | os.PathLike, split: Split) -> tuple[Path, Path]:
    """Find the id file of ``split`` under ``god_dir``.

    Returns
    -------
    root : pathlib.Path
        Folder holding the id file (and the ``training/`` / ``test/`` folders).
    id_file : pathlib.Path

    Raises
    ------
    MissingDataFileError
        No id file found; the message lists every path tried.
    """
    if split not in ID_FILE_NAMES:
        raise ConfigError(f"split must be 'training' or 'test', got {split!r}.")
    god_dir = Path(god_dir)
    tried = []
    for sub in STIMULUS_SUBDIRS:
        root = (god_dir / sub) if sub != "." else god_dir
        for name in ID_FILE_NAMES[split]:
            cand = root / name
            tried.append(str(cand))
            if cand.is_file():
                return root, cand
    raise MissingDataFileError(
        f"No {split} stimulus id file found; looked for {', '.join(tried)}. The GOD "
        "stimulus images and id files are not public: request them from the dataset "
        "authors and put the id files and the training/ and test/ folders there."
    )


@dataclass(frozen=True, eq=False)
class StimulusSet:
    """The stimulus images of one GOD split.

    Attributes
    ----------
    split : {"training", "test"}
    ids : ndarray of shape (n_images,), float64
        Stimulus ids in id-file order.
    image_names : tuple of str
        ImageNet image names without extension (``"n01518878_10042"``).
    paths : tuple of (pathlib.Path or None)
        Image file per id; ``None`` where it is missing (only possible with
        ``allow_missing=True``).
    wnids : tuple of str
        WordNet id per image.
    id_file : pathlib.Path
    image_dir : pathlib.Path
    missing : tuple of str
        Expected paths of images not found on disk.
    """

    split: str
    ids: np.ndarray
    image_names: tuple[str, ...]
    paths: tuple[Path | None, ...]
    wnids: tuple[str, ...]
    id_file: Path
    image_dir: Path
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.ids.setflags(write=False)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return (
            f"StimulusSet(split={self.split!r}, n_images={len(self)}, "
            f"n_missing={len(self.missing)}, image_dir={str(self.image_dir)!r})"
        )

    @property
    def keys(self) -> np.ndarray:
        """Exact integer keys of :attr:`ids`, int64 of shape (n_images,)."""
        return stimulus_id_keys(self.ids)

    def index_of(self, stimulus_ids: np.ndarray | Sequence[float]) -> np.ndarray:
        """Row of each stimulus id in this set, int64 of shape (n,).

        Raises
        ------
        DataFormatError
            If an id is not in the set (see :func:`check_stimulus_ids`).
        """
        check_stimulus_ids(stimulus_ids, self)
        keys = self.keys
        order = np.argsort(keys)
        pos = np.searchsorted(keys[order], stimulus_id_keys(stimulus_ids))
        return order[pos]


def check_stimulus_ids(
    stimulus_ids: np.ndarray | Sequence[float], stimuli: StimulusSet, what: str = "fMRI"
) -> None:
    """Check that every (fMRI) stimulus id is listed in a stimulus set.

    Parameters
    ----------
    stimulus_ids : array-like of shape (n,)
        Ids to check, e.g. the training samples' ``stimulus_ids``.
    stimuli : StimulusSet
    what : str
        Where the ids come from, used in the message.

    Raises
    ------
    DataFormatError
        Naming up to five ids absent from the id file.
    """
    keys = stimulus_id_keys(stimulus_ids)
    absent = np.setdiff1d(keys, stimuli.keys)
    if absent.size:
        names = stimulus_ids_to_image_names(absent[:5] / 1e6)
        raise DataFormatError(
            f"{absent.size} {what} stimulus id(s) are not listed in {stimuli.id_file} "
            f"(e.g. {', '.join(names)}). The fMRI file and the stimulus id file do not "
            "belong together: check that both come from the same GOD release and that "
            "the split (training/test) is right."
        )


def index_images(image_dir: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Map stem -> file for the image files in ``image_dir`` (a stem with several files:
    the first of ``extensions``)."""
    rank = {ext: i for i, ext in enumerate(extensions)}
    best: dict[str, tuple[int, Path]] = {}
    if image_dir.is_dir():
        for entry in os.scandir(image_dir):
            p = Path(entry.path)
            r = rank.get(p.suffix)
            if r is None or not entry.is_file():
                continue
            if p.stem not in best or r < best[p.stem][0]:
                best[p.stem] = (r, p)
    return {stem: p for stem, (_, p) in best.items()}


def load_stimulus_set(
    god_dir: str | os.PathLike, split: Split, *, allow_missing: bool = False
) -> StimulusSet:
    """Read a split's id file and resolve its image files.

    Parameters
    ----------
    god_dir : str or path-like
        GOD folder (the id files may sit in it or its ``images/``/``stimuli/``).
    split : {"training", "test"}
    allow_missing : bool, default False
        Return missing images in :attr:`StimulusSet.missing` instead of raising.

    Returns
    -------
    StimulusSet

    Raises
    ------
    MissingDataFileError
        No id file.
    MissingImageError
        An image listed in the id file is not on disk (``allow_missing=False``);
        names the id and the expected path.
    DataFormatError
        The id file is malformed, or lists a name that is not a bare file name
        (e.g. ``../x.JPEG`` or ``/abs/x.JPEG``); checked for every row before any
        image file is looked up.
    """
    root, id_file = find_stimulus_root(god_dir, split)
    ids, listed = read_id_file(id_file)
    image_dir = root / split
    index = index_images(image_dir)
    names = tuple(Path(n).stem if Path(n).suffix else n for n in listed)
    paths: list[Path | None] = []
    missing: list[str] = []
    for sid, listed_name, stem in zip(ids, listed, names):
        exact = image_dir / listed_name
        if Path(listed_name).suffix and exact.is_file():
            paths.append(exact)
        elif stem in index:
            paths.append(index[stem])
        else:
            paths.append(None)
            missing.append(str(exact if Path(listed_name).suffix else image_dir / (stem + ".JPEG")))
            if not allow_missing:
                raise MissingImageError(
                    f"Stimulus image for id {sid:.6f} ({stem}) is missing: expected "
                    f"{missing[-1]} (or the same name with .jpg/.png). "
                    + (
                        f"The folder {image_dir} does not exist. "
                        if not image_dir.is_dir()
                        else f"{len(index)} images are in {image_dir}. "
                    )
                    + "Put the GOD stimulus images (from the dataset authors) there, or "
                    "run `fmri2image data-info` to list every missing image."
                )
    return StimulusSet(
        split=split,
        ids=ids,
        image_names=names,
        paths=tuple(paths),
        wnids=tuple(stimulus_ids_to_wnids(ids).tolist()),
        id_file=id_file,
        image_dir=image_dir,
        missing=tuple(missing),
    )


#: Alias matching the architecture overview.
load_stimuli = load_stimulus_set


def load_images(
    paths: Sequence[str | os.PathLike | None], *, progress: bool = True
) -> list[Image.Image]:
    """Decode images as RGB ``PIL.Image`` objects.

    Parameters
    ----------
    paths : sequence of path-like
        Image files (``None`` entries, i.e. missing images, raise).
    progress : bool, default True
        Show a tqdm bar (also silenced by ``TQDM_DISABLE=1``).

    Returns
    -------
    list of PIL.Image.Image
        Fully loaded RGB images (files are closed).

    Raises
    ------
    MissingImageError
        A path is ``None`` or does not exist.
    DataFormatError
        A file cannot be decoded as an image.
    """
    from tqdm.auto import tqdm

    from fmri2image.data.images import decode_errors, decode_image

    out = []
    for p in tqdm(paths, desc="loading images", unit="img", **tqdm_kwargs(progress)):
        if p is None or not Path(p).is_file():
            raise MissingImageError(
                f"Image file {p} does not exist. Check the stimulus folder, or load the "
                "set with allow_missing=True and skip missing images explicitly."
            )
        try:
            out.append(decode_image(p, None))
        except decode_errors() as exc:
            raise DataFormatError(
                f"{p} cannot be decoded as an image ({exc}). Replace the damaged file."
            ) from exc
    return out
