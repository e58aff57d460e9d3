"""The one engine: a :class:`~.config.RunConfig` becomes a graph of cached stages.

``run``, ``compare``, ``demo``, ``decode`` (a run without generators) and ``generate``
(a run's configuration with a generator added) all call :func:`run_experiment`::

    stimuli/<split> (container datasets) ─┐
    data/s<S>/<ROI> ─────────────────┐    │
    features/<model> ────────────────┼────┴─> mapping/<model>/s<S>/<ROI>
    database/<model>/<db> ──┐        │              │
    prototypes/<model>/<k> ─┴────────┴─> retrieval/<model>/<db>/…
                                                    └──> generation/<model>/<gen>/predicted/…
    features/<model> ──> generation/<model>/<gen>/{true,random}/<images>  (the bounds)
    generation/… ──> evaluation/…

run by :class:`~fmri2image.pipeline.graph.Graph` with its verified cache
(``<out>/cache`` unless ``cache`` says otherwise): a rerun recomputes only what
changed, ``--force KIND[/…]`` recomputes stages by name prefix and everything
downstream, a killed run resumes.  Stages shared by several models, generators,
subjects or ROIs are computed once, and so are stages shared by several runs on one
cache (a ``decode`` then a ``run`` with the same data and mapping fit the map once).
Every option and input is checked before any stage runs.

Under the output folder::

    config.toml          the resolved configuration (``--config`` reads it back)
    stages.json          every stage: key, reused or computed, seconds, folder
    run.log              the log of the run
    summary.json         the decoding: one row per subject, ROI and encoder
    tables/              scores / summary / paired / decoding, CSV and parquet
    images/s<S>-<ROI>/   ground_truth/ and <model>/<mapper>/<generator>/<condition>/
    maps/s<S>-<ROI>/     per model and mapper: the fitted map (mapping/), its predictions and
                         scores, and each database's retrieved labels (retrieval/)
    grid-s<S>-<ROI>.png  ground truth, then each model × generator (``visualize``)
    report.html          one self-contained page: tables, pictures, plots (report.md: tables)
    cache/               the stage artifacts
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmri2image import _io
from fmri2image._io import safe_name
from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder
    from fmri2image.generation import Generator
    from fmri2image.pipeline.graph import Graph, StageRecord
    from fmri2image.pipeline.stages import StimulusImages
    from fmri2image.pipeline.tables import Decoding, ReconstructionScores

log = logging.getLogger(__name__)

__all__ = [
    "ExperimentResult",
    "build_experiment",
    "expand_force",
    "run_experiment",
]

SUMMARY_FILE = "summary.json"
SUMMARY_FORMAT = "fmri2image.summary"


@dataclass(frozen=True)
class ExperimentResult:
    """What a run made, and how.

    Attributes
    ----------
    config : RunConfig
    out_dir : Path
    records : tuple of StageRecord
        Every stage of the graph, in run order: reused or computed, and its seconds.
    decodings : dict of (subject, roi) to Decoding
        Prediction and retrieval scores of every model (what ``decode`` prints).
    reconstructions : tuple of ReconstructionScores
        Every evaluated set of pictures (model × generator × condition × subject × ROI).
    pictures : tuple of dict
        Per generation stage: subject, roi, model, generator, condition, folder and
        how many pictures were made / flagged.
    tables : dict of str to Path
        The files under ``out/tables``.
    comparison : str
        The printed comparison table.
    seconds : float
    """

    config: RunConfig
    out_dir: Path
    records: tuple[StageRecord, ...]
    decodings: dict[tuple[int, str], Decoding]
    reconstructions: tuple[ReconstructionScores, ...]
    tables: dict[str, Path]
    comparison: str
    seconds: float
    pictures: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def computed(self) -> list[str]:
        """Names of the stages computed (not reused) in this run."""
        return [r.name for r in self.records if not r.reused]

    def stage_summary(self) -> str:
        n_reused = sum(r.reused for r in self.records)
        return (
            f"{len(self.records)} stages: {len(self.records) - n_reused} computed, "
            f"{n_reused} reused ({self.seconds:.1f} s)"
        )

    def format(self) -> str:
        """Decoding tables per subject × ROI (with the retrieved label of every test
        image when there is one subject × ROI), then the reconstruction comparison."""
        from fmri2image.pipeline.tables import decoding_tables, labels_table

        parts = [decoding_tables(d) for d in self.decodings.values()]
        if len(self.decodings) == 1:
            parts.append(labels_table(next(iter(self.decodings.values()))))
        parts.append(self.comparison)
        return "\n\n".join(p for p in parts if p)

    def format_pictures(self) -> str:
        """One line per set of pictures: where, how many made now, how many flagged."""
        lines = []
        for p in self.pictures:
            lines.append(
                f"  {p['model']} / {p['mapper']} / {p['generator']} / {p['condition']} (subject "
                f"{p['subject']}, {p['roi']}): {p['n_images']} pictures, {p['n_made']} made "
                f"now, {p['n_flagged']} flagged by the safety checker -> {p['folder']}"
            )
        return "\n".join(lines)


# ---------------------------------------------------------------- assembly
@dataclass
class _Plan:
    """The graph and how to find its artifacts."""

    graph: Graph
    cache: Path
    data: dict[tuple[int, str], str]
    features: dict[str, str]
    mapping: dict[tuple[int, str, str, str], str]  # (subject, roi, model, mapper)
    retrieval: dict[tuple[int, str, str, str], dict[str, str]]
    #: subject, roi, model, mapper, generator, condition, generation stage, evaluation stage
    evaluations: list[tuple[int, str, str, str, str, str, str, str]]
    ground_truth: StimulusImages | str
    #: The image databases scanned while planning: their scan records are written once
    #: the run holds the cache's lock.
    scans: tuple[Any, ...] = ()


def build_experiment(
    config: RunConfig,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    generators: Mapping[str, Generator] | None = None,
    progress: bool = True,
) -> _Plan:
    """Check everything, then assemble the stage graph (no stage runs here).

    Raises
    ------
    Fmri2ImageError
        Any bad option, missing input or unusable combination, before any work.
    """
    from fmri2image.data.dataset import split_recording
    from fmri2image.pipeline import stages as st
    from fmri2image.pipeline.graph import Graph, reusable
    from fmri2image.pipeline.preflight import AUTO_K, check_device, check_output_dir

    config.validate(encoders=set(encoders or {}), generators=generators or {})
    if not config.out:
        raise ConfigError("No output folder: pass --out DIR (or set out in --config).")
    dataset = config.data.open()
    check_device(config.device)
    out = Path(config.out)
    check_output_dir(out)
    if config.cache:
        check_output_dir(Path(config.cache), flag="--cache")
    cache_dir = Path(config.cache) if config.cache else out / "cache"
    components = st.Components(
        device=config.device, dtype=config.generator_dtype, encoders=encoders,
        generators=generators,
    )  # fmt: skip
    dbs = _databases(config, encoders)
    image_dbs = [d for d in dbs if d.kind in ("images", "features")]
    label_db = _label_database(config, dbs, components)
    _check_generator_inputs(config, components, image_dbs)
    init_dir = _init_folder(config)

    # The stimuli (shared by every subject, ROI and model): files, or a stage that
    # writes a container's arrays as files once.
    # "test": the stimuli the evaluated split shows (GOD's imagery: its test images).
    stimuli = {"train": dataset.stimuli("train"),
               "test": dataset.stimuli(dataset.stimuli_of(config.data.split))}  # fmt: skip
    stages: dict[str, Any] = {}

    def add(stage: Any) -> str:
        stages.setdefault(stage.name, stage)
        return stage.name

    images: dict[str, StimulusImages | str] = {}
    for split, stim in stimuli.items():
        if stim.files is not None:
            images[split] = st.stimulus_images(stim)
        else:
            ident = st.files_identity([stim.source]) if stim.source else ""
            images[split] = add(st.stimuli_stage(config.data.dataset, stim, ident))

    @cache  # once, however many features stages are computed
    def check_images() -> None:  # every stimulus decodes: once, before features are computed
        for stim in stimuli.values():
            dataset.check_images(stim, progress=progress)

    decoding: dict[tuple[int, str], str] = {}
    mapping: dict[tuple[int, str, str, str], str] = {}
    retrieval: dict[tuple[int, str, str, str], dict[str, str]] = {}
    evaluations: list[tuple[int, str, str, str, str, str, str, str]] = []
    features: dict[str, str] = {}
    scans: dict[str, Any] = {}
    test = stimuli["test"]
    sources = [stimuli["train"].source, test.source]
    init_gen = _init_generator(config)
    # Generators with a map of their own from early visual cortex (run, or making the
    # initial images of the others).
    lowlevel_gens = [
        g
        for g in dict.fromkeys([*config.generation.generators, *filter(None, [init_gen])])
        if "codebook" in components.generator_inputs(g)
    ]
    codebooks: dict[str, str] = {}  # low-level generator -> its codebook stage
    lowlevel_options: dict[str, Any] = {}
    for gen in lowlevel_gens:
        lowlevel_options[gen] = _lowlevel_options(config, gen)
        codebooks[gen] = add(st.codebook_stage(gen, lowlevel_options[gen], images, components))

    if config.generation.init is not None:
        for gen in config.generation.generators:
            if gen != init_gen and not components.takes_init(gen):
                log.info("%s takes no initial image: its pictures are made without --init %s",
                         gen, config.generation.init)  # fmt: skip

    def add_mapper(
        subject: int, roi: str, tag: str, model: str, mapper: str, stems: tuple,
        labels: tuple, images_tag: str, lowlevel_maps: dict[str, str],
    ) -> None:  # fmt: skip
        """The stages of one model × mapper on one subject × ROI: map, retrievals,
        pictures and their scores."""
        m_name = add(st.mapping_stage(f"mapping/{model}/{mapper}/{tag}", config, mapper,
                                      decoding[(subject, roi)], features[model]))  # fmt: skip
        mapping[(subject, roi, model, mapper)] = m_name
        ret_of: dict[str, str] = {}
        source_of: dict[str, str | None] = {}
        for db in dbs:
            source = None
            if db.kind == "images":
                if db.name not in scans:  # one scan of the folder for every model
                    scans[db.name] = st.scan_database(
                        db,
                        class_map=config.retrieval.class_map,
                        skip_unresolved=config.retrieval.skip_unresolved,
                        cache=cache_dir,
                        verify=config.verify,
                    )
                source = add(st.database_stage(model, scans[db.name], components,
                                               batch_size=config.batch_size))  # fmt: skip
            elif db.kind in ("prototypes", "text-prototypes"):
                source = add(st.prototypes_stage(model, db, components))
            elif db.kind == "stimuli":  # the training stimuli's features, computed anyway
                source = features[model]
            elif db.kind == "captions":
                source = add(st.captions_stage(model, features[model],
                                               dataset.vocabulary_of(stimuli["train"]),
                                               components))  # fmt: skip
            source_of[db.name] = source
            ret_of[db.name] = add(
                st.retrieval_stage(
                    f"retrieval/{model}/{mapper}/{db.name}/{tag}", config, db,
                    config.retrieval.k or AUTO_K[db.kind], model,
                    decoding[(subject, roi)], m_name, source, features_name=features[model],
                )
            )  # fmt: skip
        retrieval[(subject, roi, model, mapper)] = ret_of

        def generation(gen: str, cond: str, suffix: str, *, with_init: bool) -> str:
            """The generation stage of ``gen`` for one condition (and its init)."""
            options = config.generation.options_for(gen)
            if gen in lowlevel_maps:  # a map of its own from early visual cortex
                return add(lowlevel_generation(gen, cond, suffix, options))
            db_stage = None
            if "database" in components.generator_inputs(gen) and "database" not in options:
                db0 = image_dbs[0]
                db_stage = source_of[db0.name]
                if db_stage is None:  # a feature folder from `extract`
                    options = {**options, "database": str(db0.path)}
            init = init_files = None
            with_init = with_init and components.takes_init(gen)
            if with_init and init_gen is not None and gen != init_gen:
                init = generation(init_gen, cond, suffix, with_init=False)
            elif with_init and init_dir is not None:
                init_files = _init_files(init_dir, model, stems)
            predicted = cond == "predicted"
            label = predicted and components.conditioning(gen) == "label"
            plan = st.GenerationPlan(
                cond, stems, labels,
                mapping=m_name if predicted else None,
                retrieval=ret_of[label_db] if label else None,
                database=db_stage, init=init, init_files=init_files,
            )  # fmt: skip
            return add(
                st.generation_stage(
                    f"generation/{model}/{gen}/{cond}/{suffix}", config, model, gen,
                    options, plan, features[model], components,
                )
            )  # fmt: skip

        def lowlevel_generation(gen: str, cond: str, suffix: str, options: dict) -> Any:
            """Pictures decoded from the low-level map (or the code's bounds): the
            same for every model and mapper."""
            code = st.code_name(gen, lowlevel_options[gen])
            plan = st.GenerationPlan(
                cond, stems, labels, mapping=lowlevel_maps[gen] if cond == "predicted" else None,
                codebook=codebooks[gen],
            )  # fmt: skip
            return st.generation_stage(
                f"generation/{code}/{gen}/{cond}/{suffix.replace(f'{mapper}/', '', 1)}", config,
                code, gen, options, plan, codebooks[gen], components,
            )  # fmt: skip

        for gen in config.generation.generators:
            for cond in config.generation.conditions:
                # The bounds have no brain in them: shared by subjects and ROIs.
                suffix = f"{mapper}/{tag}" if cond == "predicted" else f"images-{images_tag}"
                g_name = generation(gen, cond, suffix, with_init=True)
                e_name = add(
                    st.evaluation_stage(
                        g_name.replace("generation/", "evaluation/", 1), g_name,
                        images["test"], config, components,
                    )
                )  # fmt: skip
                evaluations.append((subject, roi, model, mapper, gen, cond, g_name, e_name))

    @cache  # a recording loads at most once
    def prepared(subject: int, roi: str) -> tuple[Any, Any]:
        rec = dataset.load(subject, roi, drop_nan_voxels=config.data.drop_nan_voxels)
        split = split_recording(
            rec, normalization=config.data.normalization, split=config.data.split,
            average=dataset.average,
        )  # fmt: skip
        return rec, split

    for subject in config.data.subjects:
        identity = st.files_identity([*dataset.files(subject), *sources])

        def data_of(roi: str, subject: int = subject, identity: str = identity) -> tuple:
            """The data stage of one ROI: its name, stems, labels and counts."""
            data = st.data_stage(f"data/s{subject}/{safe_name(roi)}", config, subject, roi,
                                 identity, lambda: prepared(subject, roi), test,
                                 dataset.vocabulary_of(test))  # fmt: skip
            found = _data_facts(reusable(cache_dir, data, verify=config.verify),
                                lambda: prepared(subject, roi), test)  # fmt: skip
            return (add(data), *found)

        lowlevel_maps: dict[str, str] = {}  # low-level generator -> its map stage (this subject)
        for gen in lowlevel_gens:
            lowlevel_maps[gen], low_stems = _lowlevel_map(
                config, subject, lowlevel_options[gen].roi, codebooks[gen], data_of, add,
                early=dataset.early_visual_rois,
            )  # fmt: skip
        for roi in config.data.roi_list():
            tag = f"s{subject}/{safe_name(roi)}"
            decoding[(subject, roi)], stems, labels, info = data_of(roi)
            if lowlevel_maps and low_stems != stems:  # the same split of the same runs
                raise ConfigError(
                    f"The low-level map of subject {subject} predicts other test images than "
                    f"{roi}; the two ROIs must come from the same recordings."
                )
            _check_data_fits(config, subject, roi, info)
            images_tag = _io.json_sha256(list(stems))[:10]
            for model in config.models:
                features[model] = add(
                    st.features_stage(
                        model, images, components, batch_size=config.batch_size, check=check_images
                    )
                )
                for mapper in config.mapping.mappers:
                    add_mapper(subject, roi, tag, model, mapper, stems, labels, images_tag,
                               lowlevel_maps)  # fmt: skip
    return _Plan(
        graph=Graph(list(stages.values())),
        cache=cache_dir,
        data=decoding,
        features=features,
        mapping=mapping,
        retrieval=retrieval,
        evaluations=evaluations,
        ground_truth=images["test"],
        scans=tuple(scans.values()),
    )


def _databases(config: RunConfig, encoders: Mapping[str, Encoder] | None) -> list[Any]:
    """Every retrieval database, resolved and checked against every model."""
    from fmri2image.pipeline.preflight import check_encoders_and_databases, parse_database

    dbs = [parse_database(d) for d in config.retrieval.databases]
    names = [d.name for d in dbs]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"--database names the same database twice: {list(config.retrieval.databases)}."
        )
    injected = dict(encoders or {})
    check_encoders_and_databases([m for m in config.models if m not in injected], dbs)
    for db in dbs:
        for name, enc in injected.items():
            if name not in config.models:
                continue
            if db.kind == "prototypes" and enc.class_prototypes() is None:
                raise ConfigError(
                    f"--database prototypes needs an ImageNet-1k classifier head, which "
                    f"encoder {name!r} does not have; pass an image database instead."
                )
            if db.kind in ("text-prototypes", "captions") and not enc.has_text_tower:
                raise ConfigError(
                    f"--database {db.source} needs a CLIP text tower, which encoder "
                    f"{name!r} does not have; pass an image database instead."
                )
    return dbs


def _label_database(config: RunConfig, dbs: Sequence[Any], components: Any) -> str:
    """The database whose top-1 label conditions label-based generators
    (``labels_from`` was checked against the databases by ``RunConfig.validate``)."""
    if config.generation.labels_from:
        return config.generation.labels_from
    label_gens = [g for g in config.generation.generators if components.conditioning(g) == "label"]
    if label_gens and not dbs:
        raise ConfigError(
            f"Generator(s) {', '.join(label_gens)} draw from the retrieved label, and "
            "retrieval.databases is empty; add one (e.g. --database prototypes)."
        )
    return dbs[0].name if dbs else ""


def _check_generator_inputs(config: RunConfig, components: Any, image_dbs: Sequence[Any]) -> None:
    """A generator declaring the ``database`` input needs an image database in the run
    (or its own ``database`` option)."""
    from fmri2image.generation import PIPELINE_INPUTS

    for gen in config.generation.generators:
        inputs = components.generator_inputs(gen)
        if "database" in inputs and "database" not in config.generation.options_for(gen):
            if not image_dbs:
                raise ConfigError(
                    f"Generator {gen!r} needs {PIPELINE_INPUTS['database']}, and the run "
                    "has none: add an image folder (or a feature folder from `fmri2image "
                    f"extract`) with --database, or set its option database=DIR, or drop {gen}."
                )


def _init_generator(config: RunConfig) -> str | None:
    """The generator whose pictures start the others (``--init invert``, ``--init
    lowlevel``): a registered generator's name, or None (no init, or a folder)."""
    from fmri2image.generation import GENERATORS

    init = config.generation.init
    return init if init is not None and init in GENERATORS.names() else None


def _init_folder(config: RunConfig) -> Path | None:
    init = config.generation.init
    if init is None or _init_generator(config) is not None:
        return None
    path = Path(init).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"--init must be a generator (invert, lowlevel) or a folder of <stem>.png pictures "
            f"(e.g. a run's images/s1-ROI_VC/<model>/<mapper>/<generator>/predicted), got "
            f"{init!r} (no generator of that name, and no such folder)."
        )
    return path


def _lowlevel_options(config: RunConfig, gen: str) -> Any:
    """The resolved options of low-level generator ``gen`` (its ``Options``)."""
    from fmri2image.generation import generator_options
    from fmri2image.generation.base import make_options

    cls = generator_options(gen)
    if cls is None:
        raise ConfigError(f"Generator {gen!r} declares a codebook input but no Options class.")
    return make_options(cls, config.generation.options_for(gen), generator=gen)


def _lowlevel_map(
    config: RunConfig,
    subject: int,
    roi: str,
    codebook: str,
    data_of: Callable,
    add: Callable,
    *,
    early: Sequence[str] = ("ROI_LVC",),
) -> tuple[str, tuple[str, ...]]:
    """The ridge map of one subject's early visual ``roi`` to the low-level code (the
    ``mapping`` stage of the code).  The generator's default ``ROI_LVC`` stands for the
    dataset's early visual cortex: the first of its ``early_visual_rois`` the subject
    has (GOD: ``ROI_LVC``, else V1–V3; THINGS: V1–V3; NSD: every voxel)."""
    from fmri2image.errors import Fmri2ImageError
    from fmri2image.pipeline import stages as st

    candidates = list(dict.fromkeys(early)) if roi == "ROI_LVC" else [roi]
    problems = []
    for candidate in candidates:
        try:
            data_name, stems, _, info = data_of(candidate)
        except Fmri2ImageError as exc:
            problems.append(f"{candidate} ({exc})")
            continue
        if candidate != candidates[0]:
            log.info("%s not found in subject %s; the low-level map reads %s",
                     candidates[0], subject, candidate)  # fmt: skip
        roi = candidate
        break
    else:
        if len(candidates) == 1 and roi != "ROI_LVC":
            raise ConfigError(f"generator lowlevel: --roi {roi!r} (its roi option): "
                              f"{problems[0]}")  # fmt: skip
        found = (
            f"neither {' nor '.join(problems)}"
            if len(problems) == 2
            else f"none of {'; '.join(problems)}"
        )
        raise ConfigError(
            f"generator lowlevel maps early visual cortex, and subject {subject} has "
            f"{found}. Name its ROI with the generator's roi option, "
            "e.g. --set 'generation.options.lowlevel={ roi = \"ROI_V1\" }'."
        )
    options = config.mapping.options
    if "ridge" not in config.mapping.mappers:  # the shared options are the other mappers'
        options = {"ridge": options["ridge"]} if isinstance(options.get("ridge"), dict) else {}
    ridge = config.replace(mapping__mappers=("ridge",), mapping__options=options)
    _check_data_fits(ridge, subject, roi, info)
    code = codebook.split("/", 1)[1]
    stage_name = f"mapping/{code}/ridge/s{subject}/{safe_name(roi)}"
    name = add(st.mapping_stage(stage_name, ridge, "ridge", data_name, codebook))
    return name, stems


def _init_files(folder: Path, model: str, stems: Sequence[str]) -> dict[str, Path]:
    """The initial picture of each stem: ``DIR/<model>/<stem>.png`` or ``DIR/<stem>.png``."""
    from fmri2image.features.shards import store_dirname

    out = {}
    for stem in stems:
        found = next(
            (p for p in (folder / store_dirname(model) / f"{stem}.png", folder / f"{stem}.png")
             if p.is_file()),
            None,
        )  # fmt: skip
        if found is None:
            raise ConfigError(
                f"--init {folder}: no picture for {stem} (looked for {stem}.png there and in "
                f"{store_dirname(model)}/); pass a folder of pictures of the same test "
                "images, or --init invert."
            )
        out[stem] = found
    return out


def _data_facts(
    folder: Path | None, prepared: Callable[[], tuple[Any, Any]], test: Any
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]:
    """The evaluated stems, their labels and the counts of one subject × ROI: read from
    its cached data stage, or from the recording (loaded now, checked before any work)."""
    if folder is not None:
        meta = _io.load_json(folder / "data.json")
        return tuple(meta["test_stems"]), tuple(meta["true_labels"]), dict(meta["info"])
    _, split = prepared()
    import numpy as np

    info = {
        "n_train": int(split.X_train.shape[0]),
        "n_train_categories": len(np.unique(split.train_groups)),
        "n_voxels": split.n_voxels,
    }
    stems = tuple(test.stems[i] for i in split.eval_rows)
    return stems, tuple(test.labels[i] for i in split.eval_rows), info


def _check_data_fits(config: RunConfig, subject: int, roi: str, info: Mapping[str, Any]) -> None:
    """The mapping options fit the data: voxels, training samples, categories."""
    m = config.mapping
    n_voxels, n_train = int(info["n_voxels"]), int(info["n_train"])
    n_groups = int(info["n_train_categories"])
    if m.n_voxels is not None and m.n_voxels > n_voxels:
        raise ConfigError(
            f"--n-voxels {m.n_voxels} is more than the {n_voxels} voxels of {roi} in subject "
            f"{subject}; pass at most --n-voxels {n_voxels}, or leave it out to use every voxel."
        )
    folds = None if m.cv == "loo" or "ridge" not in m.mappers else int(m.cv)
    if folds is not None and folds > n_train:
        raise ConfigError(
            f"--cv {folds} asks for more folds than the {n_train} training samples; pass "
            f"a smaller --cv (e.g. --cv 5) or --cv loo --cv-groups none."
        )
    if folds is not None and m.cv_groups == "category" and folds > n_groups:
        raise ConfigError(
            f"--cv {folds} with --cv-groups category needs at least {folds} training "
            f"categories, and there are {n_groups} training categories; pass --cv "
            f"{max(2, min(5, n_groups))}, or --cv-groups none."
        )
    for mapper in m.mappers:
        try:  # what the mapper itself says of these sizes (mapping.options included)
            m.make_mapper(mapper).check_params(
                n_samples=n_train,
                n_features=n_voxels,
                n_groups=n_groups if m.cv_groups == "category" else None,
            )
        except ConfigError as exc:
            raise ConfigError(f"mapping ({mapper}) on {roi} of subject {subject}: {exc}") from exc


def expand_force(graph: Graph, patterns: Sequence[str]) -> list[str]:
    """Stage names matching each ``--force`` item: a full name, or a prefix ending at
    a ``/`` (``generation``, ``mapping/clip``).

    Raises
    ------
    ConfigError
        An item that matches no stage (the message lists the stage kinds).
    """
    names: list[str] = []
    for pattern in patterns:
        p = pattern.rstrip("/")
        hits = [n for n in graph.order if n == p or n.startswith(p + "/")]
        if not hits:
            kinds = sorted({n.split("/")[0] for n in graph.order})
            raise ConfigError(
                f"--force {pattern} matches no stage of this run; give a stage kind "
                f"({', '.join(kinds)}) or a longer prefix such as {graph.order[-1]}."
            )
        names += hits
    return names


@contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Copy the package's log records (INFO and up) into ``path`` for the duration;
    the console shows what it showed before (``-q``: warnings only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("fmri2image")
    shown = logger.getEffectiveLevel()

    def console_filter(record: logging.LogRecord) -> bool:
        return not record.name.startswith("fmri2image") or record.levelno >= shown

    consoles = list(logging.getLogger().handlers)
    old_level = logger.level
    logger.setLevel(min(shown, logging.INFO))
    for h in consoles:
        h.addFilter(console_filter)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for h in consoles:
            h.removeFilter(console_filter)
        logger.setLevel(old_level)
        handler.close()


def run_experiment(
    config: RunConfig,
    *,
    encoders: Mapping[str, Encoder] | None = None,
    generators: Mapping[str, Generator] | None = None,
    force: Sequence[str] = (),
    progress: bool = True,
) -> ExperimentResult:
    """Run the whole pipeline of ``config`` (see the module docstring).

    Parameters
    ----------
    config : RunConfig
        ``out`` and ``data.path`` must be set.
    encoders, generators : mapping, optional
        Built components instead of the registries' (tests use tiny ones).
    force : sequence of str
        Stages to recompute (:func:`expand_force`), with everything downstream.
    progress : bool

    Returns
    -------
    ExperimentResult
    """
    from fmri2image._malloc import tune_allocator
    from fmri2image.pipeline.executor import make_executor
    from fmri2image.pipeline.results import write_stages

    tune_allocator()  # once per process; FMRI2IMAGE_MALLOC=system keeps glibc's defaults
    t0 = time.perf_counter()
    plan = build_experiment(config, encoders=encoders, generators=generators, progress=progress)
    forced = expand_force(plan.graph, force)
    # What must be computed, and the models and checks it needs, before anything is
    # written: a bad input leaves no output folder and no cache behind.
    problems = plan.graph.problems(plan.cache, force=forced, verify=config.verify)
    plan.graph.prepare(problems)
    out = Path(config.out or "")
    with _claim(out, Path(plan.cache)) as started:
        log.info("running %d stages (cache %s)", len(plan.graph.order), plan.cache)
        started()
        for scanned in plan.scans:  # under the lock: the next run need not list the folders
            scanned.remember()
        executor = make_executor(config, encoders=encoders, generators=generators)
        result = plan.graph.run(
            plan.cache, force=forced, progress=progress, problems=problems, executor=executor
        )
        # The results of the previous run in OUT stay as they were until every
        # stage of this one is done; then they are replaced.
        config.save(out)
        write_stages(out, plan.cache, result.records)
        return _publish(config, plan, result, out, time.perf_counter() - t0)


def _created(path: Path) -> list[Path]:
    """``path`` and its missing parents, deepest first: what ``mkdir(parents=True)`` makes."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextmanager
def _claim(out: Path, cache: Path) -> Iterator[Callable[[], None]]:
    """Hold the cache's and OUT's writer locks and OUT/run.log for a run.

    Yields a function the run calls just before its first stage.  A failure before
    that call (a lock held by another run, an interrupt) leaves OUT as this run found
    it: the folders and lock files it created are removed and an existing ``run.log``
    is cut back to its former length.  Later failures keep the log, which tells what
    happened.
    """
    from contextlib import ExitStack

    from fmri2image._lock import LOCK_NAME, output_lock

    folders = list(dict.fromkeys([*_created(cache), *_created(out)]))
    locks = [f / LOCK_NAME for f in (cache, out) if not (f / LOCK_NAME).exists()]
    log_path = out / "run.log"
    log_size = log_path.stat().st_size if log_path.is_file() else None
    state = {"started": False}

    def started() -> None:
        state["started"] = True

    try:
        with ExitStack() as stack:
            # The cache first: a run that finds it busy stops before OUT is touched
            # (when the cache lies elsewhere), and the graph re-enters this lock.
            stack.enter_context(output_lock(cache, flag="--cache"))
            stack.enter_context(output_lock(out, flag="--out"))
            stack.enter_context(_log_file(log_path))
            collected = _collect_output_leftovers(out, cache)
            if collected:
                log.info(
                    "collected %d unfinished file(s) of killed runs in %s: %s",
                    len(collected),
                    out,
                    ", ".join(collected),
                )
            yield started
    except BaseException:
        if not state["started"]:
            _restore(folders, locks, log_path, log_size)
        raise


#: Temporary files of :func:`fmri2image._io.atomic_path` (``.<name>.<8 chars>.tmp``),
#: of older image exports (``.<name>.<12 hex>.link``) and of the write probe.
_LEFTOVER = re.compile(
    r"^\..+\.[a-z0-9_]{8}\.tmp$|^\..+\.[0-9a-f]{12}\.link$|^\.fmri2image-write-test-"
)


def _collect_output_leftovers(out: Path, cache: Path) -> list[str]:
    """Remove the temporary files a killed run left in OUT (the cache is the graph's
    to collect); the caller holds OUT's lock.  Returns them, relative to OUT."""
    import os

    collected: list[str] = []
    skip = cache.resolve()
    for root, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if (Path(root) / d).resolve() != skip]
        for name in files:
            if _LEFTOVER.match(name):
                path = Path(root) / name
                try:
                    path.unlink()
                except OSError:
                    continue
                collected.append(path.relative_to(out).as_posix())
    return sorted(collected)


def _restore(
    folders: Sequence[Path], locks: Sequence[Path], log_path: Path, log_size: int | None
) -> None:
    """Undo what claiming an output folder wrote (see :func:`_claim`)."""
    import contextlib
    import os

    with contextlib.suppress(OSError):
        if log_size is None:
            log_path.unlink(missing_ok=True)
        else:
            os.truncate(log_path, log_size)
    for lock in locks:  # released (emptied) by now; a non-empty one is another run's
        with contextlib.suppress(OSError):
            if lock.stat().st_size == 0:
                lock.unlink()
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: never what another run put there


def _publish(config: RunConfig, plan: _Plan, result: Any, out: Path, seconds: float):
    """Tables, summary.json, images, maps, the grid and the report from the artifacts."""
    from fmri2image.pipeline import outputs, report, tables

    values = result.values
    decodings = {key: _decoding(plan, values, result, key) for key in plan.data}
    entries = tuple(
        tables.ReconstructionScores(
            subject=s,
            roi=roi,
            model=m,
            mapper=mapper,
            generator=g,
            condition=cond,
            evaluation=values[e_name],
            images=values[g_name].folder,
        )
        for s, roi, m, mapper, g, cond, g_name, e_name in plan.evaluations
    )
    pictures = tuple(
        {
            "subject": s,
            "roi": roi,
            "model": m,
            "mapper": mapper,
            "generator": g,
            "condition": cond,
            "folder": str(values[g_name].folder),
            "n_images": len(values[g_name].stems),
            "n_made": values[g_name].n_made if not result.record(g_name).reused else 0,
            "n_flagged": values[g_name].n_flagged,
        }
        for s, roi, m, mapper, g, cond, g_name, _ in plan.evaluations
    )
    summary = tables.summary_rows(entries, seed=config.seed)
    paired = tables.paired_rows(entries, seed=config.seed)
    written = tables.write_tables(
        out / "tables", entries, decodings.values(), summary=summary, paired=paired
    )
    # The versions the evaluations ran with, recorded in OUT: the report reads
    # nothing outside the run folder.
    versions = next((dict(e.evaluation.protocol.get("versions") or {}) for e in entries), {})
    _write_summary(out, config, decodings, seconds, versions)
    gt = plan.ground_truth if not isinstance(plan.ground_truth, str) else values[plan.ground_truth]
    gt_by_key = {key: gt.files_of(d.test_stems) for key, d in decodings.items()}
    outputs.export_images(out, entries, gt_by_key)
    outputs.export_maps(
        out,
        {k: values[name].folder for k, name in plan.mapping.items()},
        {k: {db: values[n].folder for db, n in dbs.items()} for k, dbs in plan.retrieval.items()},
    )
    if config.visualize and entries:
        for (s, roi), files in gt_by_key.items():
            several = len(config.mapping.mappers) > 1
            rows = [
                (" / ".join([e.model, *([e.mapper] if several else []), e.generator]), e.images)
                for e in entries
                if (e.subject, e.roi) == (s, roi) and e.condition == "predicted"
            ]
            if rows:
                outputs.image_grid(out / f"grid-s{s}-{safe_name(roi)}.png", files, rows,
                                   list(files))  # fmt: skip
    comparison = tables.format_comparison(summary, paired)
    report.write_report(out)
    return ExperimentResult(
        config=config,
        out_dir=out,
        records=result.records,
        decodings=decodings,
        reconstructions=entries,
        tables=written,
        comparison=comparison,
        seconds=round(seconds, 2),
        pictures=pictures,
    )


def _decoding(plan: _Plan, values: dict, result: Any, key: tuple[int, str]) -> Decoding:
    """The :class:`~fmri2image.pipeline.tables.Decoding` of one subject × ROI."""
    from fmri2image.pipeline.tables import Decoding, ModelDecoding

    data = values[plan.data[key]]
    models = []
    for (s, roi, model, mapper), m_name in plan.mapping.items():
        if (s, roi) != key:
            continue
        mapped = values[m_name]
        record = result.record(m_name)
        models.append(
            ModelDecoding(
                model=model,
                mapper=mapper,
                dim=int(mapped.predictions.shape[1]),
                metrics=mapped.metrics,
                fit=mapped.fit,
                retrievals=tuple(
                    values[n] for n in plan.retrieval[(s, roi, model, mapper)].values()
                ),
                seconds=0.0 if record.reused else round(record.seconds, 2),
            )
        )
    return Decoding(
        subject=key[0],
        roi=key[1],
        info=dict(data.info),
        test_stems=data.test_stems,
        true_labels=data.true_labels,
        models=tuple(models),
    )


def _write_summary(
    out: Path,
    config: RunConfig,
    decodings: Mapping[tuple[int, str], Decoding],
    seconds: float,
    versions: Mapping[str, Any],
) -> Path:
    """``OUT/summary.json``: the decoding, one row per subject, ROI and encoder, and
    the package versions the evaluations recorded."""
    from fmri2image.pipeline.tables import decoding_summary

    blocks = [
        {
            "subject": d.subject,
            "roi": d.roi,
            "info": d.info,
            "test_images": list(d.test_stems),
            "true_labels": list(d.true_labels),
        }
        for d in decodings.values()
    ]
    return _io.save_json(
        out / SUMMARY_FILE,
        {
            "format": SUMMARY_FORMAT,
            "version": 2,
            "dataset": config.data.dataset,
            "data": config.data.path,
            "blocks": blocks,
            "encoders": decoding_summary(decodings.values()),
            "warnings": sorted({w for d in decodings.values() for w in d.warnings}),
            "versions": dict(versions),
            "seconds": round(seconds, 2),
        },
    )
