"""The report's model: what the page, the markdown and the CSVs show of a run.

:func:`build` turns a :class:`~fmri2image.pipeline.report.loader.RunFolder` into a
:class:`Report` (one :class:`Block` per subject × ROI, with the retrieved labels and
the per-dimension R² it finds in the run folder's ``maps/`` and ``images/``);
:func:`tables` gives the rows of the CSV tables; :func:`versions` the package
versions.  Plain data, no HTML (:mod:`~fmri2image.pipeline.report.sections` lays it
out per section).  Of the run folder only the attributes and methods of
``RunFolder`` are used: every file under it is opened through
:meth:`~fmri2image.pipeline.report.loader.RunFolder.file`, and a file that cannot be
read is left out with a warning naming it.
"""

from __future__ import annotations

import logging
import math
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image import __version__
from fmri2image._io import load_json, safe_name
from fmri2image.pipeline.report.loader import RunFolder, is_stem, shown
from fmri2image.pipeline.tables import best_keys, winners

log = logging.getLogger(__name__)

#: The subject of the blocks that average over subjects.
MEAN = "mean"
#: A paired test is significant below this Holm-corrected p.
SIGNIFICANT = 0.05

#: The decoding metrics the tables show first, by registry name, with their headers
#: (then any other embedding metric with a score function, e.g. a plugin's).
_TITLES = {
    "pairwise_identification": "pairwise id",
    "nway_top1": "n-way top-1",
    "r2_variance_weighted": "R²",
    "dimension_correlation": "unit r",
    "cosine": "cosine",
    "hit1": "hit@1",
    "hit5": "hit@5",
    "wup": "Wu–Palmer",
    "coverage": "coverage",
}
_SHOWN = {
    "prediction": ("pairwise_identification", "nway_top1", "r2_variance_weighted",
                   "dimension_correlation", "cosine"),
    "retrieval": ("hit1", "hit5", "wup", "coverage"),
}  # fmt: skip
#: Not a metric: the median alpha of the fitted map (from its fit.json), shown last.
ALPHA = "alpha_median"


def decoding_columns(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[tuple[str, str, Any]]]:
    """Per stage, the (metric, header, higher is better) columns of the decoding tables:
    the usual ones, then any other registered embedding metric with a score function
    that the rows hold; directions from the metric registry."""
    from fmri2image.evaluation.base import METRICS

    present = {r.get("metric") for r in rows}
    extra = [
        m.name for m in _registered("embedding")
        if m.score is not None and m.name in present and m.name not in _SHOWN["prediction"]
    ]  # fmt: skip
    out: dict[str, list[tuple[str, str, Any]]] = {}
    for stage, names in _SHOWN.items():
        names = [*names, *extra] if stage == "prediction" else list(names)
        cols = [
            (n, _TITLES.get(n, n), METRICS.get(n).higher_is_better if n in METRICS else None)
            for n in names
        ]
        if stage == "prediction":
            cols.append((ALPHA, "median α", None))
        out[stage] = cols
    return out


def _registered(kind: str) -> list[Any]:
    from fmri2image.evaluation.base import list_metrics

    return list_metrics(kind)


#: The package versions shown when no evaluation recorded its own.
_VERSION_PACKAGES = ("numpy", "scipy", "torch", "torchvision", "scikit-learn", "scikit-image",
                     "Pillow", "pyarrow", "faiss-cpu", "transformers", "diffusers")  # fmt: skip


def dirname(name: str) -> str:
    """The folder name of a model or generator under ``images/`` and ``maps/``."""
    from fmri2image.features.shards import store_dirname

    return store_dirname(name)


def decoder_dirs(run: RunFolder, name: str) -> tuple[str, str]:
    """The folders of the report's model ``name`` (model, mapper) under ``images/<block>/``
    and ``maps/<block>/``."""
    model, mapper = run.decoder(name)
    return dirname(model), dirname(mapper)


def unique(values: Iterable[Any]) -> list[Any]:
    """The values, in order, without repeats or None."""
    return list(dict.fromkeys(v for v in values if v is not None))


def subject_key(s: str) -> tuple[int, Any]:
    return (0, int(s)) if s.isdigit() else (1, s)


def label_name(wnid: str) -> str:
    """The readable name of a WordNet id (the id itself when it has none)."""
    from fmri2image.imagenet import prompt_name

    try:
        return prompt_name(wnid)
    except Exception:
        return wnid


# ---------------------------------------------------------------- the report
@dataclass
class Label:
    top1: str
    name: str
    true: str
    true_name: str
    hit: bool


@dataclass
class Block:
    """One subject × ROI (or the mean over subjects of one ROI)."""

    subject: str
    roi: str
    stems: list[str] = field(default_factory=list)
    wnids: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    label_db: dict[str, str] = field(default_factory=dict)  # model -> database
    labels: dict[str, dict[str, Label]] = field(default_factory=dict)  # model -> stem -> label
    wup: dict[str, list[float]] = field(default_factory=dict)  # model -> per-image Wu–Palmer
    wup_chance: dict[str, float] = field(default_factory=dict)
    r2: dict[str, list[float]] = field(default_factory=dict)  # model -> per-dimension R²
    alpha: dict[str, float] = field(default_factory=dict)  # model -> median alpha of its map
    #: (model, generator) -> stem -> the label its predicted picture was made from or shows
    shown: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.roi)

    @property
    def is_mean(self) -> bool:
        return self.subject == MEAN

    @property
    def title(self) -> str:
        if self.is_mean:
            return f"Mean over subjects · {self.roi}"
        return f"Subject {self.subject} · {self.roi}"

    @property
    def images(self) -> str:
        """The block's folder under ``images/`` and ``maps/`` (one path component)."""
        return f"s{safe_name(self.subject)}-{safe_name(self.roi)}"

    @property
    def anchor(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.subject}-{self.roi}")


@dataclass
class Report:
    run: RunFolder
    blocks: list[Block]  # subject blocks first, mean blocks last
    models: list[str]
    generators: list[str]
    metrics: list[str]
    hib: dict[str, bool]
    summary: dict[tuple, dict[str, Any]]  # (subject, roi, model, gen, cond, metric) -> row
    methods: dict[tuple[str, str], list[tuple[str, str]]]  # block -> (model, generator)
    databases: list[str]
    labels_from: str | None

    def row(self, block: Block, model: str, gen: str, cond: str, metric: str) -> dict | None:
        return self.summary.get((block.subject, block.roi, model, gen, cond, metric))

    @property
    def subject_blocks(self) -> list[Block]:
        return [b for b in self.blocks if not b.is_mean]

    @property
    def title(self) -> str:
        where = self.run.root.resolve()
        return f"fmri2image report: {'/'.join(where.parts[-2:]) if len(where.parts) > 2 else where}"


def _retrieval_file(run: RunFolder, block: Block, model: str, database: str, name: str):
    """A file of the model's retrieval from ``database``, as the run exported it
    (``maps/<block>/<model>/retrieval/<database>/``)."""
    return run.file(
        "maps", block.images, *decoder_dirs(run, model), "retrieval", safe_name(database), name
    )


def _load_labels(run: RunFolder, block: Block, model: str, database: str) -> None:
    import pyarrow.parquet as pq

    per_query = _retrieval_file(run, block, model, database, "semantic_per_query.parquet")
    meta_path = _retrieval_file(run, block, model, database, "retrieval.json")
    if per_query is None and meta_path is None:
        return
    labels: dict[str, Label] = {}
    rows: list[dict[str, Any]] = []
    if per_query is not None:
        try:
            rows = pq.read_table(str(per_query)).to_pylist()
        except Exception as exc:  # pyarrow raises its own error types
            log.warning("warning: cannot read %s (%s)", per_query, shown(exc))
    if rows:
        wup = []
        chances = []
        for r in rows:
            stem = str(r.get("query"))
            true = block.wnids.get(stem) or str(r.get("true_wnid") or stem.split("_")[0])
            top1 = str(r.get("top1_wnid") or "")
            labels[stem] = Label(
                top1=top1,
                name=str(r.get("top1_name") or label_name(top1)) if top1 else "",
                true=true,
                true_name=str(r.get("true_name") or label_name(true)),
                hit=bool(top1) and top1 == true,
            )
            if isinstance(r.get("wup"), float) and math.isfinite(r["wup"]):
                wup.append(r["wup"])
            if isinstance(r.get("wup_chance"), float) and math.isfinite(r["wup_chance"]):
                chances.append(r["wup_chance"])
        block.wup[model] = wup
        if chances:
            block.wup_chance[model] = sum(chances) / len(chances)
    elif meta_path is not None:
        try:
            top1s = load_json(meta_path).get("top1") or []
            top1s = top1s if isinstance(top1s, list) else []
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("warning: cannot read %s (%s)", meta_path, shown(exc))
            top1s = []
        for stem, top1 in zip(block.stems, top1s):
            true = block.wnids.get(stem) or stem.split("_")[0]
            labels[stem] = Label(
                str(top1), label_name(str(top1)), true, label_name(true), top1 == true
            )
    block.labels[model] = labels


def _map_file(run: RunFolder, block: Block, model: str, *rel: str) -> Path | None:
    """A file of the model's map, as the run exported it (``maps/<block>/<model>/``)."""
    return run.file("maps", block.images, *decoder_dirs(run, model), *rel)


def _load_r2(run: RunFolder, block: Block, model: str) -> None:
    import pyarrow.parquet as pq

    f = _map_file(run, block, model, "prediction", "per_dimension.parquet")
    if f is None:
        return
    try:
        col = pq.read_table(str(f), columns=["r2"]).column("r2").to_pylist()
    except Exception as exc:  # pyarrow raises its own error types
        log.warning("warning: cannot read %s (%s)", f, shown(exc))
        return
    block.r2[model] = [v for v in col if isinstance(v, float) and math.isfinite(v)]


def _load_fit(run: RunFolder, block: Block, model: str) -> None:
    """The median alpha of the model's map (``fit.json``), when it has alphas."""
    p = _map_file(run, block, model, "fit.json")
    if p is None:
        return
    try:
        alpha = (load_json(p).get("fit") or {}).get(ALPHA)
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("warning: cannot read %s (%s)", p, shown(exc))
        return
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha):
        block.alpha[model] = float(alpha)


def _load_shown(run: RunFolder, block: Block, model: str, gen: str) -> None:
    """What each predicted picture of (model, generator) shows, from its record beside
    it in ``images/``: the label it was made from (label-conditioned generators) or that
    of the database image it is (``retrieve``)."""
    labels = {}
    for stem in block.stems:
        rec = picture_file(run, block, model, gen, f"{stem}.json")
        if rec is None:
            continue
        try:
            label = load_json(rec).get("label")
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("warning: cannot read %s (%s)", rec, shown(exc))
            continue
        if isinstance(label, str) and label:
            labels[stem] = label
    if labels:
        block.shown[(model, gen)] = labels


def picture_path(run: RunFolder, block: Block, model: str, gen: str, name: str) -> Path:
    """Where the run exported a file of a ``predicted`` picture of (model, generator)."""
    return run.root.joinpath(
        "images", block.images, *decoder_dirs(run, model), dirname(gen), "predicted", name
    )


def picture_file(run: RunFolder, block: Block, model: str, gen: str, name: str) -> Path | None:
    """That file, when it is there (inside the run folder)."""
    return run.inside(picture_path(run, block, model, gen, name))


def decoding_with_fit(rep: Report) -> list[dict[str, Any]]:
    """The rows of ``tables/decoding`` and, per subject block and model, a row with the
    median alpha of its map (stage ``prediction``, metric :data:`ALPHA`)."""
    rows = list(rep.run.decoding)
    for block in rep.subject_blocks:
        for model, alpha in block.alpha.items():
            rows.append(
                {"subject": block.subject, "roi": block.roi, "model": model,
                 "mapper": rep.run.decoder(model)[1], "stage": "prediction", "database": None, "metric": ALPHA, "value": alpha,
                 "baseline": None, "chance": None, "higher_is_better": None}
            )  # fmt: skip
    return rows


def _ground_truth_stems(run: RunFolder, block: Block) -> list[str]:
    gt = run.root / "images" / block.images / "ground_truth"
    try:
        found = sorted(p for p in gt.glob("*") if is_stem(p.stem))
    except OSError:
        return []
    return [p.stem for p in found if run.inside(p) is not None]


def build(run: RunFolder) -> Report:
    """The report of a run folder."""
    summary = {
        (r["subject"], r["roi"], r["model"], r["generator"], r["condition"], r["metric"]): r
        for r in run.summary
    }
    keys = unique((r["subject"], r["roi"]) for r in run.summary)
    keys += [k for k in unique((r["subject"], r["roi"]) for r in run.decoding) if k not in keys]
    keys = [k for k in keys if k[0] != MEAN] + [k for k in keys if k[0] == MEAN]
    predicted = [r for r in run.summary if r["condition"] == "predicted"]
    models = unique([*(r["model"] for r in run.summary), *(r["model"] for r in run.decoding)])
    generators = unique(r["generator"] for r in run.summary)
    metrics = unique(r["metric"] for r in predicted)
    hib: dict[str, bool] = {}
    for r in run.summary:
        if r.get("higher_is_better") is not None:
            hib.setdefault(r["metric"], bool(r["higher_is_better"]))
    methods: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in predicted:
        methods.setdefault((r["subject"], r["roi"]), [])
        if (r["model"], r["generator"]) not in methods[(r["subject"], r["roi"])]:
            methods[(r["subject"], r["roi"])].append((r["model"], r["generator"]))
    databases = unique(r.get("database") for r in run.decoding if r.get("stage") == "retrieval")
    labels_from = run.section("generation").get("labels_from")
    labels_from = labels_from if isinstance(labels_from, str) and labels_from else None
    blocks = []
    for subject, roi in keys:
        block = Block(subject=subject, roi=roi)
        if not block.is_mean:
            data = run.blocks.get((subject, roi))
            if data is not None:
                block.stems = list(data.stems)
                block.wnids = dict(data.wnids)
                block.info = dict(data.info)
            if not block.stems:  # not in summary.json: the exported ground truth
                block.stems = _ground_truth_stems(run, block)
            for model in models:
                dbs = unique(
                    r.get("database")
                    for r in run.decoding
                    if (r["subject"], r["roi"], r["model"]) == (subject, roi, model)
                    and r.get("stage") == "retrieval"
                )
                db = labels_from if labels_from in dbs else (dbs[0] if dbs else None)
                if db is not None:
                    block.label_db[model] = db
                    _load_labels(run, block, model, db)
                _load_r2(run, block, model)
                _load_fit(run, block, model)
                for gen in generators:
                    _load_shown(run, block, model, gen)
        blocks.append(block)
    return Report(
        run=run,
        blocks=blocks,
        models=models,
        generators=generators,
        metrics=metrics,
        hib=hib,
        summary=summary,
        methods=methods,
        databases=databases,
        labels_from=labels_from,
    )


# ---------------------------------------------------------------- the tables (CSV rows)
def comparison_rows(rep: Report) -> list[dict[str, Any]]:
    """``comparison.csv``: one row per block × model × generator × metric."""
    rows = []
    for block in rep.blocks:
        methods = rep.methods.get(block.key, [])
        # The best of a column, and only if it beats its own floor by the paired test.
        best = {
            metric: winners(
                {m: rep.row(block, *m, "predicted", metric) for m in methods},
                rep.hib.get(metric, True),
            )
            for metric in rep.metrics
        }
        for model, gen in methods:
            for metric in rep.metrics:
                here = rep.row(block, model, gen, "predicted", metric)
                if here is None:
                    continue
                floor = rep.row(block, model, gen, "random", metric) or {}
                ceiling = rep.row(block, model, gen, "true", metric) or {}
                rows.append(
                    {
                        "subject": block.subject,
                        "roi": block.roi,
                        "model": model,
                        "mapper": rep.run.decoder(model)[1],
                        "generator": gen,
                        "metric": metric,
                        "mean": here.get("mean"),
                        "ci_low": here.get("ci_low"),
                        "ci_high": here.get("ci_high"),
                        "n": here.get("n"),
                        "n_subjects": here.get("n_subjects"),
                        "floor": floor.get("mean"),
                        "ceiling": ceiling.get("mean"),
                        "chance": here.get("chance"),
                        "unpaired": here.get("unpaired"),
                        "higher_is_better": rep.hib.get(metric, True),
                        "floor_difference": here.get("floor_difference"),
                        "p_floor": here.get("p_floor"),
                        "best": (model, gen) in best[metric],
                    }
                )
    return rows


def paired_rows(rep: Report) -> list[dict[str, Any]]:
    """``paired.csv``: ``tables/paired`` with the better model's name and significance."""
    out = []
    for r in rep.run.paired:
        p = r.get("p_holm")
        better = {"model_a": r.get("model_a"), "model_b": r.get("model_b")}.get(
            r.get("better"), r.get("better")
        )
        out.append(
            {
                **r,
                "winner": better,
                "significant": p is not None and p < SIGNIFICANT,
            }
        )
    return out


def decoding_rows(rep: Report) -> list[dict[str, Any]]:
    """``decoding.csv``: the decoding table with the best model of each score marked."""
    rows = decoding_with_fit(rep)
    groups: dict[tuple, dict[int, float | None]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(
            (r["subject"], r["roi"], r.get("stage"), r.get("database"), r["metric"]), {}
        )[i] = r.get("value")
    directions = {m: h for cols in decoding_columns(rows).values() for m, _, h in cols}
    best: set[int] = set()
    for (_, _, _, _, metric), values in groups.items():
        best |= best_keys(values, directions.get(metric))
    return [{**r, "best": i in best} for i, r in enumerate(rows)]


def label_rows(rep: Report) -> list[dict[str, Any]]:
    """``labels.csv``: per test image and model, the true and the retrieved label."""
    rows = []
    for block in rep.subject_blocks:
        for model, labels in block.labels.items():
            for stem in block.stems:
                lab = labels.get(stem)
                if lab is None:
                    continue
                rows.append(
                    {
                        "subject": block.subject,
                        "roi": block.roi,
                        "model": model,
                        "database": block.label_db.get(model),
                        "image": stem,
                        "true_wnid": lab.true,
                        "true_name": lab.true_name,
                        "top1_wnid": lab.top1,
                        "top1_name": lab.name,
                        "hit": lab.hit,
                    }
                )
    return rows


@dataclass
class Tables:
    """The rows of the report's tables (``report/<name>.csv``)."""

    comparison: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    decoding: list[dict[str, Any]]
    labels: list[dict[str, Any]]


def tables(rep: Report) -> Tables:
    return Tables(
        comparison=comparison_rows(rep),
        paired=paired_rows(rep),
        decoding=decoding_rows(rep),
        labels=label_rows(rep),
    )


# ---------------------------------------------------------------- versions
def recorded_versions(run: RunFolder) -> dict[str, str] | None:
    """The package versions the run's evaluations recorded (``summary.json``, in the
    run folder), or None when it has none (a run without pictures, or an older one)."""
    if not run.versions:
        return None
    out = dict(run.versions)
    out.setdefault("python", platform.python_version())
    return out


def versions(run: RunFolder) -> dict[str, str]:
    """The package versions the first evaluation recorded, else those installed."""
    found = recorded_versions(run)
    if found is not None:
        return found
    return installed_versions()


def installed_versions() -> dict[str, str]:
    from fmri2image._io import package_versions

    out = {"fmri2image": __version__, "python": platform.python_version()}
    out.update({k: v for k, v in package_versions(_VERSION_PACKAGES).items() if v})
    return out
