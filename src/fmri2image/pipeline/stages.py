"""The pipeline's stages and their typed artifacts.

Each ``*_stage`` function returns a :class:`~fmri2image.pipeline.graph.Stage`: its
name, its own slice of the configuration (which, with its inputs' keys, is its
cache key), the stages it reads, and two closures, ``run`` (writes the artifact
folder) and ``load`` (reads it back as the dataclass named beside it).  Components
(encoders, generators, metric networks) come from a :class:`Components` object,
built only when a stage that needs them is computed, so a fully cached run loads
no model, and tests inject tiny ones.

=========================================  =====================================
stage                                      artifact
=========================================  =====================================
``data/s<subject>/<roi>``                  :class:`SubjectData`
``features/<model>``                       :class:`StimulusFeatures`
``database/<model>/<database>``            :class:`DatabaseFeatures`
``mapping/<model>/s<subject>/<roi>``       :class:`MapArtifact`
``retrieval/<model>/<db>/s<s>/<roi>``      :class:`RetrievalArtifact`
``generation/<model>/<gen>/<condition>/…`` :class:`ImagesArtifact`
``evaluation/<model>/<gen>/<condition>/…`` :class:`~fmri2image.evaluation.Evaluation`
=========================================  =====================================

The bounds (``true`` and ``random`` conditions) depend on the stimulus features,
not on the brain, so they are keyed by the test images they are made for and
shared by every subject and ROI that scores the same images.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image import _io
from fmri2image.pipeline.graph import Stage, StageContext

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.data.stimuli import StimulusSet
    from fmri2image.features.base import Encoder
    from fmri2image.generation import Generator
    from fmri2image.pipeline.decoding import DecodingConfig
    from fmri2image.pipeline.preflight import DatabaseSpec

log = logging.getLogger(__name__)

__all__ = [
    "Components",
    "DatabaseFeatures",
    "ImagesArtifact",
    "MapArtifact",
    "RetrievalArtifact",
    "ScannedDatabase",
    "StimulusFeatures",
    "SubjectData",
    "data_stage",
    "database_stage",
    "evaluation_stage",
    "features_stage",
    "files_identity",
    "generation_stage",
    "image_source",
    "mapping_stage",
    "retrieval_stage",
    "scan_database",
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
        self._generators: dict[str, Generator] = dict(generators or {})  # injected
        self._built_generators: dict[str, Generator] = {}
        #: Metric networks, loaded once per run (see ``evaluate_images(networks=)``).
        self.networks: dict[str, Any] = {}

    def encoder(self, name: str) -> Encoder:
        if name not in self._encoders:
            from fmri2image.features import get_encoder

            log.info("loading encoder %s", name)
            self._encoders[name] = get_encoder(name, device=self.device)
        return self._encoders[name]

    def generator(self, name: str, options: Mapping[str, Any]) -> Generator:
        if name in self._generators:
            return self._generators[name]
        key = _io.json_sha256({"name": name, "options": dict(options)})
        if key not in self._built_generators:
            from fmri2image.generation import get_generator

            log.info("loading generator %s", name)
            self._built_generators[key] = get_generator(
                name, device=self.device, dtype=self.dtype, **dict(options)
            )
        return self._built_generators[key]


# ---------------------------------------------------------------- identities
def files_identity(paths: Sequence[str | os.PathLike | None]) -> str:
    """SHA-256 of each file's resolved path, size and modification time.

    Part of a stage's config: change, move or touch an input file and the stages
    reading it are recomputed.  (Contents are checked where they are read: the
    feature stores hash what they embed.)
    """
    items = []
    for p in paths:
        if p is None:
            items.append(None)
            continue
        path = Path(p).resolve()
        st = path.stat()
        items.append([str(path), st.st_size, st.st_mtime_ns])
    return _io.json_sha256(items)


# ---------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class SubjectData:
    """One subject × ROI, normalized and split (the ``data`` stage).

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels)
    X_eval : ndarray of shape (n_eval, n_voxels)
        The trials the map predicts (test images averaged over repeats, or imagery
        trials averaged per imagined category).
    train_rows, test_rows : ndarray of int
        Rows of the training / test stimulus sets (and of their feature stores) that
        the samples show; ``test_rows`` is aligned with ``X_eval``.
    test_stems, true_wnids : tuple of str
    categories : ndarray
        Training category of each training sample (CV groups).
    info : dict
        Counts for the tables (subject, roi, split, n_train, repeats, voxels).
    """

    X_train: np.ndarray
    X_eval: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    test_stems: tuple[str, ...]
    true_wnids: tuple[str, ...]
    categories: np.ndarray
    info: dict[str, Any]


def data_stage(name: str, config: DecodingConfig, identity: str, inputs: Any) -> Stage:
    """The data stage of one subject × ROI.

    ``inputs`` is what preflight loaded (``decoding._Inputs``); the stage writes it.
    ``identity`` (:func:`files_identity` of the subject's files) makes a changed
    file a new key.
    """
    cfg = {
        "subject": config.subject,
        "roi": config.roi,
        "release": config.release,
        "normalization": config.normalization,
        "drop_nan_voxels": config.drop_nan_voxels,
        "split": config.split,
        "seed": config.seed,
        "files": identity,
    }

    def run(ctx: StageContext) -> None:
        splits = inputs.splits
        _io.save_npy(ctx.folder / "X_train.npy", np.asarray(splits.X_train, dtype=np.float32))
        _io.save_npy(ctx.folder / "X_eval.npy", np.asarray(inputs.X_eval, dtype=np.float32))
        _io.save_npy(ctx.folder / "train_rows.npy", np.asarray(inputs.train_rows, np.int64))
        _io.save_npy(ctx.folder / "test_rows.npy", np.asarray(inputs.test_rows, np.int64))
        _io.save_npy(ctx.folder / "categories.npy", np.asarray(inputs.categories, np.int64))
        _io.save_json(
            ctx.folder / "data.json",
            {
                "test_stems": list(inputs.test_stems),
                "true_wnids": list(inputs.true_wnids),
                "info": {
                    "subject": config.subject,
                    "roi": config.roi,
                    "split": config.split,
                    "n_train": len(splits.train_ids),
                    "n_train_categories": len(np.unique(inputs.categories)),
                    "n_eval": len(inputs.test_stems),
                    "n_eval_repeats": list(inputs.n_eval_repeats),
                    "n_voxels": int(splits.n_voxels),
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
            true_wnids=tuple(meta["true_wnids"]),
            categories=_load_npy(folder / "categories.npy"),
            info=meta["info"],
        )

    return Stage(name, run, load, cfg, version="1")


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------- features
@dataclass(frozen=True, eq=False)
class StimulusFeatures:
    """One model's embeddings of every training and test stimulus (``features``).

    Rows follow the stimulus sets' id files.
    """

    model: str
    dim: int
    train: np.ndarray
    test: np.ndarray
    train_wnids: tuple[str, ...]
    test_stems: tuple[str, ...]

    def test_embeddings(self, stems: Sequence[str]) -> np.ndarray:
        row = {s: i for i, s in enumerate(self.test_stems)}
        return self.test[[row[s] for s in stems]]


def _stimulus_db(stimuli: StimulusSet) -> Any:
    from fmri2image.features import ImageDatabase

    return ImageDatabase.from_paths(stimuli.paths, stimuli.wnids, root=stimuli.image_dir)


def features_stage(
    model: str,
    stimuli: Mapping[str, StimulusSet],
    components: Components,
    *,
    batch_size: int,
    progress: bool = True,
) -> Stage:
    """Embed the training and test stimuli with ``model`` (shared by subjects and ROIs).

    Resumable: the sharded stores resume what a killed extraction finished (each
    shard verified by its checksum).
    """
    from fmri2image.features.shards import store_dirname

    cfg = {
        "model": model,
        "stimuli": {
            split: files_identity([s.id_file, *s.paths]) for split, s in sorted(stimuli.items())
        },
    }

    def run(ctx: StageContext) -> None:
        from fmri2image.features import extract_features

        encoder = components.encoder(model)
        for split, stim in stimuli.items():
            extract_features(
                _stimulus_db(stim), [encoder], ctx.folder / split, batch_size=batch_size,
                device=components.device, on_unreadable="raise", progress=ctx.progress,
            )  # fmt: skip

    def load(folder: Path) -> StimulusFeatures:
        from fmri2image.features.shards import open_feature_store

        train = open_feature_store(folder / "training" / store_dirname(model))
        test = open_feature_store(folder / "test" / store_dirname(model))
        x_train, x_test = train.load(), test.load()
        return StimulusFeatures(
            model=model,
            dim=int(x_train.shape[1]),
            train=x_train,
            test=x_test,
            train_wnids=tuple(train.wnids),
            test_stems=tuple(Path(p).stem for p in test.paths),
        )

    return Stage(
        f"features/{model}", run, load, cfg, version="1", resumable=True,
        prepare=lambda: components.encoder(model),
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
    """

    spec: DatabaseSpec
    images: Any
    identity: str


def scan_database(db: DatabaseSpec) -> ScannedDatabase:
    """Scan an ImageNet-style image folder and fingerprint its files."""
    from fmri2image.features import scan_image_folder

    assert db.path is not None
    images = scan_image_folder(db.path, progress=False)
    return ScannedDatabase(db, images, files_identity([db.path / p for p in images.paths]))


def database_stage(
    model: str, scanned: ScannedDatabase, components: Components, *, batch_size: int
) -> Stage:
    """Embed an ImageNet-style image folder with ``model`` (resumable)."""
    db, images = scanned.spec, scanned.images
    cfg = {"model": model, "database": db.name, "images": scanned.identity}

    def run(ctx: StageContext) -> None:
        from fmri2image.features import extract_features

        log.info("embedding the %d images of %s with %s", len(images), db.path, model)
        extract_features(
            images, [components.encoder(model)], ctx.folder, batch_size=batch_size,
            device=components.device, progress=ctx.progress,
        )  # fmt: skip

    return Stage(
        f"database/{model}/{db.name}",
        run,
        lambda folder: DatabaseFeatures(model, folder),
        cfg,
        version="1",
        resumable=True,
        prepare=lambda: components.encoder(model),
    )


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


def mapping_stage(name: str, config: DecodingConfig, data_name: str, features_name: str) -> Stage:
    """Fit the voxels → embedding map on the training samples, predict the evaluation
    samples, score the predictions (``decode``'s mapping step)."""
    from fmri2image.pipeline.decoding import CLI_FLAGS, _fit_summary, fit_map

    mapper = config.make_mapper()
    cfg = {
        "mapper": config.mapper,
        "params": _io.strict_json(mapper.get_params()),
        "cv_groups": config.cv_groups,
        "seed": config.seed,
    }

    def run(ctx: StageContext) -> None:
        from fmri2image.mapping import fit_warnings

        data: SubjectData = ctx.inputs[data_name]
        feats: StimulusFeatures = ctx.inputs[features_name]
        groups = data.categories if config.cv_groups == "category" else None
        model, _, y_mean, metrics = fit_map(
            config, data.X_train, feats.train[data.train_rows], data.X_eval,
            feats.test[data.test_rows], ctx.folder, groups=groups, stems=data.test_stems,
        )  # fmt: skip
        has_diagnostics = getattr(model, "diagnostics_", None) is not None
        warnings = list(fit_warnings(model, flags=CLI_FLAGS)) if has_diagnostics else []
        for msg in warnings:
            log.warning("[%s] %s", name, msg)
        _io.save_npy(ctx.folder / "train_mean.npy", y_mean)
        _io.save_json(
            ctx.folder / "fit.json",
            {"metrics": metrics, "fit": {**_fit_summary(model), "warnings": warnings}},
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

    return Stage(name, run, load, cfg, inputs=(data_name, features_name), version="1")


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
    config: DecodingConfig,
    db: DatabaseSpec,
    k: int,
    model: str,
    data_name: str,
    mapping_name: str,
    database_name: str | None,
    components: Components,
) -> Stage:
    """k-NN labels of each predicted embedding from one database, scored."""
    from fmri2image.pipeline.decoding import _database_index, retrieve_labels

    cfg = {
        "database": {"kind": db.kind, "name": db.name, "vocabulary": db.vocabulary},
        "source": db.source if db.kind == "features" else None,
        "k": k,
        "vote": config.vote,
        "seed": config.seed,
    }
    if db.kind == "features":  # a feature folder from `extract`: its identity is part of the key
        from fmri2image.pipeline.preflight import encoder_store

        store = encoder_store(db.path, model) if db.path is not None else None
        cfg["store"] = files_identity(sorted(store.glob("*"))) if store else None
    inputs = (data_name, mapping_name) + ((database_name,) if database_name else ())

    def run(ctx: StageContext) -> None:
        from fmri2image.retrieval import FeatureIndex

        data: SubjectData = ctx.inputs[data_name]
        mapped: MapArtifact = ctx.inputs[mapping_name]
        if database_name:
            index = FeatureIndex.from_store(ctx.inputs[database_name].store)
        else:
            index = _database_index(db, components.encoder(model), ctx.folder,
                                    progress=ctx.progress)  # fmt: skip
        found, sem = retrieve_labels(
            config, mapped.predictions, mapped.train_mean, index, k, ctx.folder,
            stems=data.test_stems, true_wnids=data.true_wnids,
        )  # fmt: skip
        _io.save_json(
            ctx.folder / "retrieval.json",
            {
                "database": db.name,
                "label": db.label,
                "k": k,
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

    needs_encoder = db.kind in ("prototypes", "text-prototypes")
    prepare = (lambda: components.encoder(model)) if needs_encoder else None
    return Stage(name, run, load, cfg, inputs=inputs, version="1", prepare=prepare)


# ---------------------------------------------------------------- generation
@dataclass(frozen=True)
class ImagesArtifact:
    """Pictures, one ``<stem>.png`` per test image, with ``<stem>.json`` records and
    ``generation.parquet`` (the ``generation`` stage)."""

    folder: Path
    stems: tuple[str, ...]
    generator: dict[str, Any]
    n_flagged: int


@dataclass(frozen=True)
class GenerationPlan:
    """What one generation stage is fed.

    Attributes
    ----------
    condition : {"predicted", "true", "random"}
    stems, true_wnids : tuple of str
        The test images to make pictures for.
    mapping, retrieval : str or None
        Stage names of the predictions and the labels (``predicted`` only).
    database : str or None
        Stage name of the image database (the ``retrieve`` generator).
    """

    condition: str
    stems: tuple[str, ...]
    true_wnids: tuple[str, ...]
    mapping: str | None = None
    retrieval: str | None = None
    database: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def generation_stage(
    name: str,
    model: str,
    generator: str,
    options: Mapping[str, Any],
    plan: GenerationPlan,
    features_name: str,
    components: Components,
    *,
    seed: int,
    batch_size: int,
) -> Stage:
    """A picture per test image from one model's decoding (or its bounds).

    Resumable per image: each picture is written with its record and checksum, and a
    rerun makes only the missing ones.
    """
    from fmri2image.pipeline.generate import EXECUTION_OPTIONS

    cfg = {
        "generator": generator,
        "options": {k: v for k, v in sorted(options.items()) if k not in EXECUTION_OPTIONS},
        "model": model,
        "condition": plan.condition,
        "seed": seed,
        "dtype": components.dtype,  # float16 pictures differ from float32 ones
        "stems": list(plan.stems) if plan.condition != "predicted" else None,
    }
    inputs = tuple(
        n for n in (features_name, plan.mapping, plan.retrieval, plan.database) if n is not None
    )

    def run(ctx: StageContext) -> None:
        from fmri2image.generation import EmbeddingStats
        from fmri2image.pipeline.generate import build_requests, make_images, random_training_rows

        feats: StimulusFeatures = ctx.inputs[features_name]
        opts = dict(options)
        if plan.database is not None and generator == "retrieve":
            opts["database"] = str(ctx.inputs[plan.database].root)
        gen = components.generator(generator, opts)
        gen.check(model)
        if plan.condition == "predicted":
            embeddings = ctx.inputs[plan.mapping].predictions
            labels: Sequence[str | None] = (
                ctx.inputs[plan.retrieval].top1 if plan.retrieval else [None] * len(plan.stems)
            )
        elif plan.condition == "true":
            embeddings = feats.test_embeddings(plan.stems)
            labels = plan.true_wnids
        else:  # random: one training stimulus per image (the floor)
            rows = random_training_rows(seed, plan.stems, len(feats.train))
            embeddings = feats.train[rows]
            labels = [feats.train_wnids[r] for r in rows]
        stats = EmbeddingStats.from_embeddings(feats.train)
        requests = build_requests(
            plan.stems, labels, embeddings, seed=seed, encoder=model, stats=stats
        )
        desc = gen.describe()
        made = make_images(
            gen, requests, ctx.folder, batch_size=batch_size, progress=ctx.progress,
            desc=f"{generator} ({model}, {plan.condition})",
        )  # fmt: skip
        _io.save_json(
            ctx.folder / "images.json",
            {"stems": list(plan.stems), "generator": desc, "n_flagged": made["flagged"]},
        )

    def load(folder: Path) -> ImagesArtifact:
        meta = _io.load_json(folder / "images.json")
        return ImagesArtifact(
            folder, tuple(meta["stems"]), meta["generator"], int(meta["n_flagged"])
        )

    def prepare() -> None:
        if plan.database is None or generator != "retrieve":  # else its database comes later
            components.generator(generator, dict(options)).check(model)

    return Stage(name, run, load, cfg, inputs=inputs, version="1", resumable=True, prepare=prepare)


# ---------------------------------------------------------------- evaluation
def image_source(root: Path, files: Mapping[str, Path]) -> Any:
    """An :class:`~fmri2image.evaluation.images.ImageSource` of exactly ``files``
    (stem -> image file), e.g. the test stimuli a run scored."""
    from fmri2image.evaluation.images import ImageSource

    return ImageSource(path=root, kind="folder", stems=tuple(sorted(files)), files=dict(files))


def evaluation_stage(
    name: str,
    generation_name: str,
    ground_truth: Callable[[Sequence[str]], Any],
    gt_identity: str,
    metrics: Sequence[str] | None,
    components: Components,
    *,
    seed: int,
    bootstrap: int,
    batch_size: int,
    weights: Mapping[str, str],
) -> Stage:
    """The field's image metrics of one set of pictures against the stimuli seen.

    ``ground_truth(stems)`` gives the :class:`~fmri2image.evaluation.images.ImageSource`
    of the true images (:func:`image_source`).  Blank pictures (what a safety checker
    leaves) are excluded and listed, as ``fmri2image evaluate`` does.
    """
    from fmri2image.evaluation.evaluate import resolve_metrics

    chosen, _ = resolve_metrics(metrics, device=components.device)
    cfg = {
        # The metrics that will run: with metrics unset that depends on the device.
        "metrics": [m.name for m in chosen],
        "device_kind": str(components.device).split(":")[0],
        "seed": seed,
        "bootstrap": bootstrap,
        "ground_truth": gt_identity,
        "weights": {k: files_identity([v]) for k, v in sorted(weights.items())},
    }

    def run(ctx: StageContext) -> None:
        from fmri2image.evaluation.evaluate import evaluate_images
        from fmri2image.evaluation.images import pair_images

        images: ImagesArtifact = ctx.inputs[generation_name]
        recon = image_source(images.folder, {s: images.folder / f"{s}.png" for s in images.stems})
        pairs = pair_images(recon, ground_truth(images.stems))
        evaluation = evaluate_images(
            pairs, metrics, device=components.device, batch_size=batch_size, seed=seed,
            n_bootstrap=bootstrap, weights=dict(weights), progress=ctx.progress,
            networks=components.networks,
        )  # fmt: skip
        for metric, reason in evaluation.skipped.items():
            log.info("[%s] %s skipped: %s", name, metric, reason)
        evaluation.save(ctx.folder / "scores.csv")

    def load(folder: Path) -> Any:
        from fmri2image.evaluation.evaluate import Evaluation

        return Evaluation.load(folder / "scores.csv")

    return Stage(name, run, load, cfg, inputs=(generation_name,), version="1")
