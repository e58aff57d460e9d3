"""``fmri2image run`` / ``compare``: the whole pipeline, fMRI to scored pictures, cached.

One :class:`~fmri2image.pipeline.config.RunConfig` becomes a graph of stages
(:mod:`fmri2image.pipeline.stages`)::

    data/s<S>/<ROI> ──────────────┐
    features/<model> ─────────────┼─> mapping/<model>/s<S>/<ROI> ─> retrieval/<model>/<db>/…
    database/<model>/<db> ────────┘                 │                       │
                                                    └──> generation/<model>/<gen>/predicted/…
    features/<model> ──> generation/<model>/<gen>/{true,random}/<images>  (the bounds)
    generation/… ──> evaluation/…

run by :class:`~fmri2image.pipeline.graph.Graph` with its verified cache
(``<out>/cache`` unless ``cache`` says otherwise): a rerun recomputes only what
changed, ``--force KIND[/…]`` recomputes stages by name prefix and everything
downstream, a killed run resumes.  Stages shared by several models, generators,
subjects or ROIs are computed once.  Every option and input is checked before any
stage runs.

Under the output folder::

    config.toml          the resolved configuration (``--config`` reads it back)
    stages.json          every stage: key, reused or computed, seconds, folder
    run.log              the log of the run
    tables/              scores / summary / paired / decoding, CSV and parquet
    images/s<S>-<ROI>/   ground_truth/ and <model>/<generator>/<condition>/
    maps/s<S>-<ROI>/     per model: the fitted map (mapping/), its predictions and scores
    grid-s<S>-<ROI>.png  ground truth, then each model × generator (``visualize``)
    report.html          one self-contained page: tables, pictures, plots (report.md: tables)
    cache/               the stage artifacts
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmri2image import _io
from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder
    from fmri2image.generation import Generator
    from fmri2image.pipeline.decoding import DecodingResult
    from fmri2image.pipeline.graph import Graph, StageRecord
    from fmri2image.pipeline.outputs import ReconstructionScores

log = logging.getLogger(__name__)

__all__ = [
    "ExperimentResult",
    "build_experiment",
    "config_with",
    "expand_force",
    "run_experiment",
]


@dataclass(frozen=True)
class ExperimentResult:
    """What a run made, and how.

    Attributes
    ----------
    config : RunConfig
    out_dir : Path
    records : tuple of StageRecord
        Every stage of the graph, in run order: reused or computed, and its seconds.
    decodings : dict of (subject, roi) to DecodingResult
        Prediction and retrieval scores (what ``decode`` prints).
    reconstructions : tuple of ReconstructionScores
        Every evaluated set of pictures (model × generator × condition × subject × ROI).
    tables : dict of str to Path
        The files under ``out/tables``.
    comparison : str
        The printed comparison table.
    seconds : float
    """

    config: RunConfig
    out_dir: Path
    records: tuple[StageRecord, ...]
    decodings: dict[tuple[int, str], DecodingResult]
    reconstructions: tuple[ReconstructionScores, ...]
    tables: dict[str, Path]
    comparison: str
    seconds: float

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
        parts = [d.table() for d in self.decodings.values()]
        if len(self.decodings) == 1:
            parts.append(next(iter(self.decodings.values())).labels_table())
        parts.append(self.comparison)
        return "\n\n".join(p for p in parts if p)


# ---------------------------------------------------------------- assembly
@dataclass
class _Plan:
    """The graph and how to find its artifacts."""

    graph: Graph
    decoding: dict[tuple[int, str], Any]  # (subject, roi) -> DecodingConfig
    data: dict[tuple[int, str], str]
    features: dict[str, str]
    mapping: dict[tuple[int, str, str], str]
    retrieval: dict[tuple[int, str, str], list[str]]
    evaluations: list[tuple[int, str, str, str, str, str, str]]  # s, roi, m, g, cond, gen, eval
    ground_truth: dict[str, Path]


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
    from fmri2image.data.god import find_subject_files
    from fmri2image.generation.base import GENERATORS
    from fmri2image.pipeline import stages as st
    from fmri2image.pipeline.decoding import AUTO_K, _check_inputs
    from fmri2image.pipeline.graph import Graph, safe_name
    from fmri2image.pipeline.preflight import check_device, check_output_dir

    config.validate(injected=set(encoders or {}))
    if not config.data.god:
        raise ConfigError("No data folder: pass --god DIR (or set data.god in --config).")
    if not config.out:
        raise ConfigError("No output folder: pass --out DIR (or set out in --config).")
    check_device(config.device)
    out = Path(config.out)
    check_output_dir(out)
    if config.cache:
        check_output_dir(Path(config.cache), flag="--cache")
    god = Path(config.data.god)
    dtype = config.generation.dtype
    if dtype == "auto":
        dtype = "float16" if str(config.device).startswith("cuda") else "float32"
    components = st.Components(
        device=config.device, dtype=dtype, encoders=encoders, generators=generators
    )
    injected_gens = dict(generators or {})

    def conditioning(g: str) -> str:
        if g in injected_gens:
            return injected_gens[g].conditioning
        return GENERATORS.get(g).conditioning

    stages: dict[str, Any] = {}

    def add(stage: Any) -> str:
        stages.setdefault(stage.name, stage)
        return stage.name

    decoding, data_names, mapping, retrieval = {}, {}, {}, {}
    evaluations: list[tuple[int, str, str, str, str, str, str]] = []
    features: dict[str, str] = {}
    databases_done: dict[tuple[str, str], str] = {}
    scans: dict[str, Any] = {}
    ground_truth: dict[str, Path] = {}
    stimuli: dict[str, Any] = {}
    for dcfg in config.decoding_configs():
        # The stimulus images are shared by every subject: their headers are read once.
        inputs = _check_inputs(god, out, dcfg, encoders, progress=progress,
                               check_images=not stimuli)  # fmt: skip
        stimuli = stimuli or {"training": inputs.train_set, "test": inputs.test_set}
        dbs = inputs.databases
        image_dbs = [d for d in dbs if d.kind in ("images", "features")]
        label_db = _label_database(config, dbs, [g for g in config.generation.generators
                                                 if conditioning(g) == "label"])  # fmt: skip
        if "retrieve" in config.generation.generators and not image_dbs:
            raise ConfigError(
                "--generators retrieve shows the nearest image of an image database, and "
                "retrieval.databases has none; add an image folder (or a feature folder "
                "from `fmri2image extract`) to retrieval.databases, or drop retrieve."
            )
        ground_truth.update(
            {Path(p).name.rsplit(".", 1)[0]: Path(p) for p in inputs.test_set.paths if p}
        )
        key = (dcfg.subject, dcfg.roi)
        decoding[key] = dcfg
        tag = f"s{dcfg.subject}/{safe_name(dcfg.roi)}"
        files = find_subject_files(god, dcfg.subject, dcfg.release)
        data_names[key] = add(st.data_stage(f"data/{tag}", dcfg, st.files_identity(files), inputs))
        stems, wnids = tuple(inputs.test_stems), tuple(inputs.true_wnids)
        gt_id = st.files_identity([ground_truth[s] for s in stems])
        images_tag = _io.json_sha256(list(stems))[:10]
        for model in config.models:
            features[model] = add(
                st.features_stage(model, stimuli, components, batch_size=config.batch_size)
            )
            m_name = add(
                st.mapping_stage(f"mapping/{model}/{tag}", dcfg, data_names[key], features[model])
            )
            mapping[(*key, model)] = m_name
            ret_of: dict[str, str] = {}
            db_stage_of: dict[str, str | None] = {}
            for db in dbs:
                db_stage = None
                if db.kind == "images":
                    if db.name not in scans:  # one scan of the folder for every model
                        scans[db.name] = st.scan_database(db)
                    if (model, db.name) not in databases_done:
                        databases_done[(model, db.name)] = add(
                            st.database_stage(
                                model, scans[db.name], components, batch_size=config.batch_size
                            )
                        )
                    db_stage = databases_done[(model, db.name)]
                db_stage_of[db.name] = db_stage
                ret_of[db.name] = add(
                    st.retrieval_stage(
                        f"retrieval/{model}/{db.name}/{tag}",
                        dcfg,
                        db,
                        dcfg.k or AUTO_K[db.kind],
                        model,
                        data_names[key],
                        m_name,
                        db_stage,
                        components,
                    )
                )
            retrieval[(*key, model)] = list(ret_of.values())
            for gen in config.generation.generators:
                options = config.generation.options_for(gen)
                db_stage = None
                if gen == "retrieve" and "database" not in options:
                    db0 = image_dbs[0]
                    db_stage = db_stage_of[db0.name]
                    if db_stage is None:  # a feature folder from `extract`
                        options = {**options, "database": str(db0.path)}
                for cond in config.generation.conditions:
                    if cond == "predicted":
                        suffix = tag
                        plan = st.GenerationPlan(
                            cond, stems, wnids, mapping=m_name,
                            retrieval=ret_of[label_db] if conditioning(gen) == "label" else None,
                            database=db_stage,
                        )  # fmt: skip
                    else:  # the bounds: no brain in them, shared by subjects and ROIs
                        suffix = f"images-{images_tag}"
                        plan = st.GenerationPlan(cond, stems, wnids, database=db_stage)
                    g_name = add(
                        st.generation_stage(
                            f"generation/{model}/{gen}/{cond}/{suffix}",
                            model,
                            gen,
                            options,
                            plan,
                            features[model],
                            components,
                            seed=config.seed,
                            batch_size=config.generation.batch_size,
                        )
                    )
                    e_name = add(
                        st.evaluation_stage(
                            f"evaluation/{model}/{gen}/{cond}/{suffix}",
                            g_name,
                            lambda s: st.image_source(god, {x: ground_truth[x] for x in s}),
                            gt_id,
                            config.evaluation.metrics,
                            components,
                            seed=config.seed,
                            bootstrap=config.evaluation.bootstrap,
                            batch_size=config.evaluation.batch_size,
                            weights=config.evaluation.weights,
                        )
                    )
                    evaluations.append((*key, model, gen, cond, g_name, e_name))
    return _Plan(
        graph=Graph(list(stages.values())),
        decoding=decoding,
        data=data_names,
        features=features,
        mapping=mapping,
        retrieval=retrieval,
        evaluations=evaluations,
        ground_truth=ground_truth,
    )


def _label_database(config: RunConfig, dbs: Sequence[Any], label_gens: Sequence[str]) -> str:
    """The database whose top-1 label conditions label-based generators
    (``labels_from`` was checked against the databases by ``RunConfig.validate``)."""
    if config.generation.labels_from:
        return config.generation.labels_from
    if label_gens and not dbs:
        raise ConfigError(
            f"Generator(s) {', '.join(label_gens)} draw from the retrieved label, and "
            "retrieval.databases is empty; add one (e.g. prototypes)."
        )
    return dbs[0].name if dbs else ""


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
        ``out`` and ``data.god`` must be set.
    encoders, generators : mapping, optional
        Built components instead of the registries' (tests use tiny ones).
    force : sequence of str
        Stages to recompute (:func:`expand_force`), with everything downstream.
    progress : bool

    Returns
    -------
    ExperimentResult
    """
    from fmri2image._lock import output_lock

    t0 = time.perf_counter()
    plan = build_experiment(config, encoders=encoders, generators=generators, progress=progress)
    forced = expand_force(plan.graph, force)
    out = Path(config.out or "")
    cache = Path(config.cache) if config.cache else out / "cache"
    with output_lock(out, flag="--out"):
        config.save(out)
        with _log_file(out / "run.log"):
            log.info("running %d stages (cache %s)", len(plan.graph.order), cache)
            result = plan.graph.run(cache, force=forced, progress=progress)
            _io.save_json(out / "stages.json", [r.to_dict() for r in result.records])
            return _publish(config, plan, result, out, time.perf_counter() - t0)


def _publish(config: RunConfig, plan: _Plan, result: Any, out: Path, seconds: float):
    """Tables, images and the grid from the artifacts."""
    from fmri2image.pipeline import outputs, report

    values = result.values
    decodings = {key: _decoding_result(plan, values, result, key, out) for key in plan.decoding}
    entries = tuple(
        outputs.ReconstructionScores(
            subject=s,
            roi=roi,
            model=m,
            generator=g,
            condition=cond,
            evaluation=values[e_name],
            images=values[g_name].folder,
        )
        for s, roi, m, g, cond, g_name, e_name in plan.evaluations
    )
    summary = outputs.summary_rows(entries)
    paired = outputs.paired_rows(entries, seed=config.seed)
    tables = outputs.write_tables(
        out / "tables", entries, decodings, summary=summary, paired=paired
    )
    gt_by_key = {
        (s, roi): {stem: plan.ground_truth[stem] for stem in d.test_stems}
        for (s, roi), d in decodings.items()
    }
    outputs.export_images(out, entries, gt_by_key)
    outputs.export_maps(out, {k: values[name].folder for k, name in plan.mapping.items()})
    if config.visualize:
        for (s, roi), gt in gt_by_key.items():
            rows = [
                (f"{e.model} / {e.generator}", e.images)
                for e in entries
                if (e.subject, e.roi) == (s, roi) and e.condition == "predicted"
            ]
            outputs.image_grid(
                out / f"grid-s{s}-{outputs.safe_component(roi)}.png", gt, rows, list(gt)
            )
    comparison = outputs.format_comparison(summary, paired)
    report.write_report(out)
    return ExperimentResult(
        config=config,
        out_dir=out,
        records=result.records,
        decodings=decodings,
        reconstructions=entries,
        tables=tables,
        comparison=comparison,
        seconds=round(seconds, 2),
    )


def _decoding_result(plan: _Plan, values: dict, result: Any, key: tuple[int, str], out: Path):
    """A :class:`~fmri2image.pipeline.decoding.DecodingResult` from the artifacts."""
    from fmri2image.pipeline.decoding import DecodingResult, EncoderResult, RetrievalSummary

    dcfg = plan.decoding[key]
    data = values[plan.data[key]]
    rows = []
    for model in dcfg.encoders:
        m_name = plan.mapping[(*key, model)]
        mapped = values[m_name]
        rets = [values[n] for n in plan.retrieval[(*key, model)]]
        rows.append(
            EncoderResult(
                encoder=model,
                dim=values[plan.features[model]].dim,
                out_dir=mapped.folder,
                prediction=mapped.metrics,
                alpha_median=float(mapped.fit.get("alpha_median") or float("nan")),
                seconds=round(result.record(m_name).seconds, 2),
                retrievals=tuple(
                    RetrievalSummary(
                        database=r.database,
                        label=r.label,
                        k=r.k,
                        out_dir=r.folder,
                        semantic=r.summary,
                        top1_labels=r.top1,
                    )
                    for r in rets
                ),
                fit=mapped.fit,
            )
        )
    info = data.info
    return DecodingResult(
        config=dcfg,
        out_dir=out,
        results=tuple(rows),
        n_train=int(info["n_train"]),
        n_train_categories=int(info["n_train_categories"]),
        n_test_images=int(info["n_eval"]),
        n_test_repeats=tuple(info["n_eval_repeats"]),
        n_voxels=int(info["n_voxels"]),
        test_wnids=data.true_wnids,
        test_stems=data.test_stems,
        seconds=0.0,
        warnings=tuple(w for r in rows for w in r.fit.get("warnings", ())),
    )


def config_with(config: RunConfig, **changes: Any) -> RunConfig:
    """``config`` with top-level fields or ``section__field`` values replaced
    (``data__subjects=(1, 2)``); None values leave the field as it is."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        if value is None:
            continue
        section, sep, field_name = name.partition("__")
        if sep:
            sections.setdefault(section, {})[field_name] = value
        else:
            top[name] = value
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(config, section), **values)
    return dataclasses.replace(config, **top)
