"""The Deeprecon dataset (Shen, Horikawa, Majima & Kamitani 2019) behind the dataset seam.

Three subjects saw the GOD training images (1,200 = 150 categories × 8) five times
each and 50 test images (of 50 other categories) 24 times each, plus artificial
shapes, letters, and imagined images in sessions of their own.  Two releases of the
preprocessed data exist, both BData HDF5 (bdpy's format, one sample per trial):

* ``original`` (figshare article 7033577), one file per subject and session::

      sub-01_perceptionNaturalImageTraining_original_VC.h5
      sub-01_perceptionNaturalImageTest_original_VC.h5
      sub-01_perceptionArtificialImage_original_VC.h5     (optional)
      sub-01_perceptionLetterImage_original_VC.h5         (optional)
      sub-01_imagery_original_VC.h5                       (optional)

  A sample's stimulus is the float ``stimulus_id`` (WordNet offset . image number,
  formatted with six decimals: ``1518878.005958`` is ``n01518878_5958``), or its
  ``stimulus_name`` when the file carries a value-label map (``/vmap/stimulus_name``).
* ``fmriprep`` (figshare article 21564384; what the KamitaniLab cookbook reads)::

      sub-01_ImageNetTraining_fmriprep_volume_native.h5
      sub-01_ImageNetTest_fmriprep_volume_native.h5

  written by bdpy's ``create_bdata_fmriprep``: ``VoxelData``, ``Session``, ``Run``,
  ``Block``, a ``Label`` block with one key per events column (``event_type``,
  ``stimulus_name`` with a vmap, ``stimulus_id``, ``category_index``,
  ``image_index``, ...), ``MotionParameter*``, ``voxel_x/y/z``, ``voxel_i/j/k`` and
  the ``ROI_*`` selectors.  The extra sessions, when present, are looked for as
  ``sub-01_{ArtificialImage,LetterImage,Imagery}_fmriprep_volume_native.h5``
  (inferred names: no public file list shows them).

Both releases spell V4 ``ROI_hV4`` (GOD: ``ROI_V4``); their voxels differ, so a
folder holding both needs ``release=`` (``--release``).

What a sample is
----------------
Only stimulus events are kept: where an ``event_type`` column exists, samples with
``event_type == 1``; one-back repeats (``2``: the image of the previous trial shown
again, excluded from the paper's 1,200 × 5 and 50 × 24 counts) and rest/fixation
(negative or NaN) are dropped, as are samples without a stimulus label.  Training
samples are single trials (one stimulus row each); test samples are averaged per
image by :func:`~fmri2image.data.dataset.split_recording`.  The split of a sample is
the session file it comes from (``train``, ``test``, ``artificial``, ``letter``,
``imagery``); runs are numbered per (file, ``Session``, ``Run``), so they never
collide across files; a natural image's group is its category (the WordNet offset).

Stimulus images
---------------
Not public (ImageNet licence): the authors share them on request, as for GOD.  Put
them in the dataset folder (or its ``images/`` or ``stimuli/`` subfolder) as
``training/`` and ``test/`` (GOD's names, ``<stimulus_name>.JPEG``) or
``ImageNetTraining/`` and ``ImageNetTest/``; artificial shapes in
``ArtificialImage/`` (or ``artificial/``), letters in ``LetterImage/`` (or
``letter/``), named ``<stimulus_name>.<ext>``.  The stimuli of a split are the names
the subjects' files reference, sorted.  Artificial shapes and letters have no WordNet
id: their labels are readable text taken from the name (``colorExpStim01_red_square``
→ ``"red square"``).  A shape or letter file that gives only a number (``stimulus_id``
1-40, no vmap) is matched with the image whose name's first number is that id.
Imagined stimuli are found by name among the test, artificial and letter folders.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image.data.bdata import BDataFile, MetadataKeyError, parse_query, read_bdata
from fmri2image.data.dataset import Dataset, Recording, RemoteFile, Stimuli
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError, MissingImageError

__all__ = [
    "DEEPRECON_ROIS",
    "RELEASES",
    "DeepreconDataset",
    "DeepreconFixture",
    "DeepreconOptions",
    "deeprecon_file_name",
    "write_deeprecon_fixture",
]

log = logging.getLogger(__name__)

#: The releases (``data.options.release``).
RELEASES = ("original", "fmriprep")
#: ROI selector keys of both releases (note ``ROI_hV4``).
DEEPRECON_ROIS = (
    "ROI_V1", "ROI_V2", "ROI_V3", "ROI_hV4", "ROI_LOC", "ROI_FFA", "ROI_PPA",
    "ROI_LVC", "ROI_HVC", "ROI_VC",
)  # fmt: skip
#: Session file parts per split: (original release, fmriprep release).
_PARTS: dict[str, tuple[str, str]] = {
    "train": ("perceptionNaturalImageTraining", "ImageNetTraining"),
    "test": ("perceptionNaturalImageTest", "ImageNetTest"),
    "artificial": ("perceptionArtificialImage", "ArtificialImage"),
    "letter": ("perceptionLetterImage", "LetterImage"),
    "imagery": ("imagery", "Imagery"),
}
_SPLITS = tuple(_PARTS)
_REQUIRED = ("train", "test")
#: Image folders per stimulus split, in lookup order.
_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("training", "ImageNetTraining"),
    "test": ("test", "ImageNetTest"),
    "artificial": ("ArtificialImage", "artificial"),
    "letter": ("LetterImage", "letter"),
}
_NATURAL = ("train", "test")
_ROOTS = (".", "images", "stimuli")
_EXTENSIONS = (
    ".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG", ".tiff", ".tif", ".TIFF", ".TIF",
    ".bmp", ".BMP",
)  # fmt: skip
_FIGSHARE = "https://ndownloader.figshare.com/files/"
#: Figshare file ids of the original release (article 7033577), per split and subject;
#: no MD5 sums are published for them.
_ORIGINAL_IDS = {
    "train": {1: 14830643, 2: 14830712, 3: 14830862},
    "test": {1: 14830631, 2: 14830697, 3: 14830856},
}
#: Figshare file ids and MD5 sums of the fmriprep release (article 21564384; the
#: sums are those of the KamitaniLab cookbook's ``data/files.json``).
_FMRIPREP_FILES = {
    ("train", 1): (37838826, "f0aba2065e03a518681ceec65674026b"),
    ("test", 1): (37838595, "7ab3fd8900a766a79e3f266ff223302a"),
    ("train", 2): (37848333, "8a66fcc107cbef220eb7f94b0737e0cb"),
    ("test", 2): (37848300, "3524e5cae596160115b48ce0b9c25be7"),
    ("train", 3): (37850397, "889a3afe44c33182d1ec02d0debe2371"),
    ("test", 3): (37849986, "b7ee993435fc9b27ca507d988bdc98e9"),
}
_HOW_TO_GET_IMAGES = (
    "The stimulus images are not public (ImageNet licence); request them from the "
    "dataset authors (Kamitani lab, brainliner-admin@atr.jp), as for GOD."
)


def deeprecon_file_name(subject: int, split: str, release: str) -> str:
    """The file name of one subject's session file in a release.

    >>> deeprecon_file_name(1, "train", "original")
    'sub-01_perceptionNaturalImageTraining_original_VC.h5'
    >>> deeprecon_file_name(2, "test", "fmriprep")
    'sub-02_ImageNetTest_fmriprep_volume_native.h5'
    """
    if split not in _PARTS:
        raise ConfigError(f"Deeprecon sessions are {', '.join(_SPLITS)}, not {split!r}.")
    if release == "original":
        return f"sub-{int(subject):02d}_{_PARTS[split][0]}_original_VC.h5"
    if release == "fmriprep":
        return f"sub-{int(subject):02d}_{_PARTS[split][1]}_fmriprep_volume_native.h5"
    raise ConfigError(f"Deeprecon releases are {', '.join(RELEASES)}, not {release!r}.")


def _check_release(release: str, *, auto: bool = True) -> None:
    if release == "spm":
        raise ConfigError(
            "Deeprecon has no 'spm' release (that is GOD's SubjectN.h5). Use --release "
            "original (sub-0N_perceptionNaturalImage*_original_VC.h5, figshare 7033577) or "
            "--release fmriprep (sub-0N_ImageNet*_fmriprep_volume_native.h5, figshare "
            "21564384), or auto."
        )
    allowed = ("auto", *RELEASES) if auto else RELEASES
    if release not in allowed:
        raise ConfigError(
            f"Deeprecon release must be one of {', '.join(allowed)}, got {release!r} (--release)."
        )


@dataclass(frozen=True)
class DeepreconOptions:
    """Options of the Deeprecon dataset (``data.options``).

    Attributes
    ----------
    release : {"auto", "original", "fmriprep"}
        Which release to read: ``auto`` reads the one present (an error when both
        are, since their voxels differ).
    """

    release: str = "auto"

    def __post_init__(self) -> None:
        _check_release(self.release)


# ---------------------------------------------------------------------- labels
def _readable(stem: str) -> str:
    """A readable label from a shape or letter name: ``colorExpStim01_red_square`` ->
    ``red square`` (leading parts with digits dropped)."""
    parts = [p for p in re.split(r"[_\s]+", stem) if p]
    while len(parts) > 1 and re.search(r"\d", parts[0]):
        parts = parts[1:]
    return " ".join(parts) or stem


def _first_number(stem: str) -> int | None:
    m = re.search(r"\d+", stem)
    return int(m.group(0)) if m else None


def _is_natural(name: str) -> bool:
    return re.fullmatch(r"n\d{8}_\d{1,6}", name) is not None


def _natural_sort(names: Sequence[str]) -> list[str]:
    """Natural images by stimulus id (as GOD's id files), others by name, after them."""
    nat = sorted(
        (n for n in names if _is_natural(n)),
        key=lambda n: (int(n[1:9]), int(n.split("_")[1])),
    )
    return nat + sorted(n for n in names if not _is_natural(n))


@dataclass
class _Labels:
    """The stimulus labels of one session file: per sample a name, a number (a shape or
    letter given by its id only) or neither (dropped)."""

    keep: np.ndarray  # bool per sample: a stimulus event with a label
    names: np.ndarray  # object per sample: name or None
    numbers: np.ndarray  # int64 per sample: the id when the name must come from a folder, else -1


def _column(bd: BDataFile, key: str) -> np.ndarray:
    try:
        return bd.get(key, dtype=np.float64)
    except MetadataKeyError as exc:  # pragma: no cover - checked by the callers
        raise DataFormatError(str(exc)) from exc


def _read_labels(bd: BDataFile, split: str) -> _Labels:
    """Which samples are stimulus events and what they show (see the module docstring)."""
    n = bd.n_samples
    keep = np.ones(n, dtype=bool)
    if "event_type" in bd:
        keep &= _column(bd, "event_type") == 1
    names = np.full(n, None, dtype=object)
    numbers = np.full(n, -1, dtype=np.int64)
    vmap = bd.vmap.get("stimulus_name") or {}
    if "stimulus_name" in bd and vmap:
        values = _column(bd, "stimulus_name")
        keep &= np.isfinite(values)
        lookup_keys = np.asarray(sorted(vmap), dtype=np.float64)
        for v in np.unique(values[keep]):
            label = vmap.get(float(v))
            if label is None:  # a key written through text: match it closely
                near = np.flatnonzero(np.isclose(lookup_keys, v, rtol=1e-12, atol=1e-9))
                label = vmap[float(lookup_keys[near[0]])] if near.size else None
            if label is None:
                raise DataFormatError(
                    f"{bd.path}: stimulus_name value {v!r} has no label in /vmap/stimulus_name "
                    f"({len(vmap)} labels there). The file is damaged or incomplete; "
                    "download it again."
                )
            names[keep & (values == v)] = str(label)
        return _Labels(keep, names, numbers)
    if "stimulus_id" in bd:
        ids = _column(bd, "stimulus_id")
    elif "Label" in bd and bd.column_index("Label").size >= 2:
        ids = bd.select("Label", dtype=np.float64)[:, 1]  # End2End: the Label block's 2nd column
    else:
        raise DataFormatError(
            f"{bd.path} has neither a 'stimulus_name' (with a vmap) nor a 'stimulus_id' "
            f"column, so its samples' stimuli are unknown. Keys present: "
            f"{', '.join(bd.keys)}. Is this a Deeprecon session file (figshare 7033577 or "
            "21564384)?"
        )
    keep &= np.isfinite(ids) & (ids > 0)
    if split in _NATURAL:
        from fmri2image.data.ids import stimulus_ids_to_image_names

        try:
            names[keep] = stimulus_ids_to_image_names(ids[keep])
        except DataFormatError as exc:
            raise DataFormatError(f"{bd.path}: {exc}") from exc
        return _Labels(keep, names, numbers)
    frac = np.abs(ids - np.rint(ids)) > 1e-9
    if split == "imagery":
        if (keep & ~frac).any():
            raise DataFormatError(
                f"{bd.path} labels its imagery samples with numbers only "
                f"({', '.join(str(int(v)) for v in np.unique(ids[keep & ~frac])[:5])}, ...) "
                "and no /vmap/stimulus_name, so the imagined images cannot be named. Use a "
                "file whose stimulus_name column carries the image names, or decode "
                "--split test / artificial / letter."
            )
        from fmri2image.data.ids import stimulus_ids_to_image_names

        names[keep] = stimulus_ids_to_image_names(ids[keep])
        return _Labels(keep, names, numbers)
    if (keep & frac).any():
        raise DataFormatError(
            f"{bd.path}: {split} stimulus ids must be whole numbers (1-40 shapes, letters "
            f"1-10), got e.g. {ids[keep & frac][0]!r}. Is this the right session file?"
        )
    numbers[keep] = np.rint(ids[keep]).astype(np.int64)
    return _Labels(keep, names, numbers)


# ---------------------------------------------------------------------- the dataset
class DeepreconDataset(Dataset):
    """Deeprecon (Shen, Horikawa, Majima & Kamitani 2019) in its release layout
    (see the module docstring): BData files per subject and session, image folders.

    Training samples are single trials; test samples (and the artificial, letter and
    imagery samples, each an evaluation split with stimuli of its own) are averaged
    per stimulus.  Natural-image labels are WordNet ids; shapes and letters carry
    readable text.
    """

    name = "deeprecon"
    description = (
        "Deeprecon (Shen et al. 2019): BData files per subject and session (original "
        "*_original_VC.h5 or fmriprep *_fmriprep_volume_native.h5), image folders"
    )
    vocabulary = "wordnet"
    Options = DeepreconOptions
    default_rois = ("ROI_VC",)
    eval_splits = ("test", "artificial", "letter", "imagery")
    average = "voxels"
    known_subjects = (1, 2, 3)
    where_to_get = (
        "fMRI: figshare article 7033577 (original release) or 21564384 (fmriprep "
        "release), `fmri2image download --dataset deeprecon`; images on request from "
        "the authors (Kamitani lab)"
    )

    # -- files
    def _pattern_subjects(self, release: str) -> set[int]:
        found = set()
        rx = re.compile(r"sub-(\d+)_")
        for split in _REQUIRED:
            tail = deeprecon_file_name(1, split, release)[len("sub-01") :]
            for p in self.path.glob(f"sub-*{tail}"):
                if m := rx.match(p.name):
                    found.add(int(m.group(1)))
        return found

    def subjects(self) -> tuple[int, ...]:
        if not self.path.is_dir():
            return ()
        rel = self.options.release
        releases = RELEASES if rel == "auto" else (rel,)
        found: set[int] = set()
        for r in releases:
            found |= self._pattern_subjects(r)
        return tuple(sorted(found))

    def _has(self, subject: int, release: str) -> bool:
        return all(
            (self.path / deeprecon_file_name(subject, s, release)).is_file() for s in _REQUIRED
        )

    def release_of(self, subject: int) -> str:
        """The release read for ``subject`` (``original`` or ``fmriprep``).

        Raises
        ------
        MissingDataFileError
            Neither release's training and test files are there.
        ConfigError
            Both are, with ``release="auto"``.
        """
        subject = _subject_number(subject)
        rel = self.options.release
        if not self.path.is_dir():
            raise MissingDataFileError(
                f"Deeprecon data folder {self.path} does not exist. Pass the folder that "
                f"holds {deeprecon_file_name(subject, 'train', 'original')} (or the fmriprep "
                f"release's {deeprecon_file_name(subject, 'train', 'fmriprep')})."
            )
        have = [r for r in RELEASES if self._has(subject, r)]
        if rel == "auto" and len(have) == 2:
            raise ConfigError(
                f"{self.path} holds both Deeprecon releases of subject {subject} "
                f"({deeprecon_file_name(subject, 'train', 'original')} and "
                f"{deeprecon_file_name(subject, 'train', 'fmriprep')}); their voxels differ. "
                "Choose one with --release original or --release fmriprep "
                "(data.options.release)."
            )
        if rel != "auto":
            if rel in have:
                return rel
            looked = [deeprecon_file_name(subject, s, rel) for s in _REQUIRED]
        else:
            if have:
                return have[0]
            looked = [deeprecon_file_name(subject, s, r) for r in RELEASES for s in _REQUIRED]
        present = sorted(p.name for p in self.path.glob("*.h5"))
        raise MissingDataFileError(
            f"No Deeprecon fMRI files for subject {subject} in {self.path}: looked for "
            f"{', '.join(looked)} (training and test are both needed). .h5 files there: "
            f"{', '.join(present[:8]) or 'none'}{' ...' if len(present) > 8 else ''}. "
            f"Download them with `fmri2image download --dataset deeprecon` ({self.where_to_get})."
        )

    def _session_files(self, subject: int) -> dict[str, Path]:
        rel = self.release_of(subject)
        out = {}
        for split in _SPLITS:
            p = self.path / deeprecon_file_name(subject, split, rel)
            if p.is_file():
                out[split] = p
        return out

    def files(self, subject: int) -> tuple[Path, ...]:
        return tuple(self._session_files(subject).values())

    # -- stimuli
    def stimuli_of(self, split: str) -> str:
        return "train" if split == "train" else split

    def _cache(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_deeprecon_cache", {})

    def _labels(self, path: Path, split: str) -> tuple[BDataFile, _Labels]:
        cache = self._cache().setdefault("labels", {})
        if path not in cache:
            bd = read_bdata(path)
            cache[path] = (bd, _read_labels(bd, split))
        return cache[path]

    def _image_index(self, split: str) -> tuple[Path | None, dict[str, Path]]:
        """The first existing image folder of ``split`` and its stem -> file map."""
        cache = self._cache().setdefault("folders", {})
        if split not in cache:
            from fmri2image.data.stimuli import index_images

            found: tuple[Path | None, dict[str, Path]] = (None, {})
            for root in _ROOTS:
                for name in _FOLDERS[split]:
                    folder = (self.path / root / name) if root != "." else self.path / name
                    if not folder.is_dir():
                        continue
                    found = (folder, index_images(folder, _EXTENSIONS))
                    break
                if found[0] is not None:
                    break
            cache[split] = found
        return cache[split]

    def _expected_folder(self, split: str) -> Path:
        folder, _ = self._image_index(split)
        return folder if folder is not None else self.path / _FOLDERS[split][0]

    def _names_by_number(self, split: str) -> dict[int, str]:
        """Shape or letter id -> image stem (the first number in the name)."""
        _, index = self._image_index(split)
        out: dict[int, str] = {}
        for stem in sorted(index):
            k = _first_number(stem)
            if k is not None:
                out.setdefault(k, stem)
        return out

    def _sample_names(self, path: Path, split: str) -> tuple[BDataFile, np.ndarray, np.ndarray]:
        """The kept samples' mask and their stimulus names (None where dropped)."""
        bd, lab = self._labels(path, split)
        names = lab.names.copy()
        numbered = lab.keep & (lab.numbers >= 0)
        if numbered.any():
            by_number = self._names_by_number(split)
            absent = sorted({int(k) for k in lab.numbers[numbered]} - set(by_number))
            if absent:
                folder = self._expected_folder(split)
                raise MissingImageError(
                    f"{path.name} names its {split} stimuli by number only; no image in "
                    f"{folder} has the number(s) {', '.join(map(str, absent[:5]))} in its name "
                    f"(e.g. colorExpStim{absent[0]:02d}_red_square.tiff). Put the {split} "
                    f"images there. {_HOW_TO_GET_IMAGES}"
                )
            names[numbered] = [by_number[int(k)] for k in lab.numbers[numbered]]
        return bd, lab.keep, names

    def _referenced(self, split: str) -> list[str]:
        """The sorted stimulus names the subjects' ``split`` files reference."""
        cache = self._cache().setdefault("referenced", {})
        if split not in cache:
            names: set[str] = set()
            looked = []
            for subject in self.subjects():
                try:
                    path = self._session_files(subject).get(split)
                except MissingDataFileError:
                    continue
                if path is None:
                    looked.append(deeprecon_file_name(subject, split, self.release_of(subject)))
                    continue
                _, keep, sample_names = self._sample_names(path, split)
                names.update(str(n) for n in sample_names[keep])
            if not names:
                subjects = self.subjects()
                if not looked and subjects:
                    looked = [deeprecon_file_name(subjects[0], split, self.release_of(subjects[0]))]
                what = ", ".join(looked) or deeprecon_file_name(1, split, "original")
                exc = ConfigError if split not in _REQUIRED else MissingDataFileError
                raise exc(
                    f"No Deeprecon {split} session in {self.path}: {what} is missing (or holds "
                    f"no stimulus samples). "
                    + (
                        "Decode another split (--split test), or add the session files."
                        if split not in _REQUIRED
                        else f"Download it ({self.where_to_get})."
                    )
                )
            cache[split] = _natural_sort(sorted(names))
        return cache[split]

    def _missing_image(
        self, split: str, folder: Path, stem: str, n_missing: int
    ) -> MissingImageError:
        ext = ".JPEG" if split in _NATURAL else ".<ext>"
        where = (
            f"The folder {folder} does not exist."
            if not folder.is_dir()
            else f"It is not in {folder}."
        )
        return MissingImageError(
            f"{n_missing} {split} stimulus image(s) the Deeprecon fMRI files reference are "
            f"missing, e.g. {stem}{ext}. {where} Put the {split} images there "
            f"(also accepted: {', '.join(_FOLDERS.get(split, ('test', 'ArtificialImage')))}). "
            f"{_HOW_TO_GET_IMAGES}"
        )

    def stimuli(self, split: str) -> Stimuli:
        if split not in _SPLITS:
            raise ConfigError(f"Deeprecon stimuli are {', '.join(_SPLITS)}; got {split!r}.")
        cache = self._cache().setdefault("stimuli", {})
        if split in cache:
            return cache[split]
        stems = self._referenced(split)
        if split == "imagery":
            from fmri2image.imagenet import prompt_name

            files, labels = [], []
            missing = []
            for stem in stems:
                hit = None
                for s in ("test", "artificial", "letter"):
                    _, index = self._image_index(s)
                    if stem in index:
                        hit = (index[stem], s)
                        break
                if hit is None:
                    missing.append(stem)
                    continue
                files.append(hit[0])
                # One vocabulary for the split: a natural image's label is its
                # category's name in words ("goldfish"), as the shapes' are.
                labels.append(
                    prompt_name(stem.split("_")[0]) if _is_natural(stem) else _readable(stem)
                )
            if missing:
                raise MissingImageError(
                    f"{len(missing)} imagined stimulus image(s) are in none of the test, "
                    f"artificial and letter folders of {self.path}, e.g. {missing[0]}. Put "
                    f"them there. {_HOW_TO_GET_IMAGES}"
                )
            out = Stimuli(split, tuple(stems), tuple(labels), files=tuple(files), vocabulary="text")
        else:
            folder, index = self._image_index(split)
            missing = [s for s in stems if s not in index]
            if missing:
                raise self._missing_image(
                    split, folder or self._expected_folder(split), missing[0], len(missing)
                )
            if split in _NATURAL:
                labels = tuple(s.split("_")[0] for s in stems)
                vocab = None
            else:
                labels = tuple(_readable(s) for s in stems)
                vocab = "text"
            out = Stimuli(
                split, tuple(stems), labels, files=tuple(index[s] for s in stems),
                source=folder, vocabulary=vocab,
            )  # fmt: skip
        cache[split] = out
        return out

    # -- samples
    def load(self, subject: int, roi: str, *, drop_nan_voxels: bool = False) -> Recording:
        subject = _subject_number(subject)
        parts = self._session_files(subject)
        for split in _REQUIRED:
            if split not in parts:  # pragma: no cover - release_of checked them
                raise MissingDataFileError(
                    f"{deeprecon_file_name(subject, split, 'original')} is missing."
                )
        voxels, splits, stimulus, run_keys, groups = [], [], [], [], []
        roi_sizes: dict[str, int] = {}
        ref_path: Path | None = None
        for f_index, (split, path) in enumerate(parts.items()):
            bd, keep, names = self._sample_names(path, split)
            x = _select_roi(bd, roi)
            if ref_path is None:
                ref_path, roi_sizes = path, _roi_sizes(bd)
            elif x.shape[1] != voxels[0].shape[1]:
                raise DataFormatError(
                    f"ROI {roi!r} has {voxels[0].shape[1]} voxels in {ref_path.name} but "
                    f"{x.shape[1]} in {path.name}; a subject's session files must share their "
                    "voxels. Do not mix files of the two releases or of other subjects; "
                    "download the set again."
                )
            if "Run" not in bd:
                raise DataFormatError(
                    f"{path} has no 'Run' column, which per-run normalization and the "
                    f"cross-validation folds need. Keys present: {', '.join(bd.keys)}."
                )
            run = _column(bd, "Run")
            session = _column(bd, "Session") if "Session" in bd else np.zeros(bd.n_samples)
            bad = keep & ~(np.isfinite(run) & np.isfinite(session))
            if bad.any():
                raise DataFormatError(
                    f"{int(bad.sum())} stimulus samples of {path} have NaN Run or Session. "
                    "The file is damaged; download it again."
                )
            stim = self.stimuli(self.stimuli_of(split))
            rows = stim.row_of([str(n) for n in names[keep]])
            voxels.append(x[keep])
            splits.append(np.full(int(keep.sum()), split, dtype=object))
            stimulus.append(rows)
            run_keys.append(
                f_index * 10**9
                + session[keep].astype(np.int64) * 10**5
                + run[keep].astype(np.int64)
            )
            if split in _NATURAL:
                groups.append(np.asarray([int(n[1:9]) for n in names[keep]], dtype=np.int64))
            else:  # no category: each stimulus its own group
                groups.append(-(rows + 1) - 10**6 * (_SPLITS.index(split) + 1))
            dropped = int((~keep).sum())
            if dropped:
                log.info(
                    "%s: %d non-stimulus samples (rest, one-back repeats) left out",
                    path.name,
                    dropped,
                )
        X = np.concatenate(voxels, axis=0)
        nan_cols = np.isnan(X).any(axis=0)
        n_nan = int(nan_cols.sum())
        if n_nan and not drop_nan_voxels:
            raise DataFormatError(
                f"{n_nan} of {X.shape[1]} voxel columns of ROI {roi!r} contain NaN in "
                f"{', '.join(p.name for p in parts.values())}. Nothing is imputed silently: "
                "pass --drop-nan-voxels (drop_nan_voxels=True) to drop these columns, or "
                "choose another ROI."
            )
        if n_nan:
            log.warning("dropping %d NaN voxel columns of %s", n_nan, roi)
            X = X[:, ~nan_cols]
        runs = np.unique(np.concatenate(run_keys), return_inverse=True)[1].reshape(-1)
        return Recording(
            subject=subject,
            roi=roi,
            voxels=np.ascontiguousarray(X, dtype=np.float32),
            split=np.concatenate(splits),
            stimulus=np.concatenate(stimulus).astype(np.int64),
            runs=runs.astype(np.int64),
            groups=np.concatenate(groups).astype(np.int64),
            roi_sizes=roi_sizes,
            sources=tuple(parts.values()),
            n_dropped_nan_voxels=n_nan,
        )

    # -- downloads
    @classmethod
    def remote_files(cls, subjects: Sequence[int], **options: Any) -> tuple[RemoteFile, ...]:
        """The figshare files of ``subjects``: the fmriprep release (MD5-checked) for
        ``release="auto"`` or ``"fmriprep"``, the original release's training and test
        files (no published MD5) for ``release="original"``."""
        unknown = sorted(set(options) - {"release"})
        if unknown:
            raise ConfigError(f"Deeprecon download options: release; got {', '.join(unknown)}.")
        release = str(options.get("release", "auto"))
        _check_release(release)
        release = "fmriprep" if release == "auto" else release
        out = []
        for s in subjects:
            n = _subject_number(s)
            if n not in cls.known_subjects:
                raise ConfigError(
                    f"Deeprecon has subjects {', '.join(map(str, cls.known_subjects))}; got {s!r}."
                )
            for split in _REQUIRED:
                name = deeprecon_file_name(n, split, release)
                if release == "original":
                    out.append(RemoteFile(name, f"{_FIGSHARE}{_ORIGINAL_IDS[split][n]}", None))
                else:
                    fid, md5 = _FMRIPREP_FILES[(split, n)]
                    out.append(RemoteFile(name, f"{_FIGSHARE}{fid}", md5))
        return tuple(out)


def _subject_number(subject: int | str) -> int:
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        if subject < 1:
            raise ConfigError(f"Subject number must be positive, got {subject}.")
        return int(subject)
    m = re.fullmatch(r"(?:sub-?)?0*(\d+)", str(subject).strip(), flags=re.IGNORECASE)
    if m is None or int(m.group(1)) < 1:
        raise ConfigError(f"Cannot read a subject number from {subject!r}; use 1-3 or 'sub-01'.")
    return int(m.group(1))


def _roi_keys(bd: BDataFile) -> list[str]:
    return [k for k in bd.keys if k.startswith("ROI_")]


def _roi_sizes(bd: BDataFile) -> dict[str, int]:
    voxel = bd.metadata("VoxelData") == 1 if "VoxelData" in bd else None
    sizes = {}
    for key in _roi_keys(bd):
        m = bd.metadata(key) == 1
        if voxel is not None:
            m &= voxel
        sizes[key] = int(m.sum())
    return sizes


def _select_roi(bd: BDataFile, roi: str) -> np.ndarray:
    """The voxels of an ROI query, with close-match suggestions for an unknown key."""
    rois = _roi_keys(bd)
    for tok in parse_query(roi):
        if tok in ("=", "|", "&", "-") or re.fullmatch(r"[+-]?[\d.eE+-]+", tok) or "*" in tok:
            continue
        if tok not in bd:
            close = difflib.get_close_matches(tok, rois, n=3, cutoff=0.5)
            if tok.upper().endswith("V4") and "ROI_hV4" in rois and "ROI_hV4" not in close:
                close.insert(0, "ROI_hV4")
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise DataFormatError(
                f"ROI {tok!r} is not in {bd.path}.{hint} Deeprecon spells V4 'ROI_hV4' (GOD: "
                f"ROI_V4). Available ROIs: {', '.join(rois) or 'none'}. Pass one of them (or "
                "an expression like 'ROI_V1 + ROI_V2') with --roi."
            )
    try:
        mask = bd.column_mask(roi)
    except MetadataKeyError as exc:
        raise DataFormatError(
            f"ROI {roi!r} cannot be selected in {bd.path}: {exc} Available ROIs: "
            f"{', '.join(rois) or 'none'}."
        ) from exc
    if "VoxelData" in bd:
        outside = mask & ~(bd.metadata("VoxelData") == 1)
        if outside.any():
            raise DataFormatError(
                f"ROI query {roi!r} selects {int(outside.sum())} column(s) of {bd.path} that "
                "are not voxels; select ROI_* keys only."
            )
    if not mask.any():
        raise DataFormatError(
            f"ROI query {roi!r} selects no voxel in {bd.path}. Available ROIs: "
            f"{', '.join(rois) or 'none'}."
        )
    return bd.select(roi, dtype=np.float32)


# ---------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class DeepreconFixture:
    """What :func:`write_deeprecon_fixture` wrote.

    Attributes
    ----------
    root : Path
    release : {"original", "fmriprep"}
    subjects : tuple of int
    files : tuple of Path
        Every BData file written.
    stimuli : dict of str to tuple of str
        The stimulus names per session (``train``, ``test``, and ``artificial``,
        ``letter``, ``imagery`` when written), sorted as :meth:`DeepreconDataset.stimuli`.
    n_voxels : int
    rois : dict of str to ndarray of bool
        Every ``ROI_*`` key's voxels.
    n_train_repeats, n_test_repeats : int
    """

    root: Path
    release: str
    subjects: tuple[int, ...]
    files: tuple[Path, ...]
    stimuli: dict[str, tuple[str, ...]]
    n_voxels: int
    rois: dict[str, np.ndarray] = field(repr=False)
    n_train_repeats: int = 5
    n_test_repeats: int = 24


_COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220),
            "yellow": (230, 220, 40), "magenta": (200, 40, 200)}  # fmt: skip
_SHAPES = ("square", "circle", "cross", "ring")
_LETTERS = "ACEINORSUX"


def _shape_picture(colour: tuple[int, int, int], shape: str, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    r = np.hypot(yy, xx)
    mask = {
        "square": (np.abs(yy) < 0.25) & (np.abs(xx) < 0.25),
        "circle": r < 0.28,
        "cross": ((np.abs(yy) < 0.08) | (np.abs(xx) < 0.08)) & (r < 0.4),
        "ring": (r < 0.32) & (r > 0.18),
    }[shape]
    img = np.full((size, size, 3), 128, dtype=np.uint8)
    img[mask] = colour
    return img


def _letter_picture(letter: str, k: int, size: int = 32) -> np.ndarray:
    """A dark glyph-like pattern on grey, distinct per letter (no font needed)."""
    rng = np.random.default_rng(1000 + k)
    img = np.full((size, size, 3), 200, dtype=np.uint8)
    strokes = rng.integers(6, size - 6, (4, 4))
    for y0, x0, y1, x1 in strokes:
        ys, xs = sorted((y0, y1)), sorted((x0, x1))
        img[ys[0] : ys[1] + 2, xs[0] : xs[0] + 3] = 20
        img[ys[0] : ys[0] + 3, xs[0] : xs[1] + 2] = 20
    return img


def _save_image(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    from fmri2image._io import atomic_path

    fmt = {".JPEG": "JPEG", ".tiff": "TIFF", ".tif": "TIFF", ".png": "PNG"}[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(tmp, format=fmt, quality=92)


def write_deeprecon_fixture(
    root: str | os.PathLike,
    *,
    subjects: Sequence[int] = (1,),
    release: str = "original",
    train: Any = None,
    test: Any = None,
    pictures: tuple[Any, Any] | None = None,
    n_train_repeats: int = 5,
    n_test_repeats: int = 24,
    n_voxels: int = 120,
    respond: Any = None,
    artificial: bool = False,
    letters: bool = False,
    imagery: bool = False,
    n_extra_repeats: int = 3,
    seed: int = 0,
    images: bool = True,
) -> DeepreconFixture:
    """Write a small Deeprecon folder in a release's exact layout (bdpy's writer).

    Parameters
    ----------
    root : path
        The dataset folder (created).
    subjects : sequence of int
    release : {"original", "fmriprep"}
        ``original``: ``sub-0N_perceptionNaturalImage{Training,Test}_original_VC.h5``
        with per-sample ``Session``, ``Run``, ``Block``, ``stimulus_id`` (float64),
        ``image_index``, ``category_index`` columns, stimulus trials only;
        ``fmriprep``: ``sub-0N_ImageNet{Training,Test}_fmriprep_volume_native.h5`` as
        ``bdpy.mri.create_bdata_fmriprep`` writes it (``Label`` block with
        ``event_type``, ``stimulus_name`` + vmap, ...; ``MotionParameter``), with a
        one-back repeat and a rest sample per run (which the reader drops).
    train, test : FixturePictures, optional
        The training and test pictures (default: 10 categories × 4, and 6 more
        categories × 1, :func:`~fmri2image.data.fixtures.fixture_pictures`).  Each
        category gets a real ImageNet WordNet id (training first, then test).
    pictures : (FixturePictures, FixturePictures), optional
        ``(train, test)`` in one argument (the shared fixtures' convention).
    n_train_repeats, n_test_repeats : int
        Presentations of every training / test image (the release: 5 and 24).
    n_voxels : int
    respond : callable, optional
        ``respond(images, rng) -> voxels`` (default
        :func:`~fmri2image.data.fixtures.planted_response`).
    artificial, letters, imagery : bool
        Also write the artificial-shape, letter and imagery sessions (and images).
    n_extra_repeats : int
        Presentations of every shape / letter / imagined image.
    seed : int
    images : bool
        Write the stimulus images (``training/``, ``test/``, ``ArtificialImage/``,
        ``LetterImage/``).

    Returns
    -------
    DeepreconFixture
    """
    import bdpy

    from fmri2image.data.fixtures import fixture_pictures, planted_response, split_voxels
    from fmri2image.imagenet import imagenet1k_wnids

    _check_release(release, auto=False)
    if pictures is not None:
        train, test = pictures
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    train = train if train is not None else fixture_pictures(10, 4, seed=seed)
    test = test if test is not None else fixture_pictures(6, 1, seed=seed + 1)
    respond = respond if respond is not None else planted_response(n_voxels, seed=seed + 1)
    rng = np.random.default_rng(seed)

    pool = list(imagenet1k_wnids())
    n_train_cats = int(train.categories.max()) + 1
    n_test_cats = int(test.categories.max()) + 1
    picks = rng.choice(len(pool), n_train_cats + n_test_cats, replace=False)
    wnids = [pool[i] for i in picks]
    numbers = iter(rng.permutation(np.arange(1000, 99999)))
    train_names = [f"{wnids[int(c)]}_{next(numbers)}" for c in train.categories]
    test_names = [f"{wnids[n_train_cats + int(c)]}_{next(numbers)}" for c in test.categories]
    sets: dict[str, tuple[list[str], np.ndarray, list[float]]] = {}

    def nat_ids(names: list[str]) -> list[float]:
        from fmri2image.data.ids import image_name_to_stimulus_id

        return [image_name_to_stimulus_id(n) for n in names]

    sets["train"] = (train_names, train.images, nat_ids(train_names))
    sets["test"] = (test_names, test.images, nat_ids(test_names))
    if artificial:
        names, pics = [], []
        for k, (colour, shape) in enumerate(
            [(c, s) for s in _SHAPES for c in _COLOURS][:8], start=1
        ):
            names.append(f"colorExpStim{k:02d}_{colour}_{shape}")
            pics.append(_shape_picture(_COLOURS[colour], shape))
        sets["artificial"] = (names, np.stack(pics), [float(k) for k in range(1, len(names) + 1)])
    if letters:
        names = [f"letterStim{k:02d}_{ch}" for k, ch in enumerate(_LETTERS[:5], start=1)]
        pics = [_letter_picture(ch, k) for k, ch in enumerate(_LETTERS[:5], start=1)]
        sets["letter"] = (names, np.stack(pics), [float(k) for k in range(1, len(names) + 1)])
    if imagery:  # natural test images (and shapes when written) imagined
        names = test_names[: min(3, len(test_names))]
        pics = [test.images[i] for i in range(len(names))]
        if artificial:
            names += sets["artificial"][0][:3]
            pics += list(sets["artificial"][1][:3])
        # imagery numbers its targets 1..n in the file; the vmap gives the names
        sets["imagery"] = (names, np.stack(pics), [float(k) for k in range(1, len(names) + 1)])

    if images:
        folders = {"train": "training", "test": "test", "artificial": "ArtificialImage",
                   "letter": "LetterImage"}  # fmt: skip
        exts = {"train": ".JPEG", "test": ".JPEG", "artificial": ".tiff", "letter": ".tif"}
        for split, (names, pics, _) in sets.items():
            if split == "imagery":
                continue
            for name, pic in zip(names, pics):
                _save_image(root / folders[split] / f"{name}{exts[split]}", pic)

    groups = ("V1", "V2", "V3", "hV4", "LOC", "FFA", "PPA")
    parts = split_voxels(n_voxels, groups)
    rois = {f"ROI_{k}": v for k, v in parts.items()}
    rois["ROI_LVC"] = parts["V1"] | parts["V2"] | parts["V3"]
    rois["ROI_HVC"] = parts["LOC"] | parts["FFA"] | parts["PPA"]
    rois["ROI_VC"] = np.ones(n_voxels, dtype=bool)
    i = np.arange(n_voxels)
    xyz = 3.0 * np.stack([i % 16, (i // 16) % 16, i // 256], axis=0).astype(np.float64)

    repeats = {"train": n_train_repeats, "test": n_test_repeats, "artificial": n_extra_repeats,
               "letter": n_extra_repeats, "imagery": n_extra_repeats}  # fmt: skip
    written: list[Path] = []
    for subject in subjects:
        srng = np.random.default_rng([seed, int(subject)])
        for split, (names, pics, ids) in sets.items():
            path = root / deeprecon_file_name(int(subject), split, release)
            bd = _session_bdata(
                bdpy, split, names, pics, ids, repeats[split], release, respond, srng,
                rois, xyz,
            )  # fmt: skip
            bd.save(str(path))
            written.append(path)
    stimuli = {s: tuple(_natural_sort(v[0])) for s, v in sets.items()}
    return DeepreconFixture(
        root=root, release=release, subjects=tuple(int(s) for s in subjects),
        files=tuple(written), stimuli=stimuli, n_voxels=n_voxels, rois=rois,
        n_train_repeats=n_train_repeats, n_test_repeats=n_test_repeats,
    )  # fmt: skip


def _session_bdata(
    bdpy: Any,
    split: str,
    names: list[str],
    pics: np.ndarray,
    ids: list[float],
    n_repeats: int,
    release: str,
    respond: Any,
    rng: np.random.Generator,
    rois: dict[str, np.ndarray],
    xyz: np.ndarray,
) -> Any:
    """One session file as a ``bdpy.BData``: every image once per run, ``n_repeats``
    runs, two runs per session; fmriprep files add a one-back repeat and a rest
    sample to each run (``event_type`` 2 and -1)."""
    fmriprep = release == "fmriprep"
    rows, ev, run, sess = [], [], [], []
    for r in range(n_repeats):
        order = rng.permutation(len(names)).tolist()
        if fmriprep:
            at = int(rng.integers(1, len(order) + 1))
            order = [-1, *order[:at], order[at - 1], *order[at:]]  # rest, ..., one-back repeat
            types = [-1] + [1] * at + [2] + [1] * (len(order) - at - 2)
        else:
            types = [1] * len(order)
        rows += order
        ev += types
        run += [r + 1] * len(order)
        sess += [r // 2 + 1] * len(order)
    rows_a = np.asarray(rows)
    stim = rows_a >= 0
    n_vox = len(xyz[0])
    voxels = np.full((len(rows), n_vox), np.nan)
    voxels[stim] = respond(pics[rows_a[stim]], rng)
    voxels[~stim] = rng.normal(0.0, 1.0, (int((~stim).sum()), n_vox))
    voxels = 100.0 + voxels  # a baseline, as BOLD has
    ids_a = np.asarray(ids, dtype=np.float64)
    stimulus_id = np.where(stim, ids_a[np.maximum(rows_a, 0)], np.nan)
    order_of = {n: i for i, n in enumerate(_natural_sort(names))}
    image_index = np.where(stim, [order_of[names[k]] + 1 if k >= 0 else 0 for k in rows], np.nan)
    if split in _NATURAL:
        cats = sorted({n.split("_")[0] for n in names})
        category_index = np.where(
            stim, [cats.index(names[k].split("_")[0]) + 1 if k >= 0 else 0 for k in rows], np.nan
        )
    else:
        category_index = np.full(len(rows), np.nan)
    block = np.zeros(len(rows))
    for r in np.unique(run):
        m = np.asarray(run) == r
        block[m] = np.arange(1, int(m.sum()) + 1)

    bd = bdpy.BData()
    bd.add(voxels, "VoxelData")
    if fmriprep:
        bd.add(np.asarray(sess, dtype=np.float64)[:, None], "Session")
        bd.add(np.asarray(run, dtype=np.float64)[:, None], "Run")
        bd.add(block[:, None], "Block")
        cols = ("event_type", "stimulus_name", "stimulus_id", "category_index", "image_index",
                "response_time")  # fmt: skip
        label = np.stack(
            [np.asarray(ev, dtype=np.float64), stimulus_id, stimulus_id, category_index,
             image_index, np.where(np.asarray(ev) == 2, 0.5, np.nan)], axis=1,
        )  # fmt: skip
        bd.add(label, "Label")
        motion = rng.normal(0.0, 0.05, (len(rows), 6))
        bd.add(motion, "MotionParameter")
        for k, name in enumerate(("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")):
            vec = np.zeros(6)
            vec[k] = 1
            bd.add_metadata(f"MotionParameter_{name}", vec, f"Motion parameter: {name}",
                            where="MotionParameter")  # fmt: skip
        for k, col in enumerate(cols):
            vec = np.full(len(cols), np.nan)
            vec[k] = 1
            bd.add_metadata(col, vec, f"Label {col}", where="Label")
    else:
        for key, values in (("Session", np.asarray(sess, np.float64)),
                            ("Run", np.asarray(run, np.float64)), ("Block", block),
                            ("stimulus_id", stimulus_id), ("image_index", image_index),
                            ("category_index", category_index)):  # fmt: skip
            bd.add(values[:, None], key)
        if split == "imagery":  # the imagined images' names (imagery numbers its targets)
            bd.add(stimulus_id[:, None], "stimulus_name")
    for key, mask in rois.items():
        bd.add_metadata(key, np.where(mask, 1.0, np.nan), f"1 = ROI {key[4:]}", where="VoxelData")
    for axis, col in zip("xyz", xyz):
        bd.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate", where="VoxelData")
    if fmriprep:
        for axis, col in zip("ijk", xyz / 3.0):
            bd.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} index", where="VoxelData")
    if fmriprep or split == "imagery":
        bd.add_vmap("stimulus_name", {float(v): n for v, n in zip(ids, names)})
    return bd
