"""The pipeline's stages and their typed artifacts.

Each ``*_stage`` function returns a :class:`~fmri2image.pipeline.graph.Stage`: its
name, its own slice of the configuration (which, with its inputs' keys, is its
cache key), the stages it reads, and two closures, ``run`` (writes the artifact
folder) and ``load`` (reads it back as the dataclass named beside it).  Components
(encoders, generators, metric networks) come from a :class:`Components` object,
built only when a stage that needs them is computed, so a fully cached run loads
no model, and tests inject tiny ones.

==============================================  ======================================
stage                                           artifact
==============================================  ======================================
``stimuli/<split>``                             :class:`StimulusImages` (container
                                                datasets only: their arrays as PNGs)
``data/s<subject>/<roi>``                       :class:`SubjectData`
``features/<model>``                            :class:`StimulusFeatures`
``database/<model>/<database>``                 :class:`DatabaseFeatures`
``prototypes/<model>/<kind>``                   :class:`Prototypes` (1k heads, CLIP text)
``codebook/<gen>-<code>``                       :class:`CodeFeatures` (low-level image code)
``mapping/<model>/<mapper>/s<subject>/<roi>``   :class:`MapArtifact` (``<model>``: an
                                                encoder, or a low-level code)
``retrieval/<model>/<mapper>/<db>/s<s>/<roi>``  :class:`RetrievalArtifact`
``generation/<model>/<gen>/<condition>/…``      :class:`ImagesArtifact`
``evaluation/<model>/<gen>/<condition>/…``      :class:`~fmri2image.evaluation.Evaluation`
==============================================  ======================================

The bounds (``true`` and ``random`` conditions) depend on the stimulus features,
not on the brain, so they are keyed by the test images they are made for and
shared by every subject and ROI that scores the same images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image import _io
from fmri2image._io import safe_name
from fmri2image.pipeline.graph import MANIFEST, Stage, StageContext

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.data.dataset import DecodingSplit, Recording, Stimuli
    from fmri2image.features.base import Encoder
    from fmri2image.generation import Generator
    from fmri2image.pipeline.config import RunConfig
    from fmri2image.pipeline.preflight import DatabaseSpec

log = logging.getLogger(__name__)

__all__ = [
    "CodeFeatures",
    "Components",
    "DatabaseFeatures",
    "GenerationPlan",
    "ImagesArtifact",
    "MapArtifact",
    "Prototypes",
    "RetrievalArtifact",
    "ScannedDatabase",
    "StimulusFeatures",
    "StimulusImages",
    "SubjectData",
    "code_name",
    "codebook_stage",
    "data_stage",
    "database_stage",
    "evaluation_stage",
    "features_stage",
    "files_identity",
    "generation_stage",
    "mapping_stage",
    "prototypes_stage",
    "retrieval_stage",
    "scan_database",
    "stimuli_stage",
]


# ---------------------------------------------------------------- components
class Components:
    """Encoders, generators and metric networks, built on first use and kept.

    Parameters
    ----------
    device : str
    dtype : str
        Generator precision.
    encoders, generators : mapping, optional
        Built components to use instead of building them from the registries (tests,
        or a notebook that already holds a model).  A generator given here is used
        as is, whatever options the configuration has.
    """

    def __init__(
        self,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        encoders: Mapping[str, Encoder] | None = None,
        generators: Mapping[str, Generator] | None = None,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self._encoders: dict[str, Encoder] = dict(encoders or {})
        self._injected_encoders = frozenset(self._encoders)
        self.injected_generators: dict[str, Generator] = dict(generators or {})
        self._built_generators: dict[str, Generator] = {}
        #: Metric networks, loaded once per run (see ``evaluate_images(networks=)``).
        self.networks: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (a stage sent to another process): the injected components travel,
        # the models built here do not; the receiving process builds them on first use.
        state = dict(self.__dict__)
        state["_encoders"] = {n: e for n, e in self._encoders.items()
                              if n in self._injected_encoders}  # fmt: skip
        state["_built_generators"] = {}
        state["networks"] = {}
        return state

    def encoder(self, name: str) -> Encoder:
        if name not in self._encoders:
            from fmri2image.features import get_encoder

            log.info("loading encoder %s", name)
            self._encoders[name] = get_encoder(name, device=self.device)
        return self._encoders[name]

    def generator(self, name: str, options: Mapping[str, Any]) -> Generator:
        if name in self.injected_generators:
            return self.injected_generators[name]
        key = _io.json_sha256({"name": name, "options": dict(options)})
        if key not in self._built_generators:
            from fmri2image.generation import get_generator

            log.info("loading generator %s", name)
            self._built_generators[key] = get_generator(
                name, device=self.device, dtype=self.dtype, **dict(options)
            )
        return self._built_generators[key]

    def conditioning(self, name: str) -> str:
        """What generator ``name`` is conditioned on (``label`` or ``embedding``)."""
        if name in self.injected_generators:
            return self.injected_generators[name].conditioning
        from fmri2image.generation import GENERATORS

        return GENERATORS.get(name).conditioning

    def takes_init(self, name: str) -> bool:
        """Whether generator ``name`` uses initial images (``generation.init``)."""
        if name in self.injected_generators:
            return bool(getattr(self.injected_generators[name], "takes_init", True))
        from fmri2image.generation.base import generator_takes_init

        return generator_takes_init(name)

    def generator_inputs(self, name: str) -> tuple[str, ...]:
        """The pipeline inputs generator ``name`` declares (``Needs.inputs``)."""
        if name in self.injected_generators:
            return tuple(self.injected_generators[name].needs.inputs)
        from fmri2image.generation import GENERATORS

        return GENERATORS.get(name).needs.inputs


# ---------------------------------------------------------------- identities
def files_identity(paths: Sequence[str | os.PathLike | None]) -> str:
    """SHA-256 of each file's resolved path, size and modification time.

    Part of a stage's config: change, move or touch an input file and the stages
    reading it are recomputed.  (Contents are checked where they are read: the
    feature stores hash what they embed.)  A file that is not a symbolic link is
    resolved through its folder's resolved path (one ``lstat`` per file, each folder
    resolved once), which is what ``Path.resolve`` gives, at a million images.
    """
    import stat

    folders: dict[str, str] = {}
    items = []
    for p in paths:
        if p is None:
            items.append(None)
            continue
        text = os.fspath(p)
        folder, name = os.path.split(text)
        st = os.lstat(text)
        if stat.S_ISLNK(st.st_mode) or name in ("", ".", ".."):
            path = str(Path(text).resolve())
            st = os.stat(path)
        else:
            if folder not in folders:
                folders[folder] = str(Path(folder or ".").resolve())
            path = os.path.join(folders[folder], name)
        items.append([path, st.st_size, st.st_mtime_ns])
    return _io.json_sha256(items)


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------- stimuli
@dataclass(frozen=True, eq=False)
class StimulusImages:
    """The images of one stimulus split as files: where they are and what they show.

    Attributes
    ----------
    split : {"train", "test"}
    stems, labels : tuple of str
    files : tuple of Path
        One image file per stimulus (on disk in the dataset, or written by the
        ``stimuli`` stage from a container).
    identity : str
        Identity of the images (part of the keys of the stages that read them).
    """

    split: str
    stems: tuple[str, ...]
    labels: tuple[str, ...]
    files: tuple[Path, ...]
    identity: str

    def files_of(self, stems: Sequence[str]) -> dict[str, Path]:
        by_stem = dict(zip(self.stems, self.files))
        return {s: by_stem[s] for s in stems}


def stimulus_images(stimuli: Stimuli) -> StimulusImages:
    """The images of stimuli held as files (no stage needed)."""
    assert stimuli.files is not None
    ident = files_identity([stimuli.source, *stimuli.files])
    return StimulusImages(stimuli.split, stimuli.stems, stimuli.labels, stimuli.files, ident)


def stimuli_stage(dataset: str, stimuli: Stimuli, identity: str) -> Stage:
    """Write the arrays of a container dataset's stimuli as PNG files, once.

    ``identity``: of the container (:func:`files_identity`), part of the key.
    """
    from PIL import Image

    cfg = {
        "dataset": dataset,
        "split": stimuli.split,
        "source": identity,
        # The rows a container's arrays are read at (NSD: the subjects in the folder).
        "stimuli": _io.json_sha256([list(stimuli.stems), list(stimuli.labels)]),
    }

    def run(ctx: StageContext) -> None:
        from tqdm.auto import tqdm

        assert stimuli.read is not None
        step = 64
        bar = tqdm(total=len(stimuli), desc=f"{stimuli.split} stimuli", unit="img",
                   **_io.tqdm_kwargs(ctx.progress))  # fmt: skip
        for start in range(0, len(stimuli), step):
            rows = list(range(start, min(start + step, len(stimuli))))
            arrays = np.asarray(stimuli.read(rows))
            for row, arr in zip(rows, arrays):
                img = _to_uint8(arr)
                with _io.atomic_path(ctx.folder / f"{stimuli.stems[row]}.png") as tmp:
                    Image.fromarray(img).save(tmp, format="PNG")
            bar.update(len(rows))
        bar.close()
        _io.save_json(
            ctx.folder / "stimuli.json",
            {"split": stimuli.split, "stems": list(stimuli.stems), "labels": list(stimuli.labels)},
        )

    def load(folder: Path) -> StimulusImages:
        meta = _io.load_json(folder / "stimuli.json")
        stems = tuple(meta["stems"])
        return StimulusImages(
            meta["split"], stems, tuple(meta["labels"]),
            tuple(folder / f"{s}.png" for s in stems), _io.json_sha256([identity, str(folder)]),
        )  # fmt: skip

    return Stage(f"stimuli/{stimuli.split}", run, load, cfg, version="1", resumable=True)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """An (H, W, 3) or (3, H, W) image array, uint8 or float in [0, 1], as uint8 HWC."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(np.asarray(a, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 2 or a.shape[-1] == 1:
        a = np.repeat(a.reshape(a.shape[0], a.shape[1], 1), 3, axis=-1)
    return a


# ---------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class SubjectData:
    """One subject × ROI, normalized and split (the ``data`` stage).

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels)
    X_eval : ndarray of shape (n_eval, n_voxels)
        The samples the map predicts (test images averaged over repeats, or imagery
        trials averaged per imagined stimulus).
    train_rows, test_rows : ndarray of int
        Rows of the training / test stimuli (and of their features) that the samples
        show; ``test_rows`` is aligned with ``X_eval``.
    test_stems : tuple of str
    true_labels : tuple of str
        The label of each evaluated test stimulus (a WordNet id, or free text).
    vocabulary : {"wordnet", "text"}
    categories : ndarray
        Category of each training sample (grouped CV).
    info : dict
        Counts for the tables (subject, roi, split, n_train, repeats, voxels).
    eval_index : ndarray or None
        When the dataset averages predictions (NSD, as MindEye2): ``X_eval`` holds
        every trial and this the row of ``test_rows`` each belongs to.
    """

    X_train: np.ndarray
    X_eval: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    test_stems: tuple[str, ...]
    true_labels: tuple[str, ...]
    vocabulary: str
    categories: np.ndarray
    info: dict[str, Any]
    eval_index: np.ndarray | None = None


def data_stage(
    name: str,
    config: RunConfig,
    subject: int,
    roi: str,
    identity: str,
    prepared: Callable[[], tuple[Recording, DecodingSplit]],
    test: StimulusImages,
    vocabulary: str,
) -> Stage:
    """The data stage of one subject × ROI.

    ``prepared()`` gives the recording and its split (loaded, and checked, while the
    run is planned); ``identity`` (:func:`files_identity` of the subject's files and
    of the stimulus lists) makes a changed file a new key.
    """
    d = config.data
    cfg = {
        "dataset": d.dataset,
        "options": dict(sorted(d.options.items())),
        "subject": subject,
        "roi": roi,
        "normalization": d.normalization,
        "drop_nan_voxels": d.drop_nan_voxels,
        "split": d.split,
        "files": identity,
    }

    def run(ctx: StageContext) -> None:
        rec, split = prepared()
        _io.save_npy(ctx.folder / "X_train.npy", np.asarray(split.X_train, dtype=np.float32))
        _io.save_npy(ctx.folder / "X_eval.npy", np.asarray(split.X_eval, dtype=np.float32))
        _io.save_npy(ctx.folder / "train_rows.npy", split.train_rows.astype(np.int64))
        _io.save_npy(ctx.folder / "test_rows.npy", split.eval_rows.astype(np.int64))
        _io.save_npy(ctx.folder / "categories.npy", split.train_groups.astype(np.int64))
        if split.eval_index is not None:  # every trial; the predictions are averaged
            _io.save_npy(ctx.folder / "eval_index.npy", split.eval_index.astype(np.int64))
        stems = [test.stems[i] for i in split.eval_rows]
        _io.save_json(
            ctx.folder / "data.json",
            {
                "test_stems": stems,
                "true_labels": [test.labels[i] for i in split.eval_rows],
                "vocabulary": vocabulary,
                "info": {
                    "subject": subject,
                    "roi": roi,
                    "split": d.split,
                    "n_train": int(split.X_train.shape[0]),
                    "n_train_categories": len(np.unique(split.train_groups)),
                    "n_eval": len(stems),
                    "n_eval_repeats": sorted({int(n) for n in split.n_repeats}),
                    "n_voxels": split.n_voxels,
                    "n_dropped_nan_voxels": rec.n_dropped_nan_voxels,
                },
            },
        )

    def load(folder: Path) -> SubjectData:
        meta = _io.load_json(folder / "data.json")
        return SubjectData(
            X_train=_load_npy(folder / "X_train.npy"),
            X_eval=_load_npy(folder / "X_eval.npy"),
            train_rows=_load_npy(folder / "train_rows.npy"),
            test_rows=_load_npy(folder / "test_rows.npy"),
            test_stems=tuple(meta["test_stems"]),
            true_labels=tuple(meta["true_labels"]),
            vocabulary=meta["vocabulary"],
            categories=_load_npy(folder / "categories.npy"),
            info=meta["info"],
            eval_index=(
                _load_npy(folder / "eval_index.npy")
                if (folder / "eval_index.npy").is_file()
                else None
            ),
        )

    return Stage(name, run, load, cfg, version="2")


# ---------------------------------------------------------------- features
@dataclass(frozen=True, eq=False)
class StimulusFeatures:
    """One model's embeddings of every training and test stimulus (``features``).

    Rows follow the stimuli of each split.
    """

    model: str
    dim: int
    train: np.ndarray
    test: np.ndarray
    train_labels: tuple[str, ...]
    test_stems: tuple[str, ...]
    train_stems: tuple[str, ...] = ()

    def index(self) -> Any:
        """An exact cosine index over the training stimuli, labelled by their labels
        (the ``stimuli`` database: never a test image)."""
        from fmri2image.retrieval import FeatureIndex

        items = list(self.train_stems) if self.train_stems else None
        return FeatureIndex("flat", metric="cosine").add(self.train, list(self.train_labels), items)

    def test_embeddings(self, stems: Sequence[str]) -> np.ndarray:
        row = {s: i for i, s in enumerate(self.test_stems)}
        return self.test[[row[s] for s in stems]]


def _resolve(ctx: StageContext, images: StimulusImages | str) -> StimulusImages:
    """Static images, or the artifact of the ``stimuli`` stage named ``images``."""
    return ctx.inputs[images] if isinstance(images, str) else images


def features_stage(
    model: str,
    images: Mapping[str, StimulusImages | str],
    components: Components,
    *,
    batch_size: int,
    check: Callable[[], None] | None = None,
) -> Stage:
    """Embed the training and test stimuli with ``model`` (shared by subjects and ROIs).

    ``images``: per split, the :class:`StimulusImages` or the name of the stimuli
    stage that writes them.  Resumable: the sharded stores resume what a killed
    extraction finished (each shard verified by its checksum).  ``check`` runs before
    the stage is computed (the stimulus images decode).
    """
    from fmri2image.features.shards import store_dirname

    cfg = {
        "model": model,
        "stimuli": {
            split: (im if isinstance(im, str) else im.identity)
            for split, im in sorted(images.items())
        },
    }
    inputs = tuple(sorted({im for im in images.values() if isinstance(im, str)}))

    def run(ctx: StageContext) -> None:
        from fmri2image.features import ImageDatabase, extract_features

        encoder = components.encoder(model)
        for split, im in images.items():
            stim = _resolve(ctx, im)
            db = ImageDatabase.from_paths(stim.files, stim.labels, root=Path(stim.files[0]).parent)
            extract_features(
                db, [encoder], ctx.folder / split, batch_size=batch_size,
                device=components.device, on_unreadable="raise", progress=ctx.progress,
            )  # fmt: skip

    def load(folder: Path) -> StimulusFeatures:
        from fmri2image.features.shards import open_feature_store

        train = open_feature_store(folder / "train" / store_dirname(model))
        test = open_feature_store(folder / "test" / store_dirname(model))
        x_train, x_test = train.load(), test.load()
        return StimulusFeatures(
            model=model,
            dim=int(x_train.shape[1]),
            train=x_train,
            test=x_test,
            train_labels=tuple(train.wnids),
            test_stems=tuple(Path(p).stem for p in test.paths),
            train_stems=tuple(Path(p).stem for p in train.paths),
        )

    def prepare() -> None:
        if check is not None:
            check()
        components.encoder(model)

    return Stage(
        f"features/{model}", run, load, cfg, inputs=inputs, version="2", resumable=True,
        prepare=prepare, resources="gpu",
    )  # fmt: skip


# ---------------------------------------------------------------- database
@dataclass(frozen=True)
class DatabaseFeatures:
    """An image database embedded by one model: ``root`` holds one store per model
    (what ``fmri2image extract`` writes and the ``retrieve`` generator reads)."""

    model: str
    root: Path

    @property
    def store(self) -> Path:
        from fmri2image.features.shards import store_dirname

        return self.root / store_dirname(self.model)


@dataclass(frozen=True, eq=False)
class ScannedDatabase:
    """An image-folder database scanned once per run, whatever the number of models.

    Attributes
    ----------
    spec : DatabaseSpec
    images : ImageDatabase
        Its labelled images.
    identity : str
        :func:`files_identity` of every image (part of each model's stage key).
    reused : bool
        Taken from the scan record of an earlier run (no image listed or stat'ed).
    pending : tuple or None
        ``(path, record)``: the scan record not written yet (planning writes
        nothing); :meth:`remember` writes it, once.
    """

    spec: DatabaseSpec
    images: Any
    identity: str
    reused: bool = False
    pending: tuple[Path, dict[str, Any]] | None = None

    def remember(self) -> None:
        """Write the pending scan record (best-effort; see :func:`scan_database`).
        Once written it is no longer pending: the run (under the lock) and the first
        database stage both call this, and the record (20 MB for ImageNet) is
        written once."""
        if self.pending is not None and _write_scan_record(*self.pending):
            object.__setattr__(self, "pending", None)


#: The scan records of image-folder databases, in ``<cache>/SCANS``.
SCANS = "scans"
_SCAN_FORMAT = "fmri2image.scan"
_SCAN_VERSION = 1


def _folder_stat(path: str | os.PathLike) -> list[int] | None:
    """What a scan record keeps of a folder: mtime, ctime (ns), inode, device (None
    when it is not a folder).  Adding, removing or renaming an entry changes the
    folder's mtime and ctime; editing a file in place does not."""
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return [st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _folders_to_list(root: Path) -> dict[str, list[int]]:
    """stat() of every folder a scan of ``root`` may list, taken *before* it lists
    them: the root, ``train/``, their subfolders and each one's ``images/`` (the
    layouts of :func:`fmri2image.features.scan_image_folder`).  A change during the
    scan then shows as a difference at the next check."""
    out: dict[str, list[int]] = {}

    def add(path: str) -> None:
        st = _folder_stat(path)
        if st is not None:
            out[path] = st

    tops = [str(root)]
    if os.path.isdir(root / "train"):
        tops.append(str(root / "train"))
    for top in tops:
        add(top)
        try:
            with os.scandir(top) as it:
                subs = [e.path for e in it if e.is_dir() and not e.name.startswith(".")]
        except OSError:
            continue
        for sub in subs:
            add(sub)
            add(os.path.join(sub, "images"))
    return out


def _scan_record_path(
    cache: Path, root: Path, class_map: str | None, skip_unresolved: bool
) -> tuple[Path, dict[str, Any]]:
    """Where the scan record of ``root`` with these options is kept, and what it must
    hold to be this scan's (the options, the class map's content, the version)."""
    from fmri2image import __version__

    cmap = None
    if class_map is not None:
        try:
            cmap = _io.file_sha256(class_map)
        except OSError:
            cmap = str(class_map)  # scan_image_folder says what is wrong with it
    identity = {
        "format": _SCAN_FORMAT,
        "format_version": _SCAN_VERSION,
        "root": str(root),
        "resolved_root": str(root.resolve()),
        "class_map": cmap,
        "skip_unresolved": bool(skip_unresolved),
        "fmri2image": __version__,
    }
    return cache / SCANS / f"{_io.json_sha256(identity)[:32]}.json", identity


def _read_scan_record(path: Path, expected: Mapping[str, Any]) -> tuple[Any, str] | None:
    """The images and identity of a scan record whose folders are all as recorded;
    None when there is none, it belongs to other options, or a folder changed."""
    import json

    from fmri2image.features.databases import ImageDatabase

    try:
        stamp = os.stat(path).st_mtime_ns
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        if any(record.get(k) != v for k, v in expected.items()):
            return None
        for folder, recorded in record["folders"].items():
            now = _folder_stat(folder)
            # Racy: changed in the clock tick the record was written in.
            if now != recorded or max(now[0], now[1]) >= stamp:
                return None
        paths: list[str] = []
        wnids: list[str] = []
        for folder, wnid, names in record["groups"]:
            listed = names.split("\n")
            prefix = folder + os.sep
            paths.extend([prefix + n for n in listed])
            wnids.extend([wnid] * len(listed))
        images = ImageDatabase(
            paths=tuple(paths),
            wnids=tuple(wnids),
            root=Path(record["images_root"]),
            layout=record["layout"],
            class_folders=dict(record["class_folders"]),
        )
        return images, str(record["identity"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _scan_record(
    expected: Mapping[str, Any], images: Any, identity: str, before: Mapping[str, list[int]]
) -> dict[str, Any] | None:
    """The record of a scan: the stat() of each folder the result depends on (taken
    before the scan listed it), the images grouped by folder and label, the identity.
    None when a folder it listed was not there before it started."""
    root = str(images.root)
    folders = {str(expected["root"]), root}
    folders.update(os.path.join(root, d) for d in images.class_folders)
    groups: list[list[str]] = []
    run: list[str] = []
    key: tuple[str, str] | None = None
    for path, wnid in zip(images.paths, images.wnids):
        folder, name = os.path.split(path)
        if (folder, wnid) != key:
            if key is not None:
                groups.append([key[0], key[1], "\n".join(run)])
            key, run = (folder, wnid), []
        run.append(name)
    if key is not None:
        groups.append([key[0], key[1], "\n".join(run)])
    folders.update(g[0] for g in groups)
    if not folders <= before.keys():
        return None
    return {
        **expected,
        "folders": {f: before[f] for f in sorted(folders)},
        "images_root": root,
        "layout": images.layout,
        "class_folders": dict(images.class_folders),
        "groups": groups,
        "identity": identity,
    }


def _write_scan_record(path: Path, record: Mapping[str, Any]) -> bool:
    """Best-effort: a read-only cache only means the next run scans again.  Only
    into an existing cache (``path`` is ``<cache>/scans/<name>``): never makes one.
    Returns whether the record was written."""
    try:
        path.parent.mkdir(exist_ok=True)  # FileNotFoundError without the cache
        _io.save_json(path, record, indent=None)
    except OSError as exc:
        log.debug("no scan record written to %s: %s", path, exc)
        return False
    return True


def scan_database(
    db: DatabaseSpec,
    *,
    class_map: str | None = None,
    skip_unresolved: bool = False,
    cache: str | os.PathLike | None = None,
    verify: str = "fast",
) -> ScannedDatabase:
    """Scan an ImageNet-style image folder and fingerprint its files.

    Class-name folders are resolved to WordNet ids here, while the run is planned:
    an ambiguous name stops the run before any stage, naming ``--class-map`` and
    ``--skip-unresolved``.  With either, the labels they give are part of the
    fingerprint (the same images labelled otherwise are another database).

    With a ``cache``, the scan is recorded in ``<cache>/scans/`` (the images, their
    identity, and the mtime, ctime and inode of the folder and of every class folder
    as they were before it was listed).  A later ``verify="fast"`` scan stats those
    folders only (ImageNet: about a thousand, not 1.28 million images) and, when
    all match, reuses the record: an image added, removed or renamed changes its
    folder's times, so the folder is scanned again.  An image *edited in place*
    keeps its folder's times: only ``verify="full"``, which lists and stats every
    image as a scan without a cache does (and records the scan again), sees it.
    The record is not written here: planning writes nothing, and the cache may be
    another run's.  The run writes it once it holds the cache's lock
    (:meth:`ScannedDatabase.remember`, called by ``run_experiment`` and by the first
    database stage that runs).
    """
    import hashlib

    from fmri2image import features
    from fmri2image._manifest import check_verify

    assert db.path is not None
    check_verify(verify)
    where: tuple[Path, dict[str, Any]] | None = None
    before: dict[str, list[int]] = {}
    if cache is not None:
        root = Path(db.path).absolute()
        where = _scan_record_path(Path(cache), root, class_map, skip_unresolved)
        if verify == "fast":
            found = _read_scan_record(*where)
            if found is not None:
                log.info("image folder %s: as scanned before (%d images)", root, len(found[0]))
                return ScannedDatabase(db, found[0], found[1], reused=True)
        before = _folders_to_list(root)
    images = features.scan_image_folder(
        db.path,
        class_map=class_map,
        unresolved="skip" if skip_unresolved else "error",
        progress=False,
    )
    identity = files_identity([db.path / p for p in images.paths])
    if class_map is not None or skip_unresolved:
        labels = hashlib.sha256("\n".join(images.wnids).encode()).hexdigest()
        identity = f"{identity}:{labels[:16]}"
    pending = None
    if where is not None:
        record = _scan_record(where[1], images, identity, before)
        if record is not None:
            pending = (where[0], record)
    return ScannedDatabase(db, images, identity, pending=pending)


def _earlier_database(staging: Path, model: str) -> Path | None:
    """The newest finished artifact of the same database stage under another key: in
    practice the same image folder embedded before images were added, removed or
    edited (another key, since the images' identity is part of it).  The extraction
    copies the shards whose images are all unchanged there instead of computing
    them (:meth:`~fmri2image.features.shards.FeatureStoreWriter.seed_from`, which
    checks the store, its root, encoder and configuration, and each shard's SHA-256).
    The run holds the cache's writer lock: no other run writes there meanwhile."""
    from fmri2image.features.shards import MANIFEST as STORE_MANIFEST
    from fmri2image.features.shards import store_dirname

    newest: tuple[int, Path] | None = None
    try:
        folders = list(staging.parent.iterdir())
    except OSError:
        return None
    for folder in folders:
        if folder == staging or folder.name.startswith("."):
            continue  # this run's, or a killed run's staging / partial folder
        try:
            stamp = (folder / MANIFEST).stat().st_mtime_ns  # a finished artifact
            (folder / store_dirname(model) / STORE_MANIFEST).stat()
        except OSError:
            continue
        if newest is None or stamp > newest[0]:
            newest = (stamp, folder)
    return None if newest is None else newest[1]


def database_stage(
    model: str, scanned: ScannedDatabase, components: Components, *, batch_size: int
) -> Stage:
    """Embed an ImageNet-style image folder with ``model`` (resumable)."""
    db, images = scanned.spec, scanned.images
    cfg = {"model": model, "database": db.name, "images": scanned.identity}

    def run(ctx: StageContext) -> None:
        from fmri2image.features import extract_features

        scanned.remember()  # the cache exists now: the next run need not list the folder
        log.info("embedding the %d images of %s with %s", len(images), db.path, model)
        extract_features(
            images, [components.encoder(model)], ctx.folder, batch_size=batch_size,
            device=components.device, progress=ctx.progress,
            seed_from=_earlier_database(ctx.folder, model),
        )  # fmt: skip

    return Stage(
        f"database/{model}/{db.name}",
        run,
        lambda folder: DatabaseFeatures(model, folder),
        cfg,
        version="1",
        resumable=True,
        prepare=lambda: components.encoder(model),
        resources="gpu",
    )


# ---------------------------------------------------------------- prototypes
@dataclass(frozen=True, eq=False)
class Prototypes:
    """One row per class in an encoder's embedding space (``prototypes`` stage).

    Attributes
    ----------
    matrix : ndarray of shape (n_classes, dim), float32
    labels : tuple of str
        The class of each row (WordNet ids).
    items : tuple of str or None
        What each row is (the prompt of a text prototype), or None.
    """

    matrix: np.ndarray
    labels: tuple[str, ...]
    items: tuple[str, ...] | None = None

    def index(self) -> Any:
        """An exact cosine index over the rows, labelled by class."""
        from fmri2image.retrieval import prototype_index

        if self.items is None:
            return prototype_index((self.matrix, list(self.labels)))
        from fmri2image.retrieval import FeatureIndex

        return FeatureIndex("flat", metric="cosine").add(
            self.matrix, list(self.labels), list(self.items)
        )


def prototypes_stage(model: str, db: DatabaseSpec, components: Components) -> Stage:
    """The encoder's ImageNet-1k classifier rows, or the CLIP text embeddings of one
    prompt per class: computed once per encoder and label set, reused by every
    subject, ROI and mapping."""
    from fmri2image.retrieval.text_prototypes import DEFAULT_TEMPLATE

    text = db.kind == "text-prototypes"
    kind = f"text-{db.vocabulary}" if text else "heads"
    cfg = {"model": model, "kind": kind, "template": DEFAULT_TEMPLATE if text else None}

    def run(ctx: StageContext) -> None:
        encoder = components.encoder(model)
        items: list[str] | None = None
        if text:
            from fmri2image.retrieval.text_prototypes import class_prompts, text_prototypes

            matrix, labels = text_prototypes(encoder, db.vocabulary, progress=ctx.progress)
            items = class_prompts(labels)
        else:
            found = encoder.class_prototypes()
            if found is None:  # pragma: no cover - checked when the run is planned
                from fmri2image.errors import ConfigError

                raise ConfigError(f"Encoder {model!r} has no ImageNet-1k classifier head.")
            matrix, labels = found
        _io.save_safetensors(
            ctx.folder / "prototypes.safetensors",
            {"prototypes": np.asarray(matrix, dtype=np.float32)},
        )
        _io.save_json(
            ctx.folder / "prototypes.json",
            {"model": model, "kind": kind, "labels": list(labels), "items": items},
        )

    def load(folder: Path) -> Prototypes:
        tensors, _ = _io.load_safetensors(folder / "prototypes.safetensors")
        meta = _io.load_json(folder / "prototypes.json")
        items = meta.get("items")
        return Prototypes(
            tensors["prototypes"], tuple(meta["labels"]), tuple(items) if items else None
        )

    def prepare() -> None:
        encoder = components.encoder(model)
        if text:
            _needs_text_tower(encoder, db.source)

    return Stage(f"prototypes/{model}/{kind}", run, load, cfg, version="1", prepare=prepare,
                 resources="gpu")  # fmt: skip


def captions_stage(
    model: str, features_name: str, vocabulary: str, components: Components
) -> Stage:
    """The text tower's embedding of each distinct label of the training stimuli (the
    ``captions`` database): the label itself when it is text (NSD's COCO captions,
    THINGS' concepts), "a photo of a {name}" when it is a WordNet id."""
    from fmri2image.retrieval.text_prototypes import DEFAULT_TEMPLATE

    cfg = {"model": model, "vocabulary": vocabulary, "template": DEFAULT_TEMPLATE}

    def run(ctx: StageContext) -> None:
        from fmri2image.retrieval.text_prototypes import class_prompts, embed_prompts

        feats: StimulusFeatures = ctx.inputs[features_name]
        labels = list(dict.fromkeys(feats.train_labels))
        prompts = class_prompts(labels) if vocabulary == "wordnet" else labels
        matrix = embed_prompts(components.encoder(model), prompts, progress=ctx.progress)
        _io.save_safetensors(ctx.folder / "prototypes.safetensors", {"prototypes": matrix})
        _io.save_json(
            ctx.folder / "prototypes.json",
            {"model": model, "kind": "captions", "labels": labels, "items": prompts},
        )

    def load(folder: Path) -> Prototypes:
        tensors, _ = _io.load_safetensors(folder / "prototypes.safetensors")
        meta = _io.load_json(folder / "prototypes.json")
        return Prototypes(tensors["prototypes"], tuple(meta["labels"]), tuple(meta["items"]))

    return Stage(
        f"captions/{model}", run, load, cfg, inputs=(features_name,), version="1",
        prepare=lambda: _needs_text_tower(components.encoder(model), "captions"),
        resources="gpu",
    )  # fmt: skip


def _needs_text_tower(encoder: Any, database: str) -> None:
    """Refuse, before any stage runs, an encoder without a text tower for ``database``
    (an encoder whose capabilities are known only once it is built)."""
    if not getattr(encoder, "has_text_tower", False):
        from fmri2image.features.capabilities import EncoderCapabilities

        spec = getattr(encoder, "spec", None)
        EncoderCapabilities(
            getattr(encoder, "name", "?"),
            class_prototypes=getattr(spec, "classifier_head", None),
            text_prototypes=False,
        ).check(database)


# ---------------------------------------------------------------- mapping
@dataclass(frozen=True, eq=False)
class MapArtifact:
    """A fitted map and what it predicts (the ``mapping`` stage).

    Attributes
    ----------
    folder : Path
        Holds ``mapping/`` (the fitted model), ``prediction/`` (metrics tables),
        ``predicted_test_embeddings.npy``, ``train_mean.npy`` and ``fit.json``.
    predictions : ndarray of shape (n_eval, dim)
    train_mean : ndarray of shape (dim,)
    metrics : dict
        Prediction metrics, each with its baseline and chance.
    fit : dict
        Alpha range, CV folds, diagnostics, warnings.
    """

    folder: Path
    predictions: np.ndarray
    train_mean: np.ndarray
    metrics: dict[str, Any]
    fit: dict[str, Any]

    def load_model(self) -> Any:
        from fmri2image.mapping import load_mapping

        return load_mapping(self.folder / "mapping")


#: How the mapping's fit diagnostics name the options, in the CLI's words.
CLI_FLAGS = {
    "alphas": "--alphas LO:HI:N",
    "groups": "--cv-groups none",
    "cv": "--cv N|loo",
    "alpha_per_target": "--shared-alpha",
}


#: Mapper parameters added after their mapper was released, with the value that
#: reproduces the earlier behaviour: at that value they stay out of the mapping stage's
#: key, so maps (and everything made from them) cached by earlier versions are reused.
_PARAMS_ADDED_LATER = {"cv_statistics": "fold"}


def mapping_stage(
    name: str, config: RunConfig, mapper: str, data_name: str, features_name: str
) -> Stage:
    """Fit the voxels → embedding map ``mapper`` on the training samples, predict the
    evaluation samples, score the predictions beside the training-mean baseline and
    chance."""
    m = config.mapping

    def make() -> Any:
        return m.make_mapper(mapper, device=config.device, seed=config.seed)

    params = make().get_params()
    for param, default in _PARAMS_ADDED_LATER.items():
        if param in params and params[param] == default:
            del params[param]  # the key of a run made before the parameter existed
    cfg = {
        "mapper": mapper,
        "params": _io.strict_json(params),
        "cv_groups": m.cv_groups,
        "seed": config.seed,
    }

    def run(ctx: StageContext) -> None:
        from fmri2image.data.dataset import average_rows
        from fmri2image.evaluation import prediction_metrics
        from fmri2image.mapping import fit_summary, fit_warnings, save_mapping

        data: SubjectData = ctx.inputs[data_name]
        feats: StimulusFeatures = ctx.inputs[features_name]
        Y_train = feats.train[data.train_rows]
        model = make()
        groups = data.categories if m.cv_groups == "category" else None
        model.fit(data.X_train, Y_train, groups=groups)
        save_mapping(model, ctx.folder / "mapping")
        Y_pred = average_rows(model.predict(data.X_eval), data.eval_index)
        _io.save_npy(ctx.folder / "predicted_test_embeddings.npy", Y_pred)
        y_mean = Y_train.mean(axis=0)
        pred = prediction_metrics(
            feats.test[data.test_rows], Y_pred, y_mean, image_ids=list(data.test_stems)
        )
        pred.save(ctx.folder / "prediction")
        has_diagnostics = getattr(model, "diagnostics_", None) is not None
        warnings = list(fit_warnings(model, flags=CLI_FLAGS)) if has_diagnostics else []
        for msg in warnings:
            log.warning("[%s] %s", name, msg)
        _io.save_npy(ctx.folder / "train_mean.npy", y_mean)
        _io.save_json(
            ctx.folder / "fit.json",
            {
                "metrics": pred.to_dict()["metrics"],
                "fit": {**fit_summary(model), "warnings": warnings},
            },
        )

    def load(folder: Path) -> MapArtifact:
        meta = _io.load_json(folder / "fit.json")
        return MapArtifact(
            folder=folder,
            predictions=_load_npy(folder / "predicted_test_embeddings.npy"),
            train_mean=_load_npy(folder / "train_mean.npy"),
            metrics=meta["metrics"],
            fit=meta["fit"],
        )

    return Stage(name, run, load, cfg, inputs=(data_name, features_name), version="2")


# ---------------------------------------------------------------- retrieval
@dataclass(frozen=True)
class RetrievalArtifact:
    """Labels retrieved for each prediction from one database, and their scores."""

    folder: Path
    database: str
    label: str
    k: int
    summary: dict[str, Any]
    top1: tuple[str, ...]


def retrieval_stage(
    name: str,
    config: RunConfig,
    db: DatabaseSpec,
    k: int,
    model: str,
    data_name: str,
    mapping_name: str,
    source_name: str | None,
    features_name: str | None = None,
) -> Stage:
    """k-NN labels of each predicted embedding from one database, scored.

    ``source_name``: the stage whose artifact is the database (``database`` or
    ``prototypes``); None for a feature folder from ``fmri2image extract``.
    ``features_name``: the stimulus features of ``model``, whose training rows are
    CSLS's references (read only with ``retrieval.hubness = "csls"``).
    """
    hubness = config.retrieval.hubness
    cfg: dict[str, Any] = {
        "database": {"kind": db.kind, "name": db.name, "vocabulary": db.vocabulary},
        "source": db.source if db.kind == "features" else None,
        "k": k,
        "vote": config.retrieval.vote,
        "hubness": hubness,
        "csls_k": config.retrieval.csls_k if hubness == "csls" else None,
        "seed": config.seed,
    }
    if hubness == "csls" and features_name is None:
        raise ValueError("retrieval_stage with hubness='csls' needs features_name.")
    if db.kind == "features":  # a feature folder from `extract`: its identity is part of the key
        from fmri2image.pipeline.preflight import encoder_store

        store = encoder_store(db.path, model) if db.path is not None else None
        cfg["store"] = files_identity(sorted(store.glob("*"))) if store else None
    inputs = (data_name, mapping_name) + ((source_name,) if source_name else ())
    if hubness == "csls" and features_name is not None:
        inputs += (features_name,)

    def run(ctx: StageContext) -> None:
        from fmri2image.evaluation import semantic_metrics
        from fmri2image.pipeline.preflight import encoder_store
        from fmri2image.retrieval import FeatureIndex, hubness_correction, retrieve

        data: SubjectData = ctx.inputs[data_name]
        mapped: MapArtifact = ctx.inputs[mapping_name]
        source = ctx.inputs[source_name] if source_name else None
        if isinstance(source, (Prototypes, StimulusFeatures)):
            index = source.index()
        elif isinstance(source, DatabaseFeatures):
            index = FeatureIndex.from_store(source.store)
        else:
            assert db.path is not None
            index = FeatureIndex.from_store(encoder_store(db.path, model))
        vote = config.retrieval.vote
        stems = list(data.test_stems)
        references = None
        if hubness == "csls":  # each training stimulus once; never a test image
            feats: StimulusFeatures = ctx.inputs[features_name]
            references = feats.train[np.unique(data.train_rows)]
        hub = hubness_correction(
            index, hubness, query_mean=mapped.train_mean, references=references,
            csls_k=config.retrieval.csls_k,
        )  # fmt: skip
        found = retrieve(mapped.predictions, index, k=k, vote=vote, query_ids=stems, hubness=hub)
        # The baseline (the training mean) gets the same correction: centered, it is
        # the zero vector, whose neighbours carry no information.
        baseline = retrieve(mapped.train_mean[None, :], index, k=k, vote=vote, hubness=hub)
        sem = semantic_metrics(
            found, list(data.true_labels), seed=config.seed, query_ids=stems, baseline=baseline,
            wordnet=None if data.vocabulary == "wordnet" else False,
        )  # fmt: skip
        sem.save(ctx.folder)
        found.save(ctx.folder / "neighbours.parquet")
        _io.save_json(
            ctx.folder / "retrieval.json",
            {
                "database": db.name,
                "label": db.label,
                "k": k,
                "hubness": hubness,
                "summary": sem.summary,
                "top1": [str(x) for x in found.top1],
            },
        )

    def load(folder: Path) -> RetrievalArtifact:
        meta = _io.load_json(folder / "retrieval.json")
        return RetrievalArtifact(
            folder, meta["database"], meta["label"], int(meta["k"]), meta["summary"],
            tuple(meta["top1"]),
        )  # fmt: skip

    return Stage(name, run, load, cfg, inputs=inputs, version="2")


# ---------------------------------------------------------------- low-level code
@dataclass(frozen=True, eq=False)
class CodeFeatures(StimulusFeatures):
    """The low-level image code fitted on the training stimuli (``codebook`` stage),
    with every stimulus's code vector as its features (rows follow the stimuli).

    Attributes
    ----------
    code_folder : Path
        The fitted code (:func:`fmri2image.generation.lowlevel.load_code` reads it).
    """

    code_folder: Path = Path()


#: Options of the low-level generators that decode, rather than shape, the code.
_DECODE_OPTIONS = frozenset({"roi", "size", "codebook", "batch_size"})


def code_name(generator: str, options: Any) -> str:
    """The name of a low-level generator's code in stage names (``lowlevel-pca``)."""
    return f"{generator}-{safe_name(str(getattr(options, 'code', 'code')))}"


def codebook_stage(
    generator: str,
    options: Any,
    images: Mapping[str, StimulusImages | str],
    components: Components,
) -> Stage:
    """Fit the low-level image code of ``generator`` on the training stimuli (never
    the test ones) and encode every stimulus: shared by subjects, ROIs, models and
    mappers.  ``options``: the generator's resolved ``Options``."""
    import dataclasses

    shaping = {
        k: v for k, v in sorted(dataclasses.asdict(options).items()) if k not in _DECODE_OPTIONS
    }
    cfg = {
        "generator": generator,
        "code": shaping,
        "stimuli": {
            split: (im if isinstance(im, str) else im.identity)
            for split, im in sorted(images.items())
        },
    }
    inputs = tuple(sorted({im for im in images.values() if isinstance(im, str)}))
    name = f"codebook/{code_name(generator, options)}"

    def run(ctx: StageContext) -> None:
        from fmri2image.generation.lowlevel import make_code

        code = make_code(options, device=components.device, dtype=components.dtype)
        train = _resolve(ctx, images["train"])
        test = _resolve(ctx, images["test"])
        log.info("fitting the %s code on %d training stimuli", options.code, len(train.files))
        code.fit(_load_images(train.files))
        code.save(ctx.folder / "code")
        _io.save_npy(ctx.folder / "train.npy", _encode(code, train.files))
        _io.save_npy(ctx.folder / "test.npy", _encode(code, test.files))
        _io.save_json(
            ctx.folder / "codebook.json",
            {"train_labels": list(train.labels), "test_stems": list(test.stems)},
        )

    def load(folder: Path) -> CodeFeatures:
        meta = _io.load_json(folder / "codebook.json")
        train = _load_npy(folder / "train.npy")
        return CodeFeatures(
            model=code_name(generator, options),
            dim=int(train.shape[1]),
            train=train,
            test=_load_npy(folder / "test.npy"),
            train_labels=tuple(meta["train_labels"]),
            test_stems=tuple(meta["test_stems"]),
            code_folder=folder / "code",
        )

    return Stage(name, run, load, cfg, inputs=inputs, version="1", resources="gpu")


def _encode(code: Any, files: Sequence[Path], step: int = 64) -> np.ndarray:
    """The code vectors of image files, read ``step`` at a time."""
    parts = [code.encode(_load_images(files[i : i + step])) for i in range(0, len(files), step)]
    return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------- generation
@dataclass(frozen=True)
class ImagesArtifact:
    """Pictures, one ``<stem>.png`` per test image, with ``<stem>.json`` records and
    ``generation.parquet`` (the ``generation`` stage)."""

    folder: Path
    stems: tuple[str, ...]
    generator: dict[str, Any]
    n_made: int
    n_flagged: int


@dataclass(frozen=True)
class GenerationPlan:
    """What one generation stage is fed.

    Attributes
    ----------
    condition : {"predicted", "true", "random"}
    stems, true_labels : tuple of str
        The test images to make pictures for, and their labels.
    mapping, retrieval : str or None
        Stage names of the predictions and the labels (``predicted`` only).
    database : str or None
        Stage name of the image database a generator declaring the ``database``
        input gets (its ``database`` option).
    init : str or None
        Stage name of the initial images (``generation.init = "invert"``).
    init_files : dict of str to Path, optional
        The initial image of each stem (``generation.init = DIR``).
    codebook : str or None
        Stage name of the low-level image code a generator declaring the ``codebook``
        input decodes (its ``codebook`` option); the generation stage's features are
        then that code's vectors of the stimuli.
    """

    condition: str
    stems: tuple[str, ...]
    true_labels: tuple[str, ...]
    mapping: str | None = None
    retrieval: str | None = None
    database: str | None = None
    init: str | None = None
    init_files: dict[str, Path] | None = None
    codebook: str | None = None


def generation_stage(
    name: str,
    config: RunConfig,
    model: str,
    generator: str,
    options: Mapping[str, Any],
    plan: GenerationPlan,
    features_name: str,
    components: Components,
) -> Stage:
    """A picture per test image from one model's decoding (or its bounds).

    Resumable per image: each picture is written with its record and checksum, and a
    rerun makes only the missing ones (:func:`~fmri2image.pipeline.pictures.make_images`).
    """
    from fmri2image.pipeline.pictures import EXECUTION_OPTIONS

    g = config.generation
    seed = config.generation_seed
    cfg = {
        "generator": generator,
        "options": {k: v for k, v in sorted(options.items()) if k not in EXECUTION_OPTIONS},
        "model": model,
        "condition": plan.condition,
        "seed": seed,
        "dtype": components.dtype,  # float16 pictures differ from float32 ones
        "stems": list(plan.stems) if plan.condition != "predicted" else None,
        "init": files_identity(list(plan.init_files.values())) if plan.init_files else None,
    }
    named = (features_name, plan.mapping, plan.retrieval, plan.database, plan.init, plan.codebook)
    inputs = tuple(dict.fromkeys(n for n in named if n is not None))

    def built(ctx: StageContext | None) -> Generator:
        opts = dict(options)
        if plan.database is not None and ctx is not None:  # the run supplies the input
            opts["database"] = str(ctx.inputs[plan.database].root)
        if plan.codebook is not None and ctx is not None:
            opts["codebook"] = str(ctx.inputs[plan.codebook].code_folder)
        return components.generator(generator, opts)

    def run(ctx: StageContext) -> None:
        from fmri2image.generation import EmbeddingStats
        from fmri2image.pipeline.pictures import (
            build_requests,
            make_images,
            random_training_rows,
            ray_runner,
        )

        feats: StimulusFeatures = ctx.inputs[features_name]
        gen = built(ctx)
        gen.check(model)
        if plan.condition == "predicted":
            embeddings = ctx.inputs[plan.mapping].predictions
            labels: Sequence[str | None] = (
                ctx.inputs[plan.retrieval].top1 if plan.retrieval else [None] * len(plan.stems)
            )
        elif plan.condition == "true":
            embeddings = feats.test_embeddings(plan.stems)
            labels = plan.true_labels
        else:  # random: one training stimulus per image (the floor)
            rows = random_training_rows(seed, plan.stems, len(feats.train))
            embeddings = feats.train[rows]
            labels = [feats.train_labels[r] for r in rows]
        inits = None
        if plan.init is not None:
            folder = ctx.inputs[plan.init].folder
            inits = _load_images([folder / f"{s}.png" for s in plan.stems])
        elif plan.init_files:
            inits = _load_images([plan.init_files[s] for s in plan.stems])
        requests = build_requests(
            plan.stems, labels, embeddings, seed=seed, encoder=model,
            stats=EmbeddingStats.from_embeddings(feats.train), init_images=inits,
        )  # fmt: skip
        runner = None
        if g.executor == "ray":
            injected = components.injected_generators.get(generator)
            runner = ray_runner(
                generator, {**gen.describe()["options"]} if injected is None else {},
                device=components.device, dtype=components.dtype, workers=g.workers,
                generator=injected,
            )  # fmt: skip
        # At least the generator's own batch (invert optimises its batch together).
        batch = max(g.batch_size, gen.preferred_batch or 0)
        made = make_images(
            gen, requests, ctx.folder, batch_size=batch, progress=ctx.progress,
            desc=f"{generator} ({model}, {plan.condition})", runner=runner,
        )  # fmt: skip
        _io.save_json(
            ctx.folder / "images.json",
            {
                "stems": list(plan.stems),
                "generator": gen.describe(),
                "n_made": made["made"],
                "n_flagged": made["flagged"],
            },
        )

    def load(folder: Path) -> ImagesArtifact:
        meta = _io.load_json(folder / "images.json")
        return ImagesArtifact(
            folder, tuple(meta["stems"]), meta["generator"], int(meta.get("n_made", 0)),
            int(meta["n_flagged"]),
        )  # fmt: skip

    def prepare() -> None:
        if plan.database is None and plan.codebook is None:  # else an upstream stage's
            built(None).check(model)

    return Stage(name, run, load, cfg, inputs=inputs, version="2", resumable=True, prepare=prepare,
                 resources="gpu")  # fmt: skip


def _load_images(paths: Sequence[Path]) -> list[Any]:
    from fmri2image.data.images import decode_image

    return [decode_image(p, None) for p in paths]


# ---------------------------------------------------------------- evaluation
def image_source(root: Path, files: Mapping[str, Path]) -> Any:
    """An :class:`~fmri2image.evaluation.images.ImageSource` of exactly ``files``
    (stem -> image file), e.g. the test stimuli a run scored."""
    from fmri2image.evaluation.images import ImageSource

    return ImageSource(path=root, kind="folder", stems=tuple(sorted(files)), files=dict(files))


def evaluation_stage(
    name: str,
    generation_name: str,
    ground_truth: StimulusImages | str,
    config: RunConfig,
    components: Components,
) -> Stage:
    """The field's image metrics of one set of pictures against the stimuli seen.

    ``ground_truth``: the test stimuli's images (or the stimuli stage writing them).
    Blank pictures (what a safety checker leaves) are excluded and listed, as
    ``fmri2image evaluate`` does.
    """
    from fmri2image.evaluation.evaluate import resolve_metrics

    e = config.evaluation
    chosen, _ = resolve_metrics(e.metrics, device=components.device)
    cfg = {
        # The metrics that will run: with metrics unset that depends on the device.
        "metrics": [m.name for m in chosen],
        "device_kind": str(components.device).split(":")[0],
        "seed": config.seed,
        "bootstrap": e.bootstrap,
        "ground_truth": ground_truth if isinstance(ground_truth, str) else ground_truth.identity,
        "weights": {k: files_identity([v]) for k, v in sorted(e.weights.items())},
    }
    inputs = (generation_name,) + ((ground_truth,) if isinstance(ground_truth, str) else ())

    def run(ctx: StageContext) -> None:
        from fmri2image.evaluation.evaluate import evaluate_images
        from fmri2image.evaluation.images import pair_images

        images: ImagesArtifact = ctx.inputs[generation_name]
        gt = _resolve(ctx, ground_truth)
        recon = image_source(images.folder, {s: images.folder / f"{s}.png" for s in images.stems})
        truth = image_source(Path(gt.files[0]).parent, gt.files_of(images.stems))
        evaluation = evaluate_images(
            pair_images(recon, truth), e.metrics, device=components.device,
            batch_size=e.batch_size, seed=config.seed, n_bootstrap=e.bootstrap,
            weights=dict(e.weights), progress=ctx.progress, networks=components.networks,
        )  # fmt: skip
        for metric, reason in evaluation.skipped.items():
            log.info("[%s] %s skipped: %s", name, metric, reason)
        evaluation.save(ctx.folder / "scores.csv")

    def load(folder: Path) -> Any:
        from fmri2image.evaluation.evaluate import Evaluation

        return Evaluation.load(folder / "scores.csv")

    return Stage(name, run, load, cfg, inputs=inputs, version="1", resources="gpu")
