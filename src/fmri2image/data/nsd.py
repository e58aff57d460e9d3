"""The Natural Scenes Dataset (Allen et al. 2022) as MindEye2 distributes it.

MindEye2 (Scotti et al. 2024) publishes NSD's single-trial betas, reduced to the
``nsdgeneral`` voxels, on the Hugging Face hub as the dataset ``pscotti/mindeyev2``.
A folder that mirrors that repository holds::

    betas_all_subj01_fp32_renorm.hdf5     dataset "betas": (trials, voxels) float32,
                                          every session z-scored; row = global trial
    coco_images_224_float16.hdf5          dataset "images": (73000, 3, 224, 224) float16
                                          in [0, 1]; row = the 0-based 73k image id
    shared1000.npy                        bool[73000]: the images every subject saw
    COCO_73k_annots_curated.npy           (73000, 5) COCO captions, '' padded
    wds/subj01/train/0.tar ... 39.tar     one webdataset tar per scan session
    wds/subj01/new_test/0.tar             the shared-image trials of every session

The tars hold no brain data, only behaviour: webdataset samples keyed
``sample%09d`` whose members ``<key>.behav.npy`` ((1, 17) float64; -1 = missing),
``<key>.past_behav.npy`` / ``<key>.future_behav.npy`` ((15, 17)) and
``<key>.olds_behav.npy`` ((3, 17)) describe the trial and its neighbours.  Columns of
``behav`` (MindEye2's README and ``src/dataset_creation.ipynb``): 0 the 0-based 73k
image id, 1 subject, 2 session, 3 run, 4 trial, 5 the global trial (the row of
``betas``), 6 time, 7 isold, 8 iscorrect, 9 rt, 10 changemind, 11 isoldcurrent, 12
iscorrectcurrent, 13 total1, 14 total2, 15 button, 16 is_shared1000.  Only ``behav``
is read here, with the standard library's :mod:`tarfile` and ``np.load`` without
pickles (no webdataset dependency).

Splits follow MindEye2 (``src/Train.ipynb``): the training samples are the single
trials of the ``train`` tars of the subject's sessions (40, 40, 32, 30, 40, 32, 40,
30 for subjects 1-8; :attr:`NSDOptions.sessions` takes fewer, as MindEye2's
``--num_sessions``); a training trial whose image is a test image (shared1000, or a
trial of a ``new_test`` tar) is dropped, with a logged count, so no test image is
ever trained on.  The test samples are the trials of ``new_test/0.tar`` (3,000 for
subjects 1, 2, 5 and 7; fewer for the others), up to three repetitions per shared
image; MindEye2 averages the model's *outputs* over an image's repetitions, so
:attr:`NSDDataset.average` is ``"predictions"`` (:func:`split_recording` and the
mapping stage do the averaging; where MindEye2 repeats a trial to fill three slots,
the trials present are averaged).

The stimuli are arrays in ``coco_images_224_float16.hdf5``; stems ``nsd73k-%05d``
with the 0-based 73k id, labels the image's first non-empty curated COCO caption
(free text).  The stimuli of a split are the images of that split's trials of every
subject in the folder (NSD's training images differ per subject), sorted by id.

Original NSD for comparison: ``nsd_expdesign.mat``, ``nsd_stimuli.hdf5`` (``imgBrick``
(73000, 425, 425, 3) uint8) and per-session NIfTI betas; its 73KID is 1-based.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image.data.dataset import Dataset, Recording, RemoteFile, Stimuli, make_dataset_options
from fmri2image.data.fixtures import FixturePictures, Respond
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError

__all__ = [
    "BEHAV_COLUMNS",
    "HUB_REPO",
    "SESSIONS",
    "NSDDataset",
    "NSDFixture",
    "NSDOptions",
    "betas_name",
    "read_behav_tar",
    "write_nsd_fixture",
]

log = logging.getLogger(__name__)

#: The hub dataset the files come from.
HUB_REPO = "pscotti/mindeyev2"
#: Scan sessions (= train tars) per subject in MindEye2's release (``nsessions_allsubj``).
SESSIONS = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
#: The columns of a ``behav.npy`` row.
BEHAV_COLUMNS = (
    "cocoidx", "subject", "session", "run", "trial", "global_trial", "time", "isold",
    "iscorrect", "rt", "changemind", "isoldcurrent", "iscorrectcurrent", "total1",
    "total2", "button", "shared1000",
)  # fmt: skip
_COL = {name: i for i, name in enumerate(BEHAV_COLUMNS)}
#: The only ROI of the release: MindEye2 kept the nsdgeneral voxels.
ROI = "nsdgeneral"
IMAGES = "coco_images_224_float16.hdf5"
SHARED = "shared1000.npy"
ANNOTS = "COCO_73k_annots_curated.npy"
#: Trials per session in NSD (the release's global trial = (session - 1) * 750 + trial).
TRIALS_PER_SESSION = 750
_MEMBERS = ("behav.npy", "past_behav.npy", "future_behav.npy", "olds_behav.npy")
_MAX_MEMBER = 1 << 16  # a behav member is a few hundred bytes; refuse anything large
_FIX = "fmri2image download nsd --subjects {n} --dest DIR"


def betas_name(subject: int) -> str:
    """``betas_all_subj01_fp32_renorm.hdf5`` for subject 1."""
    return f"betas_all_subj{subject:02d}_fp32_renorm.hdf5"


def _train_tar(subject: int, session: int) -> str:
    """The tar of 0-based ``session`` (``wds/subj01/train/0.tar``)."""
    return f"wds/subj{subject:02d}/train/{session}.tar"


def _test_tar(subject: int) -> str:
    return f"wds/subj{subject:02d}/new_test/0.tar"


def _subject_number(subject: Any) -> int:
    if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool) and subject > 0:
        return int(subject)
    raise ConfigError(f"NSD subjects are numbers 1-8, got {subject!r}.")


# ---------------------------------------------------------------------- behaviour tars
def read_behav_tar(path: str | Path) -> tuple[tuple[str, ...], np.ndarray]:
    """The ``behav`` rows of one webdataset tar.

    Parameters
    ----------
    path : str or path-like
        A ``wds/subjNN/{train,new_test}/K.tar`` of the release.

    Returns
    -------
    keys : tuple of str
        The sample keys (``sample000000042``) in tar order.
    behav : ndarray of shape (n_samples, 17), float64
        Each sample's ``<key>.behav.npy`` (-1 = missing).

    Raises
    ------
    DataFormatError
        Not a tar, a ``behav.npy`` member that is not a (1, 17) numeric array (pickled
        arrays are refused), a duplicate key, or no sample at all.
    """
    path = Path(path)
    keys: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    where = f"{path}: "
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                key, _, ext = name.partition(".")
                if not member.isfile() or ext != "behav.npy":
                    continue
                where = f"{path}, member {member.name}: "
                if member.size > _MAX_MEMBER:
                    raise DataFormatError(
                        f"{where}{member.size} bytes; a behav.npy holds one (1, 17) float64 "
                        "row. The tar is not MindEye2's; download it again."
                    )
                fh = tar.extractfile(member)
                if fh is None:  # pragma: no cover - isfile() members always have data
                    continue
                arr = np.load(io.BytesIO(fh.read()), allow_pickle=False)
                if arr.dtype.kind not in "fiub" or arr.size != len(BEHAV_COLUMNS):
                    raise DataFormatError(
                        f"{where}holds a {arr.dtype} array of shape {arr.shape}; MindEye2's "
                        "behav.npy is (1, 17) float64. The tar is damaged or not from "
                        f"{HUB_REPO}; download it again."
                    )
                if key in seen:
                    raise DataFormatError(
                        f"{where}the sample key {key!r} occurs twice; a webdataset tar "
                        "holds each sample once. Download the tar again."
                    )
                seen.add(key)
                keys.append(key)
                rows.append(arr.reshape(-1).astype(np.float64))
    except DataFormatError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        why = " ".join(str(exc).split())  # tarfile lists each method it tried on a line
        raise DataFormatError(
            f"{where}cannot be read as a webdataset tar of behav.npy arrays ({why}). The "
            f"file is damaged or truncated; download it again from {HUB_REPO}."
        ) from exc
    if not rows:
        raise DataFormatError(
            f"{path} holds no <key>.behav.npy sample, so it describes no trial. Is it a "
            f"tar of MindEye2's wds/ folder ({HUB_REPO})? Download it again."
        )
    return tuple(keys), np.stack(rows)


# ---------------------------------------------------------------------- options
@dataclass(frozen=True)
class NSDOptions:
    """Options of the NSD dataset (``data.options``).

    Attributes
    ----------
    sessions : int or None
        Train on the first ``sessions`` scan sessions of each subject (MindEye2's
        ``--num_sessions``; a subject with fewer keeps all of its own); None: every
        session of the release (:data:`SESSIONS`).  The tars of these sessions must be
        present.  A fixture written with fewer sessions is read with its count.
    """

    sessions: int | None = None

    def __post_init__(self) -> None:
        s = self.sessions
        if s is not None and (not isinstance(s, int) or isinstance(s, bool) or s < 1):
            raise ConfigError(
                f"sessions must be a positive number of scan sessions or None (all), got {s!r}."
            )


@dataclass(frozen=True, eq=False)
class _Trials:
    """One subject's trials as the tars describe them (after the leak check)."""

    train: np.ndarray  # (n_train, 17) behav rows
    test: np.ndarray  # (n_test, 17)
    sources: tuple[Path, ...]
    n_dropped: int = 0


@dataclass(frozen=True, eq=False)
class _Raw:
    train: np.ndarray
    test: np.ndarray
    train_tars: tuple[Path, ...]
    test_tar: Path
    n_rows: int = field(default=0)


# ---------------------------------------------------------------------- the dataset
class NSDDataset(Dataset):
    """NSD as MindEye2 distributes it (see the module docstring): nsdgeneral betas in
    HDF5, webdataset tars of behaviour, the COCO images in HDF5, curated captions.

    Training samples are single trials; test samples are the shared-image trials,
    each image's repetitions averaged after prediction (``average = "predictions"``).
    Labels are free text: the image's first non-empty COCO caption.
    """

    name = "nsd"
    description = (
        "Natural Scenes Dataset as MindEye2 distributes it (hub pscotti/mindeyev2): "
        "nsdgeneral betas HDF5, webdataset behaviour tars, COCO images HDF5, captions"
    )
    vocabulary = "text"
    Options = NSDOptions
    default_rois = (ROI,)
    # MindEye2's low-level pathway reads the same nsdgeneral voxels.
    early_visual_rois = (ROI,)
    eval_splits = ("test",)
    average = "predictions"
    known_subjects = tuple(SESSIONS)
    where_to_get = (
        f"the Hugging Face hub dataset {HUB_REPO} (MindEye2's NSD release; accept the NSD "
        "terms first): fmri2image download nsd --subjects N --dest DIR"
    )

    # ------------------------------------------------------------------ files
    def subjects(self) -> tuple[int, ...]:
        found = {
            int(m.group(1))
            for p in self.path.glob("betas_all_subj*_fp32_renorm.hdf5")
            if (m := re.fullmatch(r"betas_all_subj(\d+)_fp32_renorm\.hdf5", p.name))
        }
        return tuple(sorted(found))

    def n_sessions(self, subject: int) -> int:
        """The train tars read for ``subject`` (its release count, or fewer by
        :attr:`NSDOptions.sessions`)."""
        n = _subject_number(subject)
        if n not in SESSIONS:
            raise ConfigError(
                f"NSD subject {n} is not in MindEye2's release; its subjects: "
                f"{', '.join(map(str, SESSIONS))}."
            )
        limit = self.options.sessions
        return SESSIONS[n] if limit is None else min(limit, SESSIONS[n])

    def _missing(self, path: Path, subject: int | None, what: str) -> MissingDataFileError:
        fix = _FIX.format(n=subject if subject is not None else "N")
        return MissingDataFileError(
            f"{path} does not exist: NSD as MindEye2 distributes it needs {what}. Download "
            f"it from the hub dataset {HUB_REPO} with `{fix}` (the folder mirrors the hub "
            "repository) and pass that folder with --data."
        )

    def files(self, subject: int) -> tuple[Path, ...]:
        """The betas, the train tars of the sessions read, the test tar, and the
        shared1000 and caption files (they decide the split and the labels, so their
        identity keys the cache too)."""
        n = _subject_number(subject)
        if not self.path.is_dir():
            raise self._missing(self.path, n, "a folder that mirrors the hub repository")
        betas = self.path / betas_name(n)
        if not betas.is_file():
            raise self._missing(betas, n, f"the betas of subject {n}")
        tars = [self.path / _train_tar(n, s) for s in range(self.n_sessions(n))]
        missing = [t for t in tars if not t.is_file()]
        if missing:
            have = len(tars) - len(missing)
            raise MissingDataFileError(
                f"{missing[0]} does not exist: subject {n} has {len(tars)} train tars "
                f"(wds/subj{n:02d}/train/0.tar ... {len(tars) - 1}.tar), {have} are here "
                f"and {len(missing)} missing. Download them with `{_FIX.format(n=n)}`, or "
                "train on the first sessions only with data.options.sessions = K (CLI: "
                "--set 'data.options={ sessions = K }')."
            )
        test = self.path / _test_tar(n)
        if not test.is_file():
            raise self._missing(test, n, f"the test trials of subject {n}")
        shared = [self.path / SHARED, self.path / ANNOTS]
        for p in shared:
            if not p.is_file():
                raise self._missing(p, n, "the release's shared files")
        return (betas, *tars, test, *shared)

    # ------------------------------------------------------------------ reading
    def _cache(self) -> dict[str, Any]:
        return self.__dict__.setdefault("_nsd_cache", {})

    def _betas_shape(self, path: Path) -> tuple[int, int]:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if "betas" not in f:
                    raise DataFormatError(
                        f"{path} has no dataset 'betas' (it has: "
                        f"{', '.join(f.keys()) or 'nothing'}); MindEye2's "
                        "betas_all_subjNN_fp32_renorm.hdf5 holds 'betas' (trials x voxels). "
                        f"Download it again from {HUB_REPO}."
                    )
                ds = f["betas"]
                shape = getattr(ds, "shape", None)
                if shape is None or len(shape) != 2 or ds.dtype.kind != "f":
                    raise DataFormatError(
                        f"{path}: 'betas' is {getattr(ds, 'dtype', '?')} of shape {shape}; "
                        "the release's is a float32 matrix of trials x nsdgeneral voxels. "
                        "Download it again."
                    )
                return int(shape[0]), int(shape[1])
        except DataFormatError:
            raise
        except OSError as exc:
            raise DataFormatError(
                f"{path} cannot be opened as HDF5 ({exc}); download it again from {HUB_REPO}."
            ) from exc

    def _images_info(self) -> tuple[Path, int]:
        """The images file and its number of rows (73,000 in the release)."""
        cache = self._cache()
        if "images" not in cache:
            import h5py

            path = self.path / IMAGES
            if not path.is_file():
                raise self._missing(path, None, "the stimulus images")
            try:
                with h5py.File(path, "r") as f:
                    ds = f.get("images")
                    shape = getattr(ds, "shape", None)
                    if ds is None or shape is None:
                        raise DataFormatError(
                            f"{path} has no dataset 'images' (it has: "
                            f"{', '.join(f.keys()) or 'nothing'}); the release's holds "
                            "'images' (73000, 3, 224, 224) float16. Download it again."
                        )
                    if len(shape) != 4 or shape[1] != 3 or ds.dtype.kind != "f":
                        raise DataFormatError(
                            f"{path}: 'images' is {ds.dtype} of shape {shape}; the release's "
                            "is (73000, 3, 224, 224) float16 in [0, 1] (channels first). "
                            "Download it again."
                        )
                    cache["images"] = (path, int(shape[0]))
            except DataFormatError:
                raise
            except OSError as exc:
                raise DataFormatError(
                    f"{path} cannot be opened as HDF5 ({exc}); download it again from {HUB_REPO}."
                ) from exc
        return cache["images"]

    def _npy(self, name: str) -> np.ndarray:
        cache = self._cache()
        if name not in cache:
            path = self.path / name
            if not path.is_file():
                raise self._missing(path, None, "the release's shared files")
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataFormatError(
                    f"{path} cannot be read as a .npy array without pickles ({exc}); the "
                    f"release's is a plain array. Download it again from {HUB_REPO}."
                ) from exc
            n = self._images_info()[1]
            if name == SHARED:
                ok = arr.shape == (n,) and arr.dtype.kind in "biu"
                want = f"bool[{n}] (one flag per image of {IMAGES})"
            else:
                ok = arr.ndim == 2 and arr.shape[0] == n and arr.dtype.kind in "US"
                want = f"({n}, 5) captions (strings, '' padded; one row per image of {IMAGES})"
            if not ok:
                raise DataFormatError(
                    f"{path} is {arr.dtype} of shape {arr.shape}; expected {want}. Download "
                    f"it again from {HUB_REPO}."
                )
            cache[name] = arr.astype(bool) if name == SHARED else arr
        return cache[name]

    def _raw(self, subject: int) -> _Raw:
        """The subject's behav rows, checked against the betas and the images."""
        cache = self._cache().setdefault("raw", {})
        if subject in cache:
            return cache[subject]
        files = self.files(subject)
        betas, n_sess = files[0], self.n_sessions(subject)
        train_tars, test_tar = files[1 : 1 + n_sess], files[1 + n_sess]
        n_rows, _ = self._betas_shape(betas)
        n_images = self._images_info()[1]
        parts = []
        for tar in (*train_tars, test_tar):
            _, behav = read_behav_tar(tar)
            self._check_behav(tar, behav, subject, betas, n_rows, n_images)
            parts.append(behav)
        raw = _Raw(
            train=np.concatenate(parts[:-1]) if len(parts) > 1 else parts[0][:0],
            test=parts[-1],
            train_tars=tuple(train_tars),
            test_tar=test_tar,
            n_rows=n_rows,
        )
        cache[subject] = raw
        return raw

    @staticmethod
    def _check_behav(
        tar: Path, behav: np.ndarray, subject: int, betas: Path, n_rows: int, n_images: int
    ) -> None:
        def bad(col: str, what: str, ok: np.ndarray) -> None:
            if not ok.all():
                i = int(np.flatnonzero(~ok)[0])
                raise DataFormatError(
                    f"{tar}: {int((~ok).sum())} samples have {what} (column "
                    f"{_COL[col]}, {col}; e.g. sample {i}: {behav[i, _COL[col]]:g}). The tar "
                    f"does not belong with {betas.name} and {IMAGES}; download the set "
                    f"again with `{_FIX.format(n=subject)}`."
                )

        def integral(col: str) -> np.ndarray:
            v = behav[:, _COL[col]]
            return np.isfinite(v) & (v == np.round(v))

        ids, rows = behav[:, _COL["cocoidx"]], behav[:, _COL["global_trial"]]
        bad("cocoidx", "no whole-number image id", integral("cocoidx"))
        bad("cocoidx", f"an image id outside 0..{n_images - 1} (the rows of {IMAGES})",
            (ids >= 0) & (ids < n_images))  # fmt: skip
        bad("global_trial", "no whole-number global trial", integral("global_trial"))
        bad("global_trial", f"a global trial outside the {n_rows} rows of {betas.name}",
            (rows >= 0) & (rows < n_rows))  # fmt: skip
        bad("subject", f"another subject than {subject}", behav[:, _COL["subject"]] == subject)
        for col in ("session", "run"):
            v = behav[:, _COL[col]]
            bad(col, f"no {col} number in 1..99", integral(col) & (v >= 1) & (v < 100))

    def _test_images(self) -> np.ndarray:
        """Every image a test trial of any subject here shows, and every shared1000
        image: no training trial may show one."""
        cache = self._cache()
        if "test_ids" not in cache:
            ids = [np.flatnonzero(self._npy(SHARED))]
            for n in self.subjects():
                ids.append(self._raw(n).test[:, _COL["cocoidx"]].astype(np.int64))
            cache["test_ids"] = np.unique(np.concatenate(ids))
        return cache["test_ids"]

    def _trials(self, subject: int) -> _Trials:
        cache = self._cache().setdefault("trials", {})
        if subject not in cache:
            raw = self._raw(subject)
            leak = np.isin(raw.train[:, _COL["cocoidx"]].astype(np.int64), self._test_images())
            if leak.any():
                log.warning(
                    "NSD subject %d: dropped %d training trials whose image is a test image "
                    "(shared1000 or a new_test trial), so no test image is trained on",
                    subject, int(leak.sum()),
                )  # fmt: skip
            cache[subject] = _Trials(
                train=raw.train[~leak],
                test=raw.test,
                sources=(self.path / betas_name(subject), *raw.train_tars, raw.test_tar),
                n_dropped=int(leak.sum()),
            )
        return cache[subject]

    def _ids(self, split: str) -> np.ndarray:
        """The sorted unique 73k ids of ``split``'s trials of every subject here."""
        if split not in ("train", "test"):
            raise ConfigError(f"NSD has train and test stimuli, not {split!r}.")
        cache = self._cache()
        key = f"ids/{split}"
        if key not in cache:
            subjects = self.subjects()
            if not subjects:
                raise MissingDataFileError(
                    f"No betas_all_subjNN_fp32_renorm.hdf5 in {self.path}, so no NSD "
                    f"subject is there. Download one with `{_FIX.format(n='N')}`."
                )
            ids = [
                getattr(self._trials(n), split)[:, _COL["cocoidx"]].astype(np.int64)
                for n in subjects
            ]
            cache[key] = np.unique(np.concatenate(ids))
        return cache[key]

    # ------------------------------------------------------------------ the seam
    def stimuli(self, split: str) -> Stimuli:
        ids = self._ids(split)
        annots_path = self.path / ANNOTS
        annots = self._npy(ANNOTS)
        labels = []
        for i in ids.tolist():
            caption = next((c for c in map(_text, annots[i]) if c), None)
            if caption is None:
                raise DataFormatError(
                    f"{annots_path}: image {i} (row {i}) has no non-empty caption, so it "
                    "has no label. The curated file gives every NSD image at least one; "
                    f"download it again from {HUB_REPO}."
                )
            labels.append(caption)
        images, _ = self._images_info()
        return Stimuli(
            split=split,
            stems=tuple(f"nsd73k-{i:05d}" for i in ids.tolist()),
            labels=tuple(labels),
            read=_ImageReader(images, ids),
            source=images,
        )

    def load(self, subject: int, roi: str, *, drop_nan_voxels: bool = False) -> Recording:
        if str(roi).strip() != ROI:
            raise ConfigError(
                f"ROI {roi!r} is not in NSD as MindEye2 distributes it: its betas hold the "
                f"{ROI} voxels only (no sub-ROI masks). Decode --roi {ROI}."
            )
        n = _subject_number(subject)
        trials = self._trials(n)
        behav = np.concatenate([trials.train, trials.test])
        split = np.array(["train"] * len(trials.train) + ["test"] * len(trials.test), dtype=object)
        ids = behav[:, _COL["cocoidx"]].astype(np.int64)
        stimulus = np.empty(len(behav), dtype=np.int64)
        for s in ("train", "test"):
            m = split == s
            stimulus[m] = np.searchsorted(self._ids(s), ids[m])
        rows = behav[:, _COL["global_trial"]].astype(np.int64)
        betas = trials.sources[0]
        voxels = _read_rows(betas, rows)
        nan_cols = np.isnan(voxels).any(axis=0)
        n_nan = int(nan_cols.sum())
        if n_nan and not drop_nan_voxels:
            raise DataFormatError(
                f"{n_nan} of {voxels.shape[1]} voxel columns of {betas} contain NaN. Nothing "
                "is imputed silently: pass drop_nan_voxels=True (CLI: --drop-nan-voxels) to "
                "drop these columns, or download the file again."
            )
        if n_nan:
            log.warning("dropping %d NaN voxel columns of %s", n_nan, betas.name)
            voxels = np.ascontiguousarray(voxels[:, ~nan_cols])
        runs = behav[:, _COL["session"]].astype(np.int64) * 100 + behav[:, _COL["run"]].astype(
            np.int64
        )
        return Recording(
            subject=n,
            roi=ROI,
            voxels=voxels,
            split=split,
            stimulus=stimulus,
            runs=runs,
            groups=ids,
            roi_sizes={ROI: int(nan_cols.size)},
            sources=trials.sources,
            n_dropped_nan_voxels=n_nan,
        )

    @classmethod
    def remote_files(cls, subjects: Sequence[int], **options: Any) -> tuple[RemoteFile, ...]:
        """The hub files of ``subjects``: each one's betas, train tars (the sessions
        :attr:`NSDOptions.sessions` asks for) and test tar, then the shared images,
        shared1000 and caption files once."""
        opts = make_dataset_options(cls.Options, options, dataset=cls.name)
        names: list[str] = []
        for subject in subjects:
            n = subject if isinstance(subject, (int, np.integer)) else None
            if n is None or isinstance(subject, bool) or int(n) not in SESSIONS:
                raise ConfigError(
                    f"NSD subject {subject!r} is not in MindEye2's release ({HUB_REPO}); its "
                    f"subjects: {', '.join(map(str, SESSIONS))}."
                )
            n = int(n)
            k = SESSIONS[n] if opts.sessions is None else min(opts.sessions, SESSIONS[n])
            names += [betas_name(n), *(_train_tar(n, s) for s in range(k)), _test_tar(n)]
        names += [IMAGES, SHARED, ANNOTS]
        return tuple(
            RemoteFile(name=name, url=f"hf://datasets/{HUB_REPO}/{name}")
            for name in dict.fromkeys(names)
        )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return str(value).strip()


def _read_rows(path: Path, rows: np.ndarray, block: int = 2048) -> np.ndarray:
    """``betas[rows]`` as float32, read in contiguous blocks (h5py's fancy indexing is
    slow and needs increasing indices)."""
    import h5py

    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    try:
        with h5py.File(path, "r") as f:
            ds = f["betas"]
            out = np.empty((rows.size, ds.shape[1]), dtype=np.float32)
            pos = 0
            while pos < sorted_rows.size:
                lo = int(sorted_rows[pos])
                hi = min(lo + block, ds.shape[0])
                end = int(np.searchsorted(sorted_rows, hi, side="left"))
                chunk = np.asarray(ds[lo:hi], dtype=np.float32)
                out[order[pos:end]] = chunk[sorted_rows[pos:end] - lo]
                pos = end
    except (OSError, KeyError) as exc:
        raise DataFormatError(
            f"{path}: the betas cannot be read ({exc}); download the file again from {HUB_REPO}."
        ) from exc
    return out


class _ImageReader:
    """``read(rows)`` of :class:`Stimuli`: the images of the stimuli at ``rows`` as
    uint8 (n, H, W, 3) RGB, from the release's float16 (3, H, W) arrays in [0, 1]."""

    def __init__(self, path: Path, ids: np.ndarray) -> None:
        self.path = path
        self.ids = np.asarray(ids, dtype=np.int64)

    def __call__(self, rows: Sequence[int]) -> np.ndarray:
        import h5py

        wanted = self.ids[np.asarray(rows, dtype=np.int64)]
        uniq, inverse = np.unique(wanted, return_inverse=True)  # h5py: increasing indices
        try:
            with h5py.File(self.path, "r") as f:
                arr = np.asarray(f["images"][uniq.tolist()], dtype=np.float32)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise DataFormatError(
                f"{self.path}: images {uniq[:5].tolist()} cannot be read ({exc}); download "
                f"the file again from {HUB_REPO}."
            ) from exc
        arr = np.nan_to_num(arr[inverse.reshape(-1)], nan=0.0)
        pixels = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


# ---------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class NSDFixture:
    """What :func:`write_nsd_fixture` wrote.

    Attributes
    ----------
    root : Path
    subjects : tuple of int
    n_sessions : int
        Train tars per subject: read the folder with ``NSDDataset(root, **options)``.
    n_voxels : int
    train_ids : dict of int to ndarray
        Each subject's training images: ``train_ids[s][i]`` is the 0-based 73k id of
        training picture ``i`` (they differ per subject, as in NSD).
    test_ids : ndarray
        The 73k id of each test picture (shared by every subject, as shared1000).
    n_images_73k : int
        Rows of the images, shared1000 and caption files (the release: 73,000).
    """

    root: Path
    subjects: tuple[int, ...]
    n_sessions: int
    n_voxels: int
    train_ids: dict[int, np.ndarray]
    test_ids: np.ndarray
    n_images_73k: int

    @property
    def options(self) -> dict[str, Any]:
        """The dataset options that read this fixture (its session count)."""
        return {"sessions": self.n_sessions}


def _captions(category: int, picture: int, rng: np.random.Generator) -> list[str]:
    """Up to five captions, '' padded at the end (as the curated file), the first one
    naming the category."""
    said = [
        f"a photo of category {category}",
        f" a picture of category {category}, image {picture} ",
        f"coloured blobs of category {category} on a grey ground",
        f"image {picture} of category {category}",
        f"category {category}: blobs",
    ]
    k = int(rng.integers(1, 6))
    return said[:k] + [""] * (5 - k)


def _behav_row(
    image: int, subject: int, session: int, run: int, trial: int, row: int,
    isold: int, shared: bool, rng: np.random.Generator,
) -> np.ndarray:  # fmt: skip
    correct = int(rng.integers(0, 2))
    return np.array(
        [image, subject, session, run, trial, row, 737_000 + session, isold, correct,
         float(rng.integers(400, 1500)), 0, isold, correct, -1, -1,
         float(rng.integers(1, 3)), int(shared)],
        dtype=np.float64,
    )  # fmt: skip


def _sample(
    behav: np.ndarray, image_id: np.ndarray, row: int, rows: np.ndarray
) -> dict[str, np.ndarray]:
    """The members of trial ``row`` of a session (``rows``): its behav, the 15 trials
    before and after it in the session and the image's other repetitions (-1 rows where
    there are none), as dataset_creation.ipynb fills them."""
    missing = np.full((1, len(BEHAV_COLUMNS)), -1.0)
    pos = int(np.searchsorted(rows, row))
    past = np.repeat(missing, 15, axis=0)
    future = np.repeat(missing, 15, axis=0)
    for d in range(1, 16):
        if pos - d >= 0:
            past[d - 1] = behav[rows[pos - d]]
        if pos + d < rows.size:
            future[d - 1] = behav[rows[pos + d]]
    olds = np.repeat(missing, 3, axis=0)
    others = [r for r in np.flatnonzero(image_id == image_id[row]).tolist() if r != row]
    for m, r in enumerate(others[:3]):
        olds[m] = behav[r]
    return {"behav.npy": behav[row][None], "past_behav.npy": past,
            "future_behav.npy": future, "olds_behav.npy": olds}  # fmt: skip


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _write_tar(path: Path, samples: list[tuple[str, dict[str, np.ndarray]]]) -> None:
    """A webdataset tar: members ``<key>.<ext>`` in sorted extension order, as
    webdataset's TarWriter writes them (mode 0o444, owner bigdata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for ext in sorted(members):
                data = _npy_bytes(members[ext])
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mode = 0o444
                info.uname = info.gname = "bigdata"
                info.mtime = 1_700_000_000
                tar.addfile(info, io.BytesIO(data))


def write_nsd_fixture(
    root: str | Path,
    *,
    subjects: Sequence[int] = (1,),
    train: FixturePictures | None = None,
    test: FixturePictures | None = None,
    n_train_repeats: int = 1,
    n_test_repeats: int = 3,
    n_voxels: int = 120,
    respond: Respond | None = None,
    n_sessions: int = 2,
    runs_per_session: int = 3,
    n_images_73k: int | None = None,
    image_size: int | None = None,
    seed: int = 0,
) -> NSDFixture:
    """Write a small NSD folder in the exact layout of MindEye2's hub release.

    Every file of :meth:`NSDDataset.remote_files` is written with the release's
    names, HDF5 datasets, dtypes and webdataset member names: per subject the betas
    (each session z-scored per voxel, as the release) and ``n_sessions`` train tars
    plus ``new_test/0.tar``; once the images, shared1000 and caption files.  Each
    subject sees every training picture ``n_train_repeats`` times under ids of its own
    and every test picture ``n_test_repeats`` times (ids shared by all subjects, flagged
    in shared1000); the trials are shuffled over sessions and runs.  Global trials
    number the trials of a subject in session order (the release has 750 per session).

    Parameters
    ----------
    root : str or path-like
    subjects : sequence of int
        NSD subjects (1-8); ``n_sessions`` must not exceed their release count.
    train, test : FixturePictures, optional
        Default: :func:`~fmri2image.data.fixtures.fixture_pictures` with 10 categories,
        6 training pictures and 1 test picture each.
    n_train_repeats, n_test_repeats : int
    n_voxels : int
        nsdgeneral voxels.
    respond : Respond, optional
        ``respond(images, rng) -> (n, n_voxels)``; default
        :func:`~fmri2image.data.fixtures.planted_response` (seeded by ``seed``).
    n_sessions, runs_per_session : int
    n_images_73k : int, optional
        Rows of the images, shared1000 and caption files; the pictures' ids are placed
        at random among them.  Default: four times the pictures written (at least 64);
        the release has 73,000.
    image_size : int, optional
        Side of the stored images (nearest-neighbour upsampled); default the pictures'
        own size (the release: 224).
    seed : int

    Returns
    -------
    NSDFixture
        Read the folder with ``NSDDataset(fixture.root, **fixture.options)``.
    """
    import h5py

    from fmri2image.data.fixtures import fixture_pictures, planted_response

    root = Path(root)
    subjects = tuple(_subject_number(s) for s in subjects)
    for s in subjects:
        if s not in SESSIONS:
            raise ConfigError(f"NSD subjects are 1-8, got {s}.")
        if not 1 <= n_sessions <= SESSIONS[s]:
            raise ConfigError(
                f"n_sessions must be 1..{SESSIONS[s]} for subject {s}, got {n_sessions}."
            )
    if min(n_train_repeats, n_test_repeats, runs_per_session, n_voxels) < 1:
        raise ConfigError("repeats, runs_per_session and n_voxels must be positive.")
    train = train if train is not None else fixture_pictures(10, 6, seed=seed)
    test = test if test is not None else fixture_pictures(10, 1, seed=seed + 1)
    respond = respond if respond is not None else planted_response(n_voxels, seed=seed)
    rng = np.random.default_rng(seed)
    n_pictures = len(train) * len(subjects) + len(test)
    n73k = n_images_73k if n_images_73k is not None else max(64, 4 * n_pictures)
    if n73k < n_pictures:
        raise ConfigError(f"n_images_73k={n73k} cannot hold {n_pictures} pictures.")
    placed = rng.permutation(n73k)[:n_pictures]
    test_ids = np.sort(placed[: len(test)])
    train_ids = {
        s: placed[len(test) + k * len(train) : len(test) + (k + 1) * len(train)]
        for k, s in enumerate(subjects)
    }
    # The shared files: images (channels first, float16 in [0, 1]), shared1000, captions.
    size = image_size or int(train.images.shape[1])
    images = np.zeros((n73k, 3, size, size), dtype=np.float16)
    captions = np.full((n73k, 5), "", dtype=object)

    def put(ids: np.ndarray, pics: FixturePictures) -> None:
        pix = pics.images
        if pix.shape[1] != size:
            idx = (np.arange(size) * pix.shape[1] // size).astype(np.int64)
            pix = pix[:, idx][:, :, idx]
        images[ids] = (pix.transpose(0, 3, 1, 2) / 255.0).astype(np.float16)
        for i, (img_id, cat) in enumerate(zip(ids.tolist(), pics.categories.tolist())):
            captions[img_id] = _captions(int(cat), i, rng)

    put(test_ids, test)
    for s in subjects:
        put(train_ids[s], train)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / IMAGES, "w") as f:
        f.create_dataset("images", data=images)
    shared = np.zeros(n73k, dtype=bool)
    shared[test_ids] = True
    np.save(root / SHARED, shared, allow_pickle=False)
    width = max(1, max(len(c) for c in captions.reshape(-1)))
    np.save(root / ANNOTS, captions.astype(f"<U{width}"), allow_pickle=False)

    for s in subjects:
        srng = np.random.default_rng([seed, s])
        # (picture source, picture index) per trial, shuffled over the sessions.
        trials = [("train", i) for i in range(len(train)) for _ in range(n_train_repeats)]
        trials += [("test", i) for i in range(len(test)) for _ in range(n_test_repeats)]
        trials = [trials[i] for i in srng.permutation(len(trials))]
        pics = {"train": train, "test": test}
        ids_of = {"train": train_ids[s], "test": test_ids}
        pixels = np.stack([pics[src].images[i] for src, i in trials])
        image_id = np.array([int(ids_of[src][i]) for src, i in trials], dtype=np.int64)
        voxels = np.asarray(respond(pixels, srng), dtype=np.float64)
        if voxels.shape != (len(trials), n_voxels):
            raise ConfigError(
                f"respond returned shape {voxels.shape}; expected ({len(trials)}, {n_voxels})."
            )
        sessions = np.array_split(np.arange(len(trials)), n_sessions)
        if min(len(x) for x in sessions) < 2:
            raise ConfigError(f"{len(trials)} trials cannot fill {n_sessions} sessions.")
        behav = np.empty((len(trials), len(BEHAV_COLUMNS)), dtype=np.float64)
        seen: set[int] = set()
        for k, rows in enumerate(sessions):
            block = voxels[rows]  # each session z-scored per voxel, as the release
            voxels[rows] = (block - block.mean(0)) / np.where(block.std(0) > 0, block.std(0), 1)
            for j, run_rows in enumerate(np.array_split(rows, runs_per_session)):
                for t, row in enumerate(run_rows.tolist()):
                    img = int(image_id[row])
                    behav[row] = _behav_row(img, s, k + 1, j + 1, t + 1, row,
                                            int(img in seen), bool(shared[img]), srng)  # fmt: skip
                    seen.add(img)
        with h5py.File(root / betas_name(s), "w") as f:
            f.create_dataset("betas", data=voxels.astype(np.float32))
        n_train_key = n_test_key = 0
        test_samples = []
        for k, rows in enumerate(sessions):
            train_samples = []
            for row in rows.tolist():
                if shared[image_id[row]]:
                    test_samples.append(
                        (f"sample{n_test_key:09d}", _sample(behav, image_id, row, rows))
                    )
                    n_test_key += 1
                else:
                    train_samples.append(
                        (f"sample{n_train_key:09d}", _sample(behav, image_id, row, rows))
                    )
                    n_train_key += 1
            _write_tar(root / _train_tar(s, k), train_samples)
        _write_tar(root / _test_tar(s), test_samples)
    return NSDFixture(
        root=root,
        subjects=subjects,
        n_sessions=n_sessions,
        n_voxels=n_voxels,
        train_ids={s: np.asarray(v, dtype=np.int64) for s, v in train_ids.items()},
        test_ids=np.asarray(test_ids, dtype=np.int64),
        n_images_73k=n73k,
    )
