"""Load one GOD subject (Horikawa & Kamitani 2017) from BData HDF5 files.

Two releases exist and both are supported:

* the SPM-preprocessed release: one file per subject, ``SubjectN.h5``, holding
  training (``DataType == 1``), test (2) and imagery (3) samples;
* the fmriprep release: ``SubjectN_ImageNetTraining.h5``,
  ``SubjectN_ImageNetTest.h5`` and ``SubjectN_Imagery.h5``, concatenated here in
  that order.  Its voxel counts differ from the SPM release.

Samples are rows; the ROI query (bdpy syntax, e.g. ``"ROI_VC"`` or
``"ROI_V1 + ROI_V2"``) selects voxel columns.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fmri2image.data.bdata import BDataFile, MetadataKeyError, MissingDataFileError, read_bdata
from fmri2image.data.dataset import Dataset, Recording, Stimuli
from fmri2image.data.ids import stimulus_ids_to_wnids
from fmri2image.errors import ConfigError, DataFormatError

__all__ = [
    "DATA_TYPES",
    "SPLIT_RELEASE_PARTS",
    "GODDataset",
    "GODOptions",
    "GODSubject",
    "find_subject_files",
    "load_god_subject",
    "parse_subject",
]

logger = logging.getLogger(__name__)

#: ``DataType`` codes of the GOD files.
DATA_TYPES = {1: "training", 2: "test", 3: "imagery"}
#: File-name suffixes of the fmriprep (split) release, in concatenation order.
SPLIT_RELEASE_PARTS = ("ImageNetTraining", "ImageNetTest", "Imagery")
_REQUIRED_SPLIT_PARTS = ("ImageNetTraining", "ImageNetTest")

Release = Literal["auto", "spm", "fmriprep"]


def parse_subject(subject: int | str) -> int:
    """Subject number from ``3``, ``"3"``, ``"Subject3"`` or ``"sub-03"``."""
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
        if subject < 1:
            raise ConfigError(f"Subject number must be positive, got {subject}.")
        return int(subject)
    m = re.fullmatch(r"(?:subject|sub-?)?0*(\d+)", str(subject).strip(), flags=re.IGNORECASE)
    if m is None or int(m.group(1)) < 1:
        raise ConfigError(
            f"Cannot read a subject number from {subject!r}. Use 1-5, 'Subject3' or 'sub-03'."
        )
    return int(m.group(1))


def find_subject_files(
    god_dir: str | os.PathLike, subject: int | str, release: Release = "auto"
) -> tuple[Path, ...]:
    """Locate the BData file(s) of one subject.

    Parameters
    ----------
    god_dir : str or path-like
        Folder holding the subject files.
    subject : int or str
        Subject number (1-5) or a name like ``"Subject3"``.
    release : {"auto", "spm", "fmriprep"}
        ``"spm"``: the single file ``SubjectN.h5``; ``"fmriprep"``: the split
        files ``SubjectN_ImageNetTraining.h5``, ``SubjectN_ImageNetTest.h5`` and
        (optional) ``SubjectN_Imagery.h5``; ``"auto"``: whichever is present
        (an error if both are, since their voxels differ).

    Returns
    -------
    tuple of pathlib.Path
        One file (SPM) or the split files in training, test, imagery order.

    Raises
    ------
    MissingDataFileError
        The folder or the files are missing; the message lists the names looked for.
    ConfigError
        Both releases are present with ``release="auto"``, or bad arguments.
    """
    if release not in ("auto", "spm", "fmriprep"):
        raise ConfigError(f"release must be 'auto', 'spm' or 'fmriprep', got {release!r}.")
    god_dir = Path(god_dir)
    n = parse_subject(subject)
    if not god_dir.is_dir():
        raise MissingDataFileError(
            f"GOD data folder {god_dir} does not exist. Pass the folder that holds "
            f"Subject{n}.h5 (or the Subject{n}_ImageNetTraining.h5 split files)."
        )
    single = god_dir / f"Subject{n}.h5"
    split = [god_dir / f"Subject{n}_{part}.h5" for part in SPLIT_RELEASE_PARTS]
    have_single = single.is_file()
    have_split = all((god_dir / f"Subject{n}_{p}.h5").is_file() for p in _REQUIRED_SPLIT_PARTS)
    if release == "auto" and have_single and have_split:
        raise ConfigError(
            f"{god_dir} holds both the SPM release ({single.name}) and the fmriprep split "
            f"release ({split[0].name}, ...) of subject {n}; their voxels differ. Choose "
            "one with release='spm' or release='fmriprep' (CLI: --release)."
        )
    if release in ("auto", "spm") and have_single:
        return (single,)
    if release in ("auto", "fmriprep") and have_split:
        return tuple(p for p in split if p.is_file())
    looked = {
        "auto": [single.name, *(p.name for p in split)],
        "spm": [single.name],
        "fmriprep": [p.name for p in split],
    }[release]
    present = sorted(p.name for p in god_dir.glob("*.h5"))
    raise MissingDataFileError(
        f"No GOD fMRI file for subject {n} in {god_dir}: looked for "
        f"{', '.join(looked)} (the split release needs at least the ImageNetTraining "
        f"and ImageNetTest files). .h5 files there: {', '.join(present) or 'none'}. "
        "Download the subject files from figshare (article 7387130) into this folder."
    )


@dataclass(frozen=True, eq=False)
class GODSubject:
    """fMRI samples of one GOD subject restricted to one ROI.

    Arrays are read-only.

    Attributes
    ----------
    subject : int
        Subject number.
    roi : str
        The ROI query used to select voxels.
    voxels : ndarray of shape (n_samples, n_voxels), float32
        Voxel responses, one row per sample (trial / volume average).
    stimulus_ids : ndarray of shape (n_samples,), float64
        GOD stimulus ids (category + image number / 1e6; for imagery samples the
        category).  Compare them via :func:`fmri2image.data.ids.stimulus_id_keys`.
    wnids : ndarray of shape (n_samples,), object
        WordNet id of each sample's category (``"n01518878"``).
    runs : ndarray of shape (n_samples,), int64
        ``Run`` label as stored.  Run numbers may restart per data type, so group
        by :attr:`run_groups` when normalizing per run.
    data_types : ndarray of shape (n_samples,), int64
        1 training, 2 test, 3 imagery.
    voxel_xyz : ndarray of shape (n_voxels, 3) or None
        Voxel coordinates (``voxel_x/y/z`` metadata) if the file has them.
    roi_sizes : dict of str to int
        Voxel count of every ``ROI_*`` key in the file (full file, not the query).
    sources : tuple of pathlib.Path
        Files the samples came from, in concatenation order.
    sample_source : ndarray of shape (n_samples,), int64
        Index into ``sources`` of each sample's file.
    n_dropped_nan_voxels : int
        Voxel columns dropped because they contained NaN (``drop_nan_voxels``).
    """

    subject: int
    roi: str
    voxels: np.ndarray
    stimulus_ids: np.ndarray
    wnids: np.ndarray
    runs: np.ndarray
    data_types: np.ndarray
    voxel_xyz: np.ndarray | None
    roi_sizes: dict[str, int]
    sources: tuple[Path, ...]
    sample_source: np.ndarray = field(repr=False)
    n_dropped_nan_voxels: int = 0

    def __post_init__(self) -> None:
        n = self.voxels.shape[0]
        for name in ("stimulus_ids", "wnids", "runs", "data_types", "sample_source"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise DataFormatError(
                    f"GODSubject.{name} has shape {arr.shape}; expected ({n},), one value "
                    "per sample."
                )
        if self.voxel_xyz is not None and self.voxel_xyz.shape != (self.voxels.shape[1], 3):
            raise DataFormatError(
                f"GODSubject.voxel_xyz has shape {self.voxel_xyz.shape}; expected "
                f"({self.voxels.shape[1]}, 3)."
            )
        for name in ("voxels", "stimulus_ids", "wnids", "runs", "data_types", "sample_source"):
            getattr(self, name).setflags(write=False)
        if self.voxel_xyz is not None:
            self.voxel_xyz.setflags(write=False)

    def __repr__(self) -> str:
        counts = {DATA_TYPES[k]: int((self.data_types == k).sum()) for k in DATA_TYPES}
        return (
            f"GODSubject(subject={self.subject}, roi={self.roi!r}, "
            f"n_samples={self.n_samples}, n_voxels={self.n_voxels}, {counts})"
        )

    @property
    def n_samples(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.voxels.shape[1])

    @property
    def categories(self) -> np.ndarray:
        """Category (WordNet offset) per sample, int64 of shape (n_samples,)."""
        from fmri2image.data.ids import stimulus_ids_to_categories

        return stimulus_ids_to_categories(self.stimulus_ids)

    @property
    def run_groups(self) -> np.ndarray:
        """One integer per distinct ``(source file, data type, run)``, shape (n_samples,).

        A GOD run holds one data type, but run numbers can restart per data type
        and per file; this label identifies runs unambiguously.
        """
        combo = np.stack([self.sample_source, self.data_types, self.runs], axis=1)
        _, inverse = np.unique(combo, axis=0, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64)

    def mask(self, data_type: int) -> np.ndarray:
        """Boolean mask of samples with ``DataType == data_type``, shape (n_samples,)."""
        return self.data_types == data_type


@dataclass
class _Part:
    path: Path
    voxels: np.ndarray
    stimulus_ids: np.ndarray
    runs: np.ndarray
    data_types: np.ndarray
    voxel_xyz: np.ndarray | None
    roi_sizes: dict[str, int]


def _roi_keys(bd: BDataFile) -> list[str]:
    return [k for k in bd.keys if k.startswith("ROI_")]


def _roi_sizes(bd: BDataFile, voxel_mask: np.ndarray | None) -> dict[str, int]:
    sizes = {}
    for key in _roi_keys(bd):
        m = bd.metadata(key) == 1
        if voxel_mask is not None:
            m &= voxel_mask
        sizes[key] = int(m.sum())
    return sizes


def _label(bd: BDataFile, *names: str) -> np.ndarray:
    for name in names:
        if name in bd:
            return bd.get(name)
    raise DataFormatError(
        f"{bd.path} has no {' or '.join(repr(n) for n in names)} column, which every GOD "
        f"sample needs. Metadata keys present: {', '.join(bd.keys)}. Is this a GOD "
        "subject file (Subject1.h5 ... Subject5.h5 from figshare article 7387130)?"
    )


def _load_part(path: Path, roi: str) -> _Part:
    bd = read_bdata(path)
    voxel_mask = bd.metadata("VoxelData") == 1 if "VoxelData" in bd else None
    try:
        mask = bd.column_mask(roi)
    except MetadataKeyError as exc:
        rois = _roi_keys(bd)
        raise DataFormatError(
            f"ROI {roi!r} is not in {path}. Available ROIs: {', '.join(rois) or 'none'}. "
            "Pass one of them (or an expression like 'ROI_V1 + ROI_V2', 'ROI_V*') with "
            "roi= / --roi."
        ) from exc
    if voxel_mask is not None and (mask & ~voxel_mask).any():
        bad = [k for k in bd.keys if (bd.metadata(k) == 1)[mask & ~voxel_mask].any()]
        raise DataFormatError(
            f"ROI query {roi!r} selects {int((mask & ~voxel_mask).sum())} column(s) of "
            f"{path} that are not voxels (keys: {', '.join(bad[:5])}). Select ROI_* keys "
            "only."
        )
    if not mask.any():
        raise DataFormatError(
            f"ROI query {roi!r} selects no voxel in {path}. Available ROIs: "
            f"{', '.join(_roi_keys(bd)) or 'none'}."
        )
    if "DataType" not in bd:
        raise DataFormatError(
            f"{path} has no 'DataType' column, so training (1), test (2) and imagery (3) "
            f"samples cannot be told apart. Keys present: {', '.join(bd.keys)}. Use the "
            "GOD subject files from figshare article 7387130 (v5 or later)."
        )
    data_types = bd.get("DataType")
    runs = _label(bd, "Run")
    ids = _label(bd, "stimulus_id", "Label")
    for name, arr in (("DataType", data_types), ("Run", runs)):
        if np.isnan(arr).any():
            raise DataFormatError(
                f"{int(np.isnan(arr).sum())} samples of {path} have NaN {name}. The file is "
                "damaged; download it again."
            )
    keep = np.isin(data_types, list(DATA_TYPES))
    if not keep.all():
        logger.info(
            "%s: ignoring %d samples whose DataType is not 1/2/3", path.name, int((~keep).sum())
        )
    idx = np.flatnonzero(mask)
    voxels = bd.select(roi, dtype=np.float32)[keep]
    xyz = None
    if all(k in bd for k in ("voxel_x", "voxel_y", "voxel_z")):
        xyz = np.stack([bd.metadata(k)[idx] for k in ("voxel_x", "voxel_y", "voxel_z")], axis=1)
    part = _Part(
        path=path,
        voxels=voxels,
        stimulus_ids=ids[keep],
        runs=runs[keep].astype(np.int64),
        data_types=data_types[keep].astype(np.int64),
        voxel_xyz=xyz,
        roi_sizes=_roi_sizes(bd, voxel_mask),
    )
    return part


def _check_same_voxels(parts: list[_Part], roi: str) -> None:
    ref = parts[0]
    for p in parts[1:]:
        if p.voxels.shape[1] != ref.voxels.shape[1]:
            raise DataFormatError(
                f"ROI {roi!r} has {ref.voxels.shape[1]} voxels in {ref.path.name} but "
                f"{p.voxels.shape[1]} in {p.path.name}; split files of one subject must "
                "share their voxel columns. Do not mix files of different releases or "
                "subjects; re-download the set."
            )
        if ref.voxel_xyz is not None and p.voxel_xyz is not None:
            if not np.allclose(ref.voxel_xyz, p.voxel_xyz, equal_nan=True):
                raise DataFormatError(
                    f"Voxel coordinates of ROI {roi!r} differ between {ref.path.name} and "
                    f"{p.path.name}; the files do not describe the same voxels. Do not mix "
                    "files of different releases or subjects."
                )


def load_god_subject(
    path_or_dir: str | os.PathLike,
    subject: int | str | None = None,
    roi: str = "ROI_VC",
    *,
    release: Release = "auto",
    drop_nan_voxels: bool = False,
) -> GODSubject:
    """Load one GOD subject's samples for one ROI.

    Parameters
    ----------
    path_or_dir : str or path-like
        A subject ``.h5`` file, or the folder holding the subject files.
    subject : int or str, optional
        Subject number; required with a folder, inferred from a file name
        (``Subject3.h5``) otherwise.
    roi : str, default "ROI_VC"
        ROI query in bdpy syntax (``"ROI_V1 + ROI_V2"``, ``"ROI_V*"``, ...).
    release : {"auto", "spm", "fmriprep"}
        See :func:`find_subject_files`.
    drop_nan_voxels : bool, default False
        Drop voxel columns containing NaN instead of raising.

    Returns
    -------
    GODSubject

    Raises
    ------
    MissingDataFileError, DataFormatError, ConfigError
        Missing files, non-HDF5 or non-GOD files, unknown ROI, missing
        ``DataType``, NaN voxels, split files with different voxels.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        if subject is None:
            found = sorted(
                {
                    int(m.group(1))
                    for p in path.glob("Subject*.h5")
                    if (m := re.match(r"Subject(\d+)", p.name))
                }
            )
            raise ConfigError(
                f"{path} is a folder; say which subject to load (subject= / --subject). "
                f"Subjects found there: {found or 'none'}."
            )
        files = find_subject_files(path, subject, release)
        n = parse_subject(subject)
    else:
        if not path.exists():
            raise MissingDataFileError(
                f"{path} does not exist. Pass a GOD subject file (Subject3.h5) or the "
                "folder holding the subject files."
            )
        files = (path,)
        if subject is None:
            m = re.match(r"Subject(\d+)", path.name, flags=re.IGNORECASE)
            if m is None:
                raise ConfigError(
                    f"Cannot infer the subject number from the file name {path.name!r}; "
                    "pass subject=."
                )
            n = int(m.group(1))
        else:
            n = parse_subject(subject)
    parts = [_load_part(p, roi) for p in files]
    _check_same_voxels(parts, roi)
    voxels = np.concatenate([p.voxels for p in parts], axis=0)
    xyz = parts[0].voxel_xyz if all(p.voxel_xyz is not None for p in parts) else None
    nan_cols = np.isnan(voxels).any(axis=0)
    n_nan = int(nan_cols.sum())
    if n_nan and not drop_nan_voxels:
        raise DataFormatError(
            f"{n_nan} of {voxels.shape[1]} voxel columns of ROI {roi!r} contain NaN in "
            f"{', '.join(p.name for p in files)} (e.g. voxels outside the brain mask in some "
            "runs). Nothing is imputed silently: pass drop_nan_voxels=True (CLI: "
            "--drop-nan-voxels) to drop these columns, or choose another ROI."
        )
    if n_nan:
        logger.warning("dropping %d NaN voxel columns of %s", n_nan, roi)
        voxels = np.ascontiguousarray(voxels[:, ~nan_cols])
        xyz = None if xyz is None else xyz[~nan_cols]
    stimulus_ids = np.concatenate([p.stimulus_ids for p in parts]).astype(np.float64)
    return GODSubject(
        subject=n,
        roi=roi,
        voxels=voxels,
        stimulus_ids=stimulus_ids,
        wnids=stimulus_ids_to_wnids(stimulus_ids),
        runs=np.concatenate([p.runs for p in parts]),
        data_types=np.concatenate([p.data_types for p in parts]),
        voxel_xyz=None if xyz is None else np.asarray(xyz, dtype=np.float64),
        roi_sizes=parts[0].roi_sizes,
        sources=tuple(p.path for p in parts),
        sample_source=np.concatenate(
            [np.full(len(p.runs), i, dtype=np.int64) for i, p in enumerate(parts)]
        ),
        n_dropped_nan_voxels=n_nan,
    )


# ---------------------------------------------------------------------- the dataset seam
@dataclass(frozen=True)
class GODOptions:
    """Options of the GOD dataset (``data.options``).

    Attributes
    ----------
    release : {"auto", "spm", "fmriprep"}
        Which release to read when the folder holds both: ``SubjectN.h5`` (spm) or
        ``SubjectN_ImageNetTraining.h5`` ... (fmriprep).
    """

    release: str = "auto"

    def __post_init__(self) -> None:
        if self.release not in ("auto", "spm", "fmriprep"):
            raise ConfigError(
                f"release must be auto, spm or fmriprep, got {self.release!r} (--release)."
            )


#: GOD's split names (``DataType`` codes and stimulus folders) in the pipeline's words.
_SPLIT_OF_TYPE = {1: "train", 2: "test", 3: "imagery"}
_FOLDER_OF_SPLIT = {"train": "training", "test": "test"}


class GODDataset(Dataset):
    """The Generic Object Decoding dataset (Horikawa & Kamitani 2017) in its release
    layout: BData HDF5 subject files (SPM or fmriprep release), the stimulus id files
    and the ``training/`` and ``test/`` image folders.

    Training samples show each training image once; test samples repeat each test
    image (averaged by :func:`~fmri2image.data.dataset.split_recording`); imagery
    samples imagine a test category and are scored against its test image.  Labels
    are WordNet ids (the integer part of the stimulus id).
    """

    name = "god"
    description = (
        "Generic Object Decoding (Horikawa & Kamitani 2017): BData HDF5 subject files "
        "(SPM SubjectN.h5 or the fmriprep split release), id files and image folders"
    )
    vocabulary = "wordnet"
    Options = GODOptions

    def subjects(self) -> tuple[int, ...]:
        found = {
            int(m.group(1))
            for p in self.path.glob("Subject*.h5")
            if (m := re.match(r"Subject(\d+)", p.name))
        }
        return tuple(sorted(found))

    def files(self, subject: int) -> tuple[Path, ...]:
        return find_subject_files(self.path, subject, self.options.release)  # type: ignore[arg-type]

    def _stimulus_set(self, split: str):
        """The id file and image folder of ``split``, read once per dataset object
        (every subject and ROI a run loads maps its samples onto the same sets)."""
        from fmri2image.data.stimuli import load_stimulus_set

        if split not in _FOLDER_OF_SPLIT:
            raise ConfigError(f"GOD has train and test stimuli, not {split!r}.")
        sets = self.__dict__.setdefault("_sets", {})
        if split not in sets:
            sets[split] = load_stimulus_set(self.path, _FOLDER_OF_SPLIT[split])  # type: ignore[arg-type]
        return sets[split]

    def stimuli(self, split: str) -> Stimuli:
        stim = self._stimulus_set(split)
        return Stimuli(
            split=split,
            stems=tuple(stim.image_names),
            labels=tuple(stim.wnids),
            files=tuple(Path(p) for p in stim.paths),  # load_stimulus_set raises on a missing one
            source=stim.id_file,
        )

    def check_images(self, stimuli: Stimuli, *, progress: bool = True) -> None:
        from fmri2image.data.images import check_images_readable

        assert stimuli.files is not None
        check_images_readable(
            stimuli.files,
            what=f"{_FOLDER_OF_SPLIT[stimuli.split]} stimulus images",
            position_name=f"row of {Path(str(stimuli.source)).name}",
            progress=progress,
        )

    def load(self, subject: int, roi: str, *, drop_nan_voxels: bool = False) -> Recording:
        subj = load_god_subject(
            self.path,
            subject,
            roi=roi,
            release=self.options.release,  # type: ignore[arg-type]
            drop_nan_voxels=drop_nan_voxels,
        )
        split = np.array([_SPLIT_OF_TYPE[int(t)] for t in subj.data_types], dtype=object)
        stimulus = np.full(subj.n_samples, -1, dtype=np.int64)
        sets = {s: self._stimulus_set(s) for s in ("train", "test")}
        for s, stim in sets.items():
            m = split == s
            if m.any():
                stimulus[m] = stim.index_of(subj.stimulus_ids[m])
        imagery = split == "imagery"
        if imagery.any():  # the test image of the imagined category, when it has exactly one
            test = sets["test"]
            test_cats = test.keys // 1_000_000
            cats, counts = np.unique(test_cats, return_counts=True)
            row_of = {
                int(c): int(np.flatnonzero(test_cats == c)[0])
                for c, k in zip(cats, counts)
                if k == 1
            }
            stimulus[imagery] = [row_of.get(int(c), -1) for c in subj.categories[imagery]]
        return Recording(
            subject=subj.subject,
            roi=roi,
            voxels=subj.voxels,
            split=split,
            stimulus=stimulus,
            runs=subj.run_groups,
            groups=subj.categories.astype(np.int64),
            roi_sizes=dict(subj.roi_sizes),
            sources=subj.sources,
            n_dropped_nan_voxels=subj.n_dropped_nan_voxels,
        )
