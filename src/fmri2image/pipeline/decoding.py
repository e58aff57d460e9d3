"""fMRI -> embedding -> label, for one GOD subject and several encoders side by side.

A run has three phases:

0. **preflight** (:mod:`fmri2image.pipeline.preflight`): every option, encoder name,
   database, the fMRI file, the stimulus ids and every stimulus image are checked,
   and the results folder is proven writable, before any network runs;
1. **mapping**, per encoder: stimulus features of every encoder from one decode
   pass of the images (``out_dir/stimulus_features/{training,test}/<encoder>/``,
   sharded stores that a rerun reads instead of recomputing), then a
   cross-validated :class:`~fmri2image.mapping.RidgeMapping` fitted on training
   samples only (``<encoder>/mapping/``), its test predictions and the
   prediction metrics beside chance and the training-mean baseline
   (``<encoder>/prediction/``);
2. **retrieval**, per encoder and database: k-NN labels of each predicted
   embedding, scored by hit@k, Wu–Palmer similarity and coverage, each beside
   the label that the training-mean embedding retrieves
   (``<encoder>/retrieval/<database>/``).

``summary.json`` at the top collects one entry per encoder.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image import _io
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.pipeline import preflight
from fmri2image.pipeline.preflight import DatabaseSpec

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder

log = logging.getLogger(__name__)

__all__ = [
    "CLI_FLAGS",
    "DecodingConfig",
    "DecodingResult",
    "EncoderResult",
    "RetrievalSummary",
    "fit_map",
    "retrieve_labels",
    "run_decoding",
]

#: How the mapping's fit diagnostics name the options, in the CLI's words.
CLI_FLAGS = {
    "alphas": "--alphas LO:HI:N",
    "groups": "--cv-groups none",
    "cv": "--cv N|loo",
    "alpha_per_target": "--shared-alpha",
}

#: Neighbours per query when ``k`` is not given: one item per class in a
#: prototype database, many images per class in an image database (enough for
#: five distinct labels, so hit@5 means something).
AUTO_K = {"prototypes": 5, "text-prototypes": 5, "features": 50, "images": 50}


@dataclass(frozen=True)
class DecodingConfig:
    """Settings of one decoding run (everything that changes its results).

    Every field is a command-line flag of ``fmri2image decode`` of the same name.

    Attributes
    ----------
    subject : int
        GOD subject number (``--subject``).
    roi : str
        ROI expression (bdpy syntax), e.g. ``"ROI_VC"`` or ``"ROI_V1 + ROI_V2"``.
    encoders : tuple of str
        Encoder registry names compared side by side (``--model``, repeatable).
    release : {"auto", "spm", "fmriprep"}
        Which GOD release to read when a folder holds both.
    drop_nan_voxels : bool
        Drop voxel columns containing NaN instead of failing.
    normalization : {"run", "train", "none"}
        Voxel normalization (see :func:`fmri2image.data.make_splits`).
    cv : int or "loo"
        Folds of the alpha search, or exact leave-one-out.
    cv_groups : {"none", "category"}
        ``"none"`` (default): contiguous folds (whole runs); ``"category"``: no
        category on both sides of a fold.  Ungrouped folds identified held-out
        images better on every data set measured, unseen test categories
        included (docs/mapping.md): with GOD's few categories per fold, grouped
        scores are dominated by offsets between categories.
    alphas : tuple of float or None
        Ridge alpha grid; None is :data:`fmri2image.mapping.DEFAULT_ALPHAS`.
    alpha_per_target : bool
        One alpha per embedding dimension (else one shared alpha).
    n_voxels : int or None
        Keep the voxels most correlated with the targets (training data only).
    databases : tuple of str
        Retrieval databases, each ``"prototypes"`` (the encoder's ImageNet-1k
        classifier head), ``"text-prototypes"`` / ``"text-prototypes:21k"`` (CLIP
        text embeddings of "a photo of a {name}"), a folder written by
        ``fmri2image extract`` (one feature store per encoder), or an
        ImageNet-style image folder (embedded by the run, cached in its output).
    k : int or None
        Neighbours retrieved per prediction; None: 5 for prototype databases,
        50 for image databases (:data:`AUTO_K`).
    vote : {"nearest", "majority", "weighted"}
        How neighbour labels become a ranked label list.
    device : str
        Torch device for the encoders.
    batch_size : int
        Images per encoder forward pass.
    seed : int
        Seed of every random choice (CV folds, chance estimates).
    split : {"test", "imagery"}
        What the map (always fitted on perception) predicts: the test images seen
        (trials averaged per image), or GOD's imagery trials, averaged per imagined
        category and scored against the test image of that category.
    mapper : str
        Mapping model, by its name in :data:`fmri2image.mapping.MAPPERS`.
    mapper_options : dict
        Further constructor arguments of the mapper (for ``ridge`` they override
        the ones above).
    """

    subject: int = 1
    roi: str = "ROI_VC"
    encoders: tuple[str, ...] = ("effnet-lite0",)
    release: str = "auto"
    drop_nan_voxels: bool = False
    normalization: str = "run"
    cv: int | str = 5
    cv_groups: str = "none"
    alphas: tuple[float, ...] | None = None
    alpha_per_target: bool = True
    n_voxels: int | None = None
    databases: tuple[str, ...] = ("prototypes",)
    k: int | None = None
    vote: str = "nearest"
    device: str = "cpu"
    batch_size: int = 32
    seed: int = 0
    split: str = "test"
    mapper: str = "ridge"
    mapper_options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise :class:`~fmri2image.errors.ConfigError` for any bad value (no I/O)."""
        preflight.check_config(self)
        self.make_mapper()  # an unknown mapper or parameter, before any data is read

    def make_mapper(self) -> Any:
        """A new, unfitted mapping model from the mapper registry."""
        from fmri2image.mapping import get_mapper

        if self.mapper == "ridge":
            return get_mapper("ridge", **{**self.ridge_kwargs(), **dict(self.mapper_options)})
        return get_mapper(self.mapper, **dict(self.mapper_options))

    def ridge_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the :class:`~fmri2image.mapping.RidgeMapping`."""
        from fmri2image.mapping import DEFAULT_ALPHAS

        return {
            "alphas": tuple(self.alphas) if self.alphas is not None else DEFAULT_ALPHAS,
            "cv": self.cv,
            "alpha_per_target": self.alpha_per_target,
            "n_voxels": self.n_voxels,
            # No shuffling: contiguous folds keep the correlated trials of a run together.
        }


@dataclass(frozen=True)
class RetrievalSummary:
    """Label retrieval of one encoder from one database."""

    database: str
    label: str
    k: int
    out_dir: Path
    semantic: dict[str, Any]
    top1_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncoderResult:
    """Results of one encoder: where they are and the headline numbers."""

    encoder: str
    dim: int
    out_dir: Path
    prediction: dict[str, Any]
    alpha_median: float
    seconds: float
    retrievals: tuple[RetrievalSummary, ...] = ()
    fit: dict[str, Any] = field(default_factory=dict)

    @property
    def semantic(self) -> dict[str, Any]:
        """Semantic metrics of the first database."""
        return self.retrievals[0].semantic if self.retrievals else {}

    @property
    def top1_labels(self) -> tuple[str, ...]:
        return self.retrievals[0].top1_labels if self.retrievals else ()


@dataclass(frozen=True)
class DecodingResult:
    """All encoders of one run; :meth:`table` prints them side by side."""

    config: DecodingConfig
    out_dir: Path
    results: tuple[EncoderResult, ...]
    n_train: int
    n_train_categories: int
    n_test_images: int
    n_test_repeats: tuple[int, ...]
    n_voxels: int
    test_wnids: tuple[str, ...]
    test_stems: tuple[str, ...]
    seconds: float
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready entry per encoder: prediction scores and every retrieval."""
        rows = []
        for r in self.results:
            p = r.prediction
            rows.append(
                {
                    "encoder": r.encoder,
                    "dim": r.dim,
                    "alpha_median": r.alpha_median,
                    "pairwise_id": p["pairwise_identification"]["value"],
                    "pairwise_id_baseline": p["pairwise_identification"]["baseline"],
                    "pairwise_id_chance": p["pairwise_identification"]["chance"],
                    "nway_top1": p["nway_top1"]["value"],
                    "nway_chance": p["nway_top1"]["chance"],
                    "r2": p["r2_variance_weighted"]["value"],
                    "r2_baseline": p["r2_variance_weighted"]["baseline"],
                    # GOD's feature decoding accuracy: Pearson r per unit across images.
                    "unit_r": p["dimension_correlation"]["value"],
                    "cosine": p["cosine"]["value"],
                    "cosine_baseline": p["cosine"]["baseline"],
                    "fit": r.fit,
                    "retrieval": [
                        {
                            "database": s.database,
                            "label": s.label,
                            "k": s.k,
                            **{
                                key: s.semantic.get(key)
                                for key in (
                                    "n_database_classes",
                                    "hit1",
                                    "hit1_baseline",
                                    "hit1_chance",
                                    "hit5",
                                    "hit5_baseline",
                                    "hit5_chance",
                                    "wup",
                                    "wup_baseline",
                                    "wup_chance",
                                    "coverage",
                                    "n_covered_categories",
                                    "n_categories",
                                    "baseline_top1",
                                )
                            },
                        }
                        for s in r.retrievals
                    ],
                    "seconds": r.seconds,
                }
            )
        return rows

    def header(self) -> str:
        reps = "/".join(str(n) for n in self.n_test_repeats)
        c = self.config
        what = "test images" if c.split == "test" else "imagined categories (imagery trials)"
        return (
            f"subject {c.subject}, {c.roi}: {self.n_train} training samples "
            f"({self.n_train_categories} categories), {self.n_test_images} {what} "
            f"(mean of {reps} repeats), {self.n_voxels} voxels"
        )

    def table(self) -> str:
        """Plain-text comparison tables (baselines and chance in brackets)."""
        from fmri2image.pipeline.tables import comparison_tables

        return comparison_tables(self)

    def labels_table(self) -> str:
        """True vs retrieved top-1 label of every test image, one column per retrieval."""
        from fmri2image.pipeline.tables import labels_table

        return labels_table(self)


# ------------------------------------------------------------------ the phases
@dataclass
class _Inputs:
    """Everything preflight loaded: the data the run works on."""

    splits: Any
    train_set: Any
    test_set: Any
    train_rows: np.ndarray
    test_rows: np.ndarray
    X_eval: np.ndarray
    n_eval_repeats: tuple[int, ...]
    categories: np.ndarray
    test_stems: list[str]
    true_wnids: list[str]
    databases: list[DatabaseSpec]


def _check_inputs(
    god_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DecodingConfig,
    encoders: Mapping[str, Encoder] | None,
    *,
    progress: bool,
    check_images: bool = True,
) -> _Inputs:
    """Phase 0: validate everything that can be validated without a network.

    ``check_images=False`` skips reading every stimulus image's header (a run over
    several subjects checks the shared stimulus sets once).
    """
    from fmri2image.data import load_god_subject, load_stimulus_set, make_splits
    from fmri2image.data.ids import stimulus_ids_to_categories
    from fmri2image.data.images import check_images_readable

    config.validate()
    databases = [preflight.parse_database(d) for d in config.databases]
    names = [d.name for d in databases]
    if len(set(names)) != len(names):
        raise ConfigError(f"--database names the same database twice: {list(config.databases)}.")
    if encoders is None:
        preflight.check_encoders_and_databases(config.encoders, databases)
    else:
        _check_injected(encoders, config, databases)
    preflight.check_device(config.device)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():  # cheap, before reading any data
        preflight.check_output_dir(out)

    subject = load_god_subject(
        god_dir,
        config.subject,
        roi=config.roi,
        release=config.release,
        drop_nan_voxels=config.drop_nan_voxels,
    )
    if config.n_voxels is not None and config.n_voxels > subject.n_voxels:
        raise ConfigError(
            f"--n-voxels {config.n_voxels} is more than the {subject.n_voxels} voxels of "
            f"{config.roi} in subject {config.subject}; pass at most --n-voxels "
            f"{subject.n_voxels}, or leave it out to use every voxel."
        )
    splits = make_splits(subject, normalization=config.normalization, seed=config.seed)
    train_set = load_stimulus_set(god_dir, "training")
    test_set = load_stimulus_set(god_dir, "test")
    train_rows = train_set.index_of(splits.train_ids)
    test_rows = test_set.index_of(splits.test_ids)
    categories = stimulus_ids_to_categories(splits.train_ids)
    _check_cv(config, len(splits.train_ids), len(np.unique(categories)))
    for stim in (train_set, test_set) if check_images else ():
        check_images_readable(
            stim.paths,
            what=f"{stim.split} stimulus images",
            position_name=f"row of {stim.id_file.name}",
            progress=progress,
        )
    preflight.check_output_dir(out)
    X_eval, eval_index, repeats = _evaluation_trials(splits, config)
    return _Inputs(
        splits=splits,
        train_set=train_set,
        test_set=test_set,
        train_rows=train_rows,
        test_rows=test_rows[eval_index],
        X_eval=X_eval,
        n_eval_repeats=repeats,
        categories=categories,
        test_stems=[test_set.image_names[i] for i in test_rows[eval_index]],
        true_wnids=[str(splits.test_wnids[i]) for i in eval_index],
        databases=databases,
    )


def _evaluation_trials(
    splits: Any, config: DecodingConfig
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The brain data the map predicts, the test rows it is scored against, repeats.

    ``split="test"``: the per-image averaged test trials.  ``split="imagery"``: the
    imagery trials averaged per imagined category, each scored against the test
    image of its category (GOD has one per test category).
    """
    if config.split == "test":
        reps = tuple(sorted({int(n) for n in splits.test_n_repeats.tolist()}))
        return splits.X_test, np.arange(len(splits.test_ids)), reps
    index = np.asarray(splits.imagery_test_index)
    rows = np.unique(index[index >= 0])
    if rows.size < 2:
        raise ConfigError(
            f"--split imagery: subject {config.subject} has {rows.size} imagined test "
            "categories with imagery trials (GOD DataType 3); at least 2 are needed to "
            "score identification. Decode the perception test set with --split test."
        )
    dropped = int(np.sum(index < 0))
    if dropped:
        log.info("imagery: %d trials of categories without a single test image left out", dropped)
    X = np.stack([splits.X_imagery[index == r].mean(axis=0) for r in rows])
    reps = tuple(sorted({int(np.sum(index == r)) for r in rows}))
    return X, rows, reps


def _check_injected(
    encoders: Mapping[str, Encoder], config: DecodingConfig, databases: Sequence[DatabaseSpec]
) -> None:
    missing = [n for n in config.encoders if n not in encoders]
    if missing:
        raise ConfigError(f"No encoder was passed for {missing}; pass one per config.encoders.")
    for db in databases:
        for name in config.encoders:
            enc = encoders[name]
            if db.kind == "prototypes" and enc.class_prototypes() is None:
                raise ConfigError(
                    f"--database prototypes needs an ImageNet-1k classifier head, which "
                    f"encoder {name!r} does not have; pass an image database instead."
                )
            if db.kind == "text-prototypes" and not enc.has_text_tower:
                raise ConfigError(
                    f"--database {db.source} needs a CLIP text tower, which encoder "
                    f"{name!r} does not have; pass an image database instead."
                )


def _check_cv(config: DecodingConfig, n_train: int, n_groups: int) -> None:
    if config.cv == "loo":
        return
    folds = int(config.cv)
    if folds > n_train:
        raise ConfigError(
            f"--cv {folds} asks for more folds than the {n_train} training samples; pass "
            f"a smaller --cv (e.g. --cv 5) or --cv loo --cv-groups none."
        )
    if config.cv_groups == "category" and folds > n_groups:
        raise ConfigError(
            f"--cv {folds} with --cv-groups category needs at least {folds} training "
            f"categories, and there are {n_groups} training categories; pass --cv "
            f"{max(2, min(5, n_groups))}, or --cv-groups none."
        )


def _cached_extraction(db: Any, encoders: list, out: Path, config: DecodingConfig, **kw: Any):
    """``extract_features`` into a cache of this run: reused when it verifies (the store
    checks every shard's checksum and the images' identity on resume), rebuilt when it
    was made from other images or settings (a moved dataset, another image list)."""
    from fmri2image.features import extract_features
    from fmri2image.features.shards import StoreMismatchError

    def run(overwrite: bool):
        return extract_features(
            db, encoders, out, batch_size=config.batch_size, device=config.device,
            overwrite=overwrite, **kw,
        )  # fmt: skip

    try:
        return run(False)
    except StoreMismatchError as exc:
        log.info("rebuilding the cache in %s: %s", out, exc)
        return run(True)


def _stimulus_features(
    stimuli, encoders: Mapping[str, Encoder], config: DecodingConfig, out: Path
) -> dict[str, np.ndarray]:
    """Embed one stimulus set with every encoder in one decode pass (resumable store).

    Returns name -> features of shape (n_images, dim), rows in the order of
    ``stimuli.paths``.  A rerun with the same encoders and images reads the stores.
    """
    from fmri2image.features import ImageDatabase

    db = ImageDatabase.from_paths(stimuli.paths, stimuli.wnids, root=stimuli.image_dir)
    result = _cached_extraction(db, list(encoders.values()), out, config, on_unreadable="raise")
    return {name: result[enc.name].load() for name, enc in encoders.items()}


def _image_database_indexes(
    db: DatabaseSpec, encoders: Mapping[str, Encoder], config: DecodingConfig, out: Path
) -> dict[str, Any]:
    """Embed an ImageNet-style folder with every encoder (one pass), index each store."""
    from fmri2image.features import scan_image_folder
    from fmri2image.retrieval import FeatureIndex

    assert db.path is not None
    images = scan_image_folder(db.path)
    log.info(
        "embedding the %d images of %s (%d classes) with %s",
        len(images), db.path, len(images.classes), ", ".join(encoders),
    )  # fmt: skip
    result = _cached_extraction(
        images, list(encoders.values()), out / "database_features" / db.name, config
    )
    return {name: FeatureIndex.from_store(result[enc.name].path) for name, enc in encoders.items()}


def _database_index(db: DatabaseSpec, encoder: Encoder, out: Path, *, progress: bool):
    from fmri2image.retrieval import FeatureIndex, prototype_index

    if db.kind == "prototypes":
        return prototype_index(encoder)
    if db.kind == "text-prototypes":
        from fmri2image.retrieval import text_prototype_index

        return text_prototype_index(
            encoder, db.vocabulary, cache_dir=out / "text_prototypes", progress=progress
        )
    assert db.path is not None
    store = preflight.encoder_store(db.path, encoder.name)
    if store is None:  # pragma: no cover - preflight checked it
        raise ConfigError(f"--database {db.source} has no features of encoder {encoder.name!r}.")
    return FeatureIndex.from_store(store)


def _log_fit_warnings(models: Mapping[str, Any]) -> tuple[str, ...]:
    """Say each distinct fit problem once, naming the encoders it concerns."""
    try:
        from fmri2image.mapping import fit_warnings
    except ImportError:  # pragma: no cover - older mapping layer
        return ()
    seen: dict[str, list[str]] = {}
    for name, model in models.items():
        for msg in fit_warnings(model, flags=CLI_FLAGS):
            seen.setdefault(msg, []).append(name)
    out = []
    for msg, names in seen.items():
        who = "all encoders" if len(names) == len(models) and len(models) > 1 else ", ".join(names)
        text = f"{msg} ({who})" if len(models) > 1 else msg
        log.warning("%s", text)
        out.append(text)
    return tuple(out)


def run_decoding(
    god_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DecodingConfig | None = None,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    progress: bool = True,
) -> DecodingResult:
    """Run data -> features -> mapping -> retrieval for every encoder in ``config``.

    Parameters
    ----------
    god_dir : path
        GOD release folder (``SubjectN.h5`` or the split files, id files, images).
    out_dir : path
        Results folder (created); one sub-folder per encoder plus ``summary.json``.
    config : DecodingConfig, optional
        Defaults to ``DecodingConfig()``.
    encoders : mapping of str to Encoder, optional
        Built encoders to use instead of building ``config.encoders`` from the
        registry (one per configured name), e.g. tiny models in tests.
    progress : bool
        Progress bars for the image checks.

    Returns
    -------
    DecodingResult

    Raises
    ------
    Fmri2ImageError
        Any bad option or input, raised before any feature is computed.
    """
    from fmri2image._lock import output_lock
    from fmri2image.pipeline import publish

    config = config or DecodingConfig()
    t_start = time.perf_counter()
    inputs = _check_inputs(god_dir, out_dir, config, encoders, progress=progress)
    # One writer at a time: a second run into this --out stops here, before any work.
    with output_lock(out_dir):
        out = Path(out_dir)
        publish.recover(out)  # a run killed while publishing: finish it first
        run_id = publish.new_run_id()
        stage = publish.staging_dir(out, run_id)
        try:
            result = _decode(inputs, Path(god_dir), out, stage, run_id, config, encoders,
                             progress, t_start)  # fmt: skip
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        publish.publish(out, stage, previous=_previous_entries(out))
        return result


def _previous_entries(out: Path) -> list[str]:
    """The result entries of the run whose summary.json is in ``out`` (to replace)."""
    from fmri2image.features.shards import store_dirname

    path = out / "summary.json"
    if not path.is_file():
        return []
    try:
        rows = _io.load_json(path).get("encoders", [])
        return ["summary.json", *(store_dirname(r["encoder"]) for r in rows)]
    except (DataFormatError, AttributeError, KeyError, TypeError):
        return ["summary.json"]  # unreadable: replace it, leave unknown folders alone


def _decode(
    inputs: _Inputs,
    god_dir: Path,
    out: Path,
    stage: Path,
    run_id: str,
    config: DecodingConfig,
    encoders: Mapping[str, Encoder] | None,
    progress: bool,
    t_start: float,
) -> DecodingResult:
    """The work of :func:`run_decoding` once every input is checked and the lock held.

    Caches (stimulus features, database stores) live in ``out``; results are written
    to ``stage`` and published by the caller.  Paths in the returned result are the
    published ones.
    """
    from fmri2image.features import get_encoder
    from fmri2image.features.shards import store_dirname

    splits = inputs.splits
    reps = inputs.n_eval_repeats
    what = "test images" if config.split == "test" else "imagined categories"
    log.info(
        "subject %d, %s: %d training samples, %d %s (mean of %s repeats), %d voxels",
        config.subject, config.roi, len(splits.train_ids), len(inputs.test_stems), what,
        "/".join(map(str, reps)), splits.n_voxels,
    )  # fmt: skip

    if encoders is None:
        encoders = {name: get_encoder(name, device=config.device) for name in config.encoders}
        # Prefix forms whose abilities only the built model shows: check before work.
        _check_injected(encoders, config, inputs.databases)
    else:
        encoders = {name: encoders[name] for name in config.encoders}
    log.info(
        "embedding %d + %d stimuli with %s (one decode pass)",
        len(inputs.train_set), len(inputs.test_set), ", ".join(config.encoders),
    )  # fmt: skip
    stim_dir = out / "stimulus_features"
    feats_train = _stimulus_features(inputs.train_set, encoders, config, stim_dir / "training")
    feats_test = _stimulus_features(inputs.test_set, encoders, config, stim_dir / "test")
    groups = inputs.categories if config.cv_groups == "category" else None
    scheme = f"{config.cv}-fold" if config.cv != "loo" else "leave-one-out"
    if groups is not None:
        scheme += f", grouped by category ({len(np.unique(groups))} categories)"

    # Phase 1: one map per encoder.
    models: dict[str, Any] = {}
    state: dict[str, dict[str, Any]] = {}
    for name in encoders:
        t0 = time.perf_counter()
        enc_dir = stage / store_dirname(name)
        Y_train = feats_train[name][inputs.train_rows]
        Y_test = feats_test[name][inputs.test_rows]
        log.info("[%s] fitting ridge: alphas by %s CV", name, scheme)
        model, Y_pred, y_mean, metrics = fit_map(
            config, splits.X_train, Y_train, inputs.X_eval, Y_test, enc_dir,
            groups=groups, stems=inputs.test_stems,
        )  # fmt: skip
        models[name] = model
        state[name] = {
            "dir": enc_dir,
            "pred": Y_pred,
            "mean": y_mean,
            "metrics": metrics,
            "seconds": time.perf_counter() - t0,
        }
    warnings = _log_fit_warnings(models)

    # Phase 2: labels from every database.
    retrievals: dict[str, list[RetrievalSummary]] = {name: [] for name in encoders}
    for db in inputs.databases:
        k = config.k or AUTO_K[db.kind]
        prebuilt = _image_database_indexes(db, encoders, config, out) if db.kind == "images" else {}
        for name, encoder in encoders.items():
            t0 = time.perf_counter()
            log.info("[%s] retrieving labels from %s", name, db.label)
            index = prebuilt.get(name) or _database_index(db, encoder, out, progress=progress)
            st = state[name]
            ret_dir = st["dir"] / "retrieval" / db.name
            found, sem = retrieve_labels(
                config, st["pred"], st["mean"], index, k, ret_dir,
                stems=inputs.test_stems, true_wnids=inputs.true_wnids,
            )  # fmt: skip
            st["seconds"] += time.perf_counter() - t0
            retrievals[name].append(
                RetrievalSummary(
                    database=db.name,
                    label=db.label,
                    k=k,
                    out_dir=out / ret_dir.relative_to(stage),
                    semantic=sem.summary,
                    top1_labels=tuple(str(x) for x in found.top1),
                )
            )

    results = []
    for name, encoder in encoders.items():
        model, st = models[name], state[name]
        results.append(
            EncoderResult(
                encoder=name,
                dim=encoder.dim,
                out_dir=out / st["dir"].relative_to(stage),
                prediction=st["metrics"],
                alpha_median=float(np.median(model.alpha_)),
                seconds=round(st["seconds"], 2),
                retrievals=tuple(retrievals[name]),
                fit=_fit_summary(model),
            )
        )
    result = DecodingResult(
        config=config,
        out_dir=out,
        results=tuple(results),
        n_train=len(splits.train_ids),
        n_train_categories=len(np.unique(inputs.categories)),
        n_test_images=len(inputs.test_stems),
        n_test_repeats=reps,
        n_voxels=splits.n_voxels,
        test_wnids=tuple(inputs.true_wnids),
        test_stems=tuple(inputs.test_stems),
        seconds=round(time.perf_counter() - t_start, 2),
        warnings=warnings,
    )
    _io.save_json(
        stage / "summary.json",
        {
            "run_id": run_id,
            "config": config.to_dict(),
            "god_dir": str(god_dir),
            "n_train": result.n_train,
            "n_train_categories": result.n_train_categories,
            "n_test_images": result.n_test_images,
            "n_voxels": result.n_voxels,
            "test_images": list(result.test_stems),
            "encoders": result.summary_rows(),
            "warnings": list(warnings),
            "seconds": result.seconds,
        },
    )
    return result


def fit_map(
    config: DecodingConfig,
    X_train: np.ndarray,
    Y_train: np.ndarray,
    X_eval: np.ndarray,
    Y_test: np.ndarray,
    folder: Path,
    *,
    groups: np.ndarray | None,
    stems: Sequence[str],
) -> tuple[Any, np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit one encoder's map, predict, score; write ``folder/{mapping, prediction}``
    and ``folder/predicted_test_embeddings.npy``.

    Returns the fitted mapper, the predictions, the training-mean embedding and the
    prediction metrics (as in ``summary.json``).
    """
    from fmri2image.evaluation import prediction_metrics
    from fmri2image.mapping import save_mapping

    model = config.make_mapper()
    model.fit(X_train, Y_train, groups=groups)
    save_mapping(model, folder / "mapping")
    Y_pred = model.predict(X_eval)
    _io.save_npy(folder / "predicted_test_embeddings.npy", Y_pred)
    y_mean = Y_train.mean(axis=0)
    pred = prediction_metrics(Y_test, Y_pred, y_mean, image_ids=list(stems))
    pred.save(folder / "prediction")
    return model, Y_pred, y_mean, pred.to_dict()["metrics"]


def retrieve_labels(
    config: DecodingConfig,
    Y_pred: np.ndarray,
    y_mean: np.ndarray,
    index: Any,
    k: int,
    folder: Path,
    *,
    stems: Sequence[str],
    true_wnids: Sequence[str],
) -> tuple[Any, Any]:
    """k-NN labels of each prediction and of the training mean (the baseline), scored;
    written to ``folder`` (semantic tables and ``neighbours.parquet``)."""
    from fmri2image.evaluation import semantic_metrics
    from fmri2image.retrieval import retrieve

    found = retrieve(Y_pred, index, k=k, vote=config.vote, query_ids=list(stems))
    baseline = retrieve(y_mean[None, :], index, k=k, vote=config.vote)
    sem = semantic_metrics(
        found, list(true_wnids), seed=config.seed, query_ids=list(stems), baseline=baseline
    )
    sem.save(folder)
    found.save(folder / "neighbours.parquet")
    return found, sem


def _fit_summary(model: Any) -> dict[str, Any]:
    """Headline facts of a fitted map (alpha range, edges, CV scheme); a mapper
    without alphas gets None for them."""
    alpha = getattr(model, "alpha_", None)
    alphas = np.asarray(alpha if alpha is not None else [np.nan], dtype=np.float64)
    out: dict[str, Any] = {
        "mapper": type(model).__name__,
        "alpha_min": float(alphas.min()) if alpha is not None else None,
        "alpha_median": float(np.median(alphas)) if alpha is not None else None,
        "alpha_max": float(alphas.max()) if alpha is not None else None,
        "n_splits": int(getattr(model, "n_splits_", 0)),
    }
    diag = getattr(model, "diagnostics_", None)
    if diag is not None:
        out["diagnostics"] = diag.to_dict()
    return out
