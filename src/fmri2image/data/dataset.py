"""The dataset seam: what every fMRI dataset gives the pipeline, and the dataset registry.

A :class:`Dataset` is a folder of recordings and the stimuli they were recorded
with.  The pipeline asks it for three things:

* :meth:`Dataset.subjects` / :meth:`Dataset.files` — who is there and which files
  hold a subject (their identity keys the cache);
* :meth:`Dataset.load` — one subject restricted to one ROI as a :class:`Recording`:
  every sample's voxels, its split (``train``, ``test`` or ``imagery``), the
  stimulus it shows (a row of that split's stimuli), its run and its category;
* :meth:`Dataset.stimuli` — the training or test stimuli as :class:`Stimuli`:
  image files on disk, or arrays inside a container file (as NSD ships them),
  each with its label in the dataset's vocabulary (WordNet ids when the dataset has
  them, free text otherwise).

Everything after that is generic (:func:`split_recording`): voxel normalization,
averaging a test image's repetitions (or an imagined stimulus's trials), the rows
the stimulus features are read from.  GOD is the first implementation
(:class:`fmri2image.data.god.GODDataset`); adding one is one class and one
:func:`register_dataset` call (or an ``fmri2image.datasets`` entry point whose
object is the class)::

    class MyDataset(Dataset):
        name = "mine"
        vocabulary = "text"
        def subjects(self): ...
        def files(self, subject): ...
        def load(self, subject, roi, *, drop_nan_voxels=False): ...
        def stimuli(self, split): ...

    register_dataset("mine", MyDataset)

and ``fmri2image run --dataset mine --data DIR`` runs the whole pipeline on it.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.registry import ENTRY_POINT_GROUPS, Needs, Registry, import_target

__all__ = [
    "AVERAGES",
    "DATASETS",
    "NORMALIZATIONS",
    "SPLITS",
    "VOCABULARIES",
    "Dataset",
    "DatasetEntry",
    "DecodingSplit",
    "Recording",
    "RemoteFile",
    "Stimuli",
    "average_rows",
    "dataset_class",
    "get_dataset",
    "register_dataset",
    "split_recording",
]

log = logging.getLogger(__name__)

#: What a sample can be: a training or test perception trial, or an imagery trial.  A
#: dataset may add evaluation splits of its own (:attr:`Dataset.eval_splits`, e.g.
#: Deeprecon's ``artificial`` shapes), each scored against its own stimuli.
SPLITS = ("train", "test", "imagery")
#: How the repetitions of an evaluated stimulus are combined: the voxels averaged
#: before the map predicts (GOD's analysis), or the map's predictions of each
#: repetition averaged (MindEye2 on NSD).  The same for a linear map.
AVERAGES = ("voxels", "predictions")
#: What a dataset's labels are: WordNet noun ids (``n01443537``) or free text.
VOCABULARIES = ("wordnet", "text")
#: Voxel normalizations (:func:`split_recording`).
NORMALIZATIONS = ("run", "train", "none")


# ---------------------------------------------------------------------- data types
@dataclass(frozen=True, eq=False)
class Recording:
    """One subject's samples restricted to one ROI, every split.

    Attributes
    ----------
    subject : int
    roi : str
        The ROI expression the voxels were selected with.
    voxels : ndarray of shape (n_samples, n_voxels), float32
    split : ndarray of shape (n_samples,) of str
        ``"train"``, ``"test"``, ``"imagery"`` or another of the dataset's
        :attr:`~Dataset.eval_splits` per sample.
    stimulus : ndarray of shape (n_samples,), int64
        The stimulus each sample shows: a row of ``stimuli(dataset.stimuli_of(split))``
        (``stimuli("train")`` for training samples, ``stimuli("test")`` for test
        samples).  For GOD's imagery samples the row of ``stimuli("test")`` of the
        imagined stimulus (its category's test image); -1 when there is none.
    runs : ndarray of shape (n_samples,), int64
        The run of each sample, unambiguous across files and splits (normalization
        per run, contiguous cross-validation folds).
    groups : ndarray of shape (n_samples,), int64
        The category of each sample (cross-validation folds grouped by category).
    roi_sizes : dict of str to int
        Voxels of every ROI the files define.
    sources : tuple of Path
        The files read.
    n_dropped_nan_voxels : int
    """

    subject: int
    roi: str
    voxels: np.ndarray
    split: np.ndarray
    stimulus: np.ndarray
    runs: np.ndarray
    groups: np.ndarray
    roi_sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    sources: tuple[Path, ...] = ()
    n_dropped_nan_voxels: int = 0

    def __post_init__(self) -> None:
        n = self.voxels.shape[0] if np.ndim(self.voxels) == 2 else -1
        bad = [
            name
            for name in ("split", "stimulus", "runs", "groups")
            if np.shape(getattr(self, name)) != (n,)
        ]
        if n < 0 or bad:
            raise DataFormatError(
                f"Recording of subject {self.subject}, {self.roi}: voxels must be "
                f"(n_samples, n_voxels) and {', '.join(bad) or 'every per-sample array'} one "
                f"value per sample; got voxels {np.shape(self.voxels)}."
            )
        bad_split = sorted(
            {repr(v) for v in np.unique(self.split).tolist() if not (isinstance(v, str) and v)}
        )
        if bad_split:
            raise DataFormatError(
                f"Recording of subject {self.subject}: split names must be non-empty strings "
                f"({', '.join(SPLITS)}, or an evaluation split of the dataset); got "
                f"{', '.join(bad_split)}."
            )

    @property
    def n_samples(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def n_voxels(self) -> int:
        return int(self.voxels.shape[1])

    def mask(self, split: str) -> np.ndarray:
        """Boolean mask of the samples of ``split``."""
        return self.split == split


@dataclass(frozen=True, eq=False)
class Stimuli:
    """The stimuli of one split: names, labels, and where the pixels are.

    Attributes
    ----------
    split : {"train", "test"}
    stems : tuple of str
        A unique name per stimulus (``"n01443537_22563"``); pictures made for it
        are named ``<stem>.png``.
    labels : tuple of str
        Its label in the dataset's vocabulary (a WordNet id, or free text).
    files : tuple of Path, optional
        One image file per stimulus, when they are files on disk.
    read : callable, optional
        ``read(rows) -> ndarray (len(rows), H, W, 3)`` of uint8 RGB, when the images
        are arrays inside a container file (:attr:`source`); the pipeline writes
        them out once, as PNG files in its cache.
    source : Path, optional
        The id file or container the stimuli are listed in (part of their identity).
    vocabulary : {"wordnet", "text"} or None
        What these labels are when it differs from the dataset's
        :attr:`Dataset.vocabulary` (Deeprecon's artificial shapes have no WordNet id);
        None: the dataset's.
    """

    split: str
    stems: tuple[str, ...]
    labels: tuple[str, ...]
    files: tuple[Path, ...] | None = None
    read: Callable[[Sequence[int]], np.ndarray] | None = None
    source: Path | None = None
    vocabulary: str | None = None

    def __post_init__(self) -> None:
        n = len(self.stems)
        if len(self.labels) != n or (self.files is not None and len(self.files) != n):
            raise DataFormatError(
                f"Stimuli of split {self.split!r}: {n} stems, {len(self.labels)} labels"
                + (f", {len(self.files)} files" if self.files is not None else "")
                + "; give one of each per stimulus."
            )
        if len(set(self.stems)) != n:
            raise DataFormatError(f"Stimuli of split {self.split!r}: the stems are not unique.")
        if (self.files is None) == (self.read is None):
            raise DataFormatError(
                f"Stimuli of split {self.split!r}: give either files (images on disk) or "
                "read (arrays in a container), exactly one."
            )
        if self.vocabulary is not None and self.vocabulary not in VOCABULARIES:
            raise DataFormatError(
                f"Stimuli of split {self.split!r}: vocabulary must be one of "
                f"{', '.join(VOCABULARIES)} or None, got {self.vocabulary!r}."
            )

    def __len__(self) -> int:
        return len(self.stems)

    def row_of(self, stems: Sequence[str]) -> np.ndarray:
        """The row of each stem, int64."""
        index = {s: i for i, s in enumerate(self.stems)}
        missing = [s for s in stems if s not in index]
        if missing:
            raise DataFormatError(
                f"{len(missing)} stimuli are not in the {self.split} stimuli "
                f"(e.g. {', '.join(missing[:3])})."
            )
        return np.asarray([index[s] for s in stems], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class DecodingSplit:
    """What a map is fitted on and predicts, for one subject × ROI.

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels), float32
    train_rows : ndarray of shape (n_train,), int64
        The training stimulus each training sample shows.
    train_groups : ndarray of shape (n_train,), int64
        Its category (grouped cross-validation).
    X_eval : ndarray of shape (n_eval, n_voxels) or (n_trials, n_voxels), float32
        The samples the map predicts: each test image's repetitions averaged, or
        each imagined stimulus's imagery trials averaged; with ``average =
        "predictions"`` every trial, the map's predictions averaged per stimulus
        (:attr:`eval_index`).
    eval_rows : ndarray of shape (n_eval,), int64
        The test stimulus each averaged row is scored against.
    n_repeats : ndarray of shape (n_eval,), int64
        Trials averaged into each row.
    eval_index : ndarray of shape (n_trials,), int64, or None
        With ``average = "predictions"``: the position in ``eval_rows`` of each row
        of ``X_eval``; None when ``X_eval`` is already averaged.
    """

    X_train: np.ndarray
    train_rows: np.ndarray
    train_groups: np.ndarray
    X_eval: np.ndarray
    eval_rows: np.ndarray
    n_repeats: np.ndarray
    eval_index: np.ndarray | None = None

    @property
    def n_voxels(self) -> int:
        return int(self.X_train.shape[1])


def average_rows(Y: np.ndarray, index: np.ndarray | None) -> np.ndarray:
    """The rows of ``Y`` averaged per evaluated stimulus (``index``: the position of
    each row, as :attr:`DecodingSplit.eval_index`); ``Y`` itself when ``index`` is None."""
    if index is None:
        return Y
    index = np.asarray(index, dtype=np.int64)
    n = int(index.max()) + 1 if index.size else 0
    sums = np.zeros((n, Y.shape[1]), dtype=np.float64)
    np.add.at(sums, index, Y)
    counts = np.bincount(index, minlength=n)
    return (sums / counts[:, None]).astype(Y.dtype, copy=False)


def _average(X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the samples of each distinct row (ascending), with the counts."""
    uniq, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
    sums = np.zeros((uniq.size, X.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.reshape(-1), X)
    return (sums / counts[:, None]).astype(np.float32), uniq.astype(np.int64), counts


def split_recording(
    recording: Recording,
    *,
    normalization: str = "run",
    split: str = "test",
    average: str = "voxels",
) -> DecodingSplit:
    """Normalize a recording and split it into what a map is fitted on and predicts.

    Parameters
    ----------
    recording : Recording
    normalization : {"run", "train", "none"}
        ``"run"``: z-score every voxel within each run (GOD's analysis);
        ``"train"``: z-score with the training samples' mean and std; ``"none"``.
    split : str
        What the map (always fitted on the training samples) predicts: the test
        samples, averaged per test image; the imagery samples, averaged per
        imagined stimulus (samples with none are left out); or another evaluation
        split of the dataset, averaged per stimulus.
    average : {"voxels", "predictions"}
        ``"voxels"``: the repetitions' voxels averaged; ``"predictions"``: every trial
        kept in ``X_eval`` with its :attr:`DecodingSplit.eval_index`, for the caller
        to average the map's predictions (:func:`average_rows`).

    Returns
    -------
    DecodingSplit

    Raises
    ------
    DataFormatError
        No training samples, or nothing to predict.
    """
    from fmri2image.data.preprocess import NormalizationStats, _safe_std, zscore_by_run

    if normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}."
        )
    if split == "train" or not isinstance(split, str) or not split:
        raise ConfigError(f"split must be an evaluation split (test, imagery, ...), got {split!r}.")
    if average not in AVERAGES:
        raise ConfigError(f"average must be one of {', '.join(AVERAGES)}, got {average!r}.")
    rec = recording
    train = rec.mask("train")
    if not train.any():
        raise DataFormatError(
            f"Subject {rec.subject} has no training samples in "
            f"{', '.join(map(str, rec.sources)) or 'its files'}; a map needs them."
        )
    X = rec.voxels
    if normalization == "run":
        Xn = zscore_by_run(X, rec.runs).astype(np.float32, copy=False)
    elif normalization == "train":  # training statistics only
        fit = X[train].astype(np.float64)
        Xn = NormalizationStats("train", fit.mean(axis=0), _safe_std(fit.std(axis=0))).transform(X)
    else:
        Xn = np.asarray(X, dtype=np.float32)
    predicted = rec.mask(split) & (rec.stimulus >= 0)
    dropped = int((rec.mask(split) & (rec.stimulus < 0)).sum())
    if dropped:
        log.info("%s: %d trials of stimuli without an image to score left out", split, dropped)
    X_eval, rows, counts = _average(Xn[predicted], rec.stimulus[predicted])
    eval_index = None
    if average == "predictions":
        X_eval = np.ascontiguousarray(Xn[predicted], dtype=np.float32)
        eval_index = np.searchsorted(rows, rec.stimulus[predicted]).astype(np.int64)
    if split != "test" and rows.size < 2:
        raise ConfigError(
            f"--split {split}: subject {rec.subject} has {rows.size} {split} stimuli with "
            "trials; at least 2 are needed to score identification. Decode the perception "
            "test set with --split test."
        )
    if rows.size < 1:
        raise DataFormatError(
            f"Subject {rec.subject} has no test samples in "
            f"{', '.join(map(str, rec.sources)) or 'its files'}; check that the test files "
            "are present."
        )
    return DecodingSplit(
        X_train=np.ascontiguousarray(Xn[train]),
        train_rows=rec.stimulus[train].astype(np.int64),
        train_groups=rec.groups[train].astype(np.int64),
        X_eval=X_eval,
        eval_rows=rows,
        n_repeats=counts.astype(np.int64),
        eval_index=eval_index,
    )


# ---------------------------------------------------------------------- downloads
@dataclass(frozen=True)
class RemoteFile:
    """One public file of a dataset (:meth:`Dataset.remote_files`).

    Attributes
    ----------
    name : str
        Its path inside the dataset folder (``wds/subj01/train/0.tar``).
    url : str
        Where it is fetched from: an http(s) URL (figshare's ``ndownloader``), or
        ``hf://datasets/<repo>/<path>`` for a Hugging Face hub dataset file.
    md5 : str or None
        The published MD5 sum, checked after the transfer; None when none is published.
    size : int or None
        Bytes, when known before asking the server.
    """

    name: str
    url: str
    md5: str | None = None
    size: int | None = None


# ---------------------------------------------------------------------- the protocol
@dataclass(frozen=True)
class _NoOptions:
    """A dataset without options."""


class Dataset(abc.ABC):
    """An fMRI dataset in a folder (see the module docstring).

    Subclasses set the class attributes and implement the four methods.  The
    constructor takes the dataset folder and the dataset's options (``data.options``
    of a run configuration) as keywords, checked against :attr:`Options`.

    Attributes
    ----------
    name : str
        Registry name (``"god"``).
    description : str
        One line for listings.
    vocabulary : {"wordnet", "text"}
        What its labels are.  With ``"wordnet"`` the runs score retrieved labels with
        WordNet (hit@k, Wu-Palmer) and prompt generators with the synset's name; with
        ``"text"`` labels are compared as strings and are the prompts themselves.
    needs : Needs
        What reading it needs beyond the core (an extra, packages).
    Options : dataclass
        Its options, every field with a default.
    default_rois : tuple of str
        The ROIs decoded when a run names none (``data.rois``): its visual cortex,
        or every voxel the release holds.
    early_visual_rois : tuple of str
        Where the low-level pathway (generator ``lowlevel``) reads early visual cortex
        when its ``roi`` option is left at ``ROI_LVC``: the first the subject has.
    eval_splits : tuple of str
        What ``--split`` may name: ``"test"`` first, then ``"imagery"`` and any split of
        its own (scored against :meth:`stimuli` of :meth:`stimuli_of` it).
    average : {"voxels", "predictions"}
        How repetitions of an evaluated stimulus are combined (:data:`AVERAGES`).
    known_subjects : tuple of int
        The subjects of the published release (for ``download``; empty: unknown).
    where_to_get : str
        One line on where its files come from (``doctor``, missing-file errors).
    path : Path
    options : Options instance
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    vocabulary: ClassVar[str] = "wordnet"
    needs: ClassVar[Needs] = Needs()
    Options: ClassVar[type] = _NoOptions
    default_rois: ClassVar[tuple[str, ...]] = ("ROI_VC",)
    early_visual_rois: ClassVar[tuple[str, ...]] = ("ROI_LVC", "ROI_V1 + ROI_V2 + ROI_V3")
    eval_splits: ClassVar[tuple[str, ...]] = ("test", "imagery")
    average: ClassVar[str] = "voxels"
    known_subjects: ClassVar[tuple[int, ...]] = ()
    where_to_get: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike, **options: Any) -> None:
        self.path = Path(path).expanduser()
        self.options = make_dataset_options(self.Options, options, dataset=self.name)

    @abc.abstractmethod
    def subjects(self) -> tuple[int, ...]:
        """The subjects whose files are in the folder (reads no fMRI)."""

    @abc.abstractmethod
    def files(self, subject: int) -> tuple[Path, ...]:
        """The fMRI files of ``subject`` (their identity keys the cache).

        Raises
        ------
        MissingDataFileError
            Naming what was looked for.
        """

    @abc.abstractmethod
    def load(self, subject: int, roi: str, *, drop_nan_voxels: bool = False) -> Recording:
        """One subject's samples restricted to ``roi`` (see :class:`Recording`)."""

    @abc.abstractmethod
    def stimuli(self, split: str) -> Stimuli:
        """The stimuli of ``split`` (``"train"`` or ``"test"``)."""

    def stimuli_of(self, split: str) -> str:
        """The stimuli whose rows the samples of ``split`` show: ``"train"`` for
        training samples, ``"test"`` for test and (GOD's) imagery samples, the split
        itself for a split with stimuli of its own."""
        return {"train": "train", "imagery": "test"}.get(split, split)

    def vocabulary_of(self, stimuli: Stimuli) -> str:
        """What the labels of ``stimuli`` are (theirs, else the dataset's)."""
        return stimuli.vocabulary or self.vocabulary

    @classmethod
    def remote_files(cls, subjects: Sequence[int], **options: Any) -> tuple[RemoteFile, ...]:
        """The public files of ``subjects`` (``fmri2image download``); none by default.

        Raises
        ------
        ConfigError
            A subject the release does not have.
        """
        return ()

    def check_images(self, stimuli: Stimuli, *, progress: bool = True) -> None:
        """Raise a one-paragraph error when a stimulus image cannot be decoded (before
        any network runs).  The default decodes the header of every file."""
        if stimuli.files is None:
            return
        from fmri2image.data.images import check_images_readable

        check_images_readable(
            stimuli.files,
            what=f"{stimuli.split} stimulus images",
            position_name="stimulus",
            progress=progress,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts: name, folder, vocabulary, options."""
        return {
            "dataset": self.name,
            "path": str(self.path),
            "vocabulary": self.vocabulary,
            "options": dataclasses.asdict(self.options),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def make_dataset_options(cls: type, given: Mapping[str, Any], *, dataset: str) -> Any:
    """The options dataclass of a dataset, unknown names refused with the valid ones."""
    names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ConfigError(
            f"data.options {', '.join(unknown)} do(es) not apply to dataset {dataset!r}; its "
            f"options: {', '.join(names) or '(none)'}."
        )
    try:
        return cls(**dict(given))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.options of dataset {dataset!r}: {exc}") from exc


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetEntry:
    """A :data:`DATASETS` entry: the class, or where to import it from."""

    name: str
    target: type[Dataset] | str
    needs: Needs = field(default_factory=Needs)

    def load(self) -> type[Dataset]:
        cls = import_target(self.target) if isinstance(self.target, str) else self.target
        if not (isinstance(cls, type) and issubclass(cls, Dataset)):
            raise ConfigError(
                f"dataset {self.name!r} must be a subclass of fmri2image.data.Dataset, got {cls!r}."
            )
        return cls


def _plugin(name: str, obj: Any) -> None:
    register_dataset(name, obj)


#: The datasets; plugins register through the ``fmri2image.datasets`` entry points
#: (object: the :class:`Dataset` subclass).
DATASETS: Registry[DatasetEntry] = Registry(
    "dataset", group=ENTRY_POINT_GROUPS["dataset"], plugin=_plugin
)


def register_dataset(
    name: str, cls: type[Dataset] | str, *, needs: Needs | None = None, overwrite: bool = False
) -> DatasetEntry:
    """Add a dataset to :data:`DATASETS`.

    Parameters
    ----------
    name : str
        Registry name (``data.dataset``, ``--dataset``); no ``":"`` or ``"/"``.
    cls : Dataset subclass or str
        The class, or ``"package.module:ClassName"`` imported on first use.
    needs : Needs, optional
        Default: the class's ``needs``.
    overwrite : bool
    """
    if not name or ":" in name or "/" in name:
        raise ConfigError(f"dataset name {name!r} must be non-empty, without ':' or '/'.")
    if isinstance(cls, str):
        if ":" not in cls:
            raise ConfigError(f"dataset {name!r}: {cls!r} must be 'package.module:ClassName'.")
    elif not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise ConfigError(f"dataset {name!r} must be a subclass of Dataset, got {cls!r}.")
    elif cls.vocabulary not in VOCABULARIES:
        raise ConfigError(
            f"dataset {name!r}: vocabulary must be one of {', '.join(VOCABULARIES)}, got "
            f"{cls.vocabulary!r}."
        )
    if needs is None:
        needs = getattr(cls, "needs", None) if not isinstance(cls, str) else None
        needs = needs if isinstance(needs, Needs) else Needs()
    entry = DatasetEntry(name, cls, needs)
    DATASETS.register(name, entry, overwrite=overwrite)
    return entry


def dataset_class(name: str) -> type[Dataset]:
    """The class registered as ``name`` (ConfigError with close matches if unknown)."""
    return DATASETS.get(name).load()


def get_dataset(name: str, path: str | os.PathLike, **options: Any) -> Dataset:
    """Open dataset ``name`` in the folder ``path`` with its options."""
    return dataset_class(name)(path, **options)


register_dataset("god", "fmri2image.data.god:GODDataset")
register_dataset("deeprecon", "fmri2image.data.deeprecon:DeepreconDataset")
register_dataset(
    "things",
    "fmri2image.data.things:ThingsDataset",
    needs=Needs(extra="things", packages=("pandas", "tables")),
)
register_dataset("nsd", "fmri2image.data.nsd:NSDDataset")
