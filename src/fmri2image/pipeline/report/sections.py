"""The report's sections as plain data, laid out from the :class:`~.model.Report`: the
comparison tables, the charts' data, the paired and decoding tables, the picture grids
and the facts of the run.  Both the page and the markdown are written from these; no
HTML here.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmri2image import __version__
from fmri2image.pipeline.report.format import arrow, value_range
from fmri2image.pipeline.report.loader import RunFolder
from fmri2image.pipeline.report.model import (
    MEAN,
    Block,
    Report,
    decoding_columns,
    label_name,
    picture_file,
    subject_key,
    unique,
)


@dataclass
class ComparisonTable:
    """One block's comparison: per method, per metric its ``comparison.csv`` row."""

    block: Block
    n_images: str  # e.g. "4 images"
    metrics: list[tuple[str, bool | None]]  # (metric, higher is better)
    rows: list[tuple[str, str, list[dict[str, Any] | None]]]  # (model, generator, cells)
    references: list[str]  # per metric: its chance level or unpaired reference


def _reference(rep: Report, block: Block, metric: str) -> str:
    rows = [rep.row(block, *m, "predicted", metric) for m in rep.methods.get(block.key, [])]
    rows = [r for r in rows if r is not None]
    chances = [r["chance"] for r in rows if r.get("chance") is not None]
    unpaired = [r["unpaired"] for r in rows if r.get("unpaired") is not None]
    if chances:
        return f"chance {value_range(chances)}"
    if unpaired:
        return f"unpaired {value_range(unpaired)}"
    return "no reference"


def _n_images(rep: Report, block: Block) -> str:
    ns = unique(r.get("n") for (s, roi, *_), r in rep.summary.items() if (s, roi) == block.key)
    if block.is_mean:
        k = unique(
            r.get("n_subjects") for (s, roi, *_), r in rep.summary.items() if (s, roi) == block.key
        )
        subjects = "/".join(str(x) for x in sorted(k)) or "?"
        return f"{subjects} subjects' means"
    if block.stems:
        return f"{len(block.stems)} images"
    return f"{'/'.join(str(n) for n in sorted(ns))} images" if ns else ""


def _by_method(comparison: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    return {
        (r["subject"], r["roi"], r["model"], r["generator"], r["metric"]): r for r in comparison
    }


def comparison_tables(
    rep: Report, comparison: Sequence[Mapping[str, Any]]
) -> list[ComparisonTable]:
    """One table per block with methods (the mean blocks last)."""
    by = _by_method(comparison)
    out = []
    for block in rep.blocks:
        methods = rep.methods.get(block.key, [])
        if not methods:
            continue
        rows = [
            (model, gen, [by.get((*block.key, model, gen, metric)) for metric in rep.metrics])
            for model, gen in methods
        ]
        out.append(
            ComparisonTable(
                block=block,
                n_images=_n_images(rep, block),
                metrics=[(m, rep.hib.get(m, True)) for m in rep.metrics],
                rows=rows,
                references=[_reference(rep, block, m) for m in rep.metrics],
            )
        )
    return out


@dataclass
class BarChart:
    """One metric of one block: an item per method (label, model, mean, lo, hi, floor,
    ceiling, unpaired, best) and the chance line when all methods share it."""

    metric: str
    higher: bool | None
    items: list[dict[str, Any]]
    chance: float | None


def bar_charts(
    rep: Report, comparison: Sequence[Mapping[str, Any]]
) -> list[tuple[Block, list[BarChart]]]:
    """Per block with methods, a bar chart per metric."""
    by = _by_method(comparison)
    out = []
    for block in rep.blocks:
        methods = rep.methods.get(block.key, [])
        if not methods:
            continue
        charts = []
        for metric in rep.metrics:
            items = []
            chances = []
            for model, gen in methods:
                r = by.get((*block.key, model, gen, metric))
                if r is None:
                    continue
                items.append({"label": f"{model} / {gen}", "model": model, "mean": r["mean"],
                              "lo": r["ci_low"], "hi": r["ci_high"], "floor": r["floor"],
                              "ceiling": r["ceiling"], "unpaired": r["unpaired"],
                              "best": r["best"]})  # fmt: skip
                if r["chance"] is not None:
                    chances.append(r["chance"])
            if not items:
                continue
            chance = chances[0] if chances and len(unique(chances)) == 1 else None
            charts.append(BarChart(metric, rep.hib.get(metric, True), items, chance))
        out.append((block, charts))
    return out


@dataclass
class Heatmaps:
    """The predicted mean of one metric per subject (row) × ROI (column), one map per
    method, on one colour scale."""

    metric: str
    higher: bool
    rows: list[str]
    cols: list[str]
    maps: list[tuple[str, dict[tuple[str, str], float | None]]]  # (title, (row, col) -> value)
    vmin: float
    vmax: float


def _headline(rep: Report) -> str | None:
    """The metric of the heat maps: the first with a chance level (an identification
    score), else the first."""
    for metric in rep.metrics:
        if any(r.get("chance") is not None for k, r in rep.summary.items()
               if k[5] == metric and k[4] == "predicted"):  # fmt: skip
            return metric
    return rep.metrics[0] if rep.metrics else None


def heatmaps(rep: Report) -> Heatmaps | None:
    """None without a metric or any value."""
    metric = _headline(rep)
    if metric is None:
        return None
    subjects = sorted(unique(b.subject for b in rep.subject_blocks), key=subject_key)
    if any(b.is_mean for b in rep.blocks):
        subjects.append(MEAN)
    rois = unique(b.roi for b in rep.subject_blocks)
    methods = unique(m for b in rep.blocks for m in rep.methods.get(b.key, []))
    grids = {}
    allv = []
    for model, gen in methods:
        vals = {}
        for s in subjects:
            for roi in rois:
                r = rep.summary.get((s, roi, model, gen, "predicted", metric))
                vals[(s, roi)] = None if r is None else r.get("mean")
        grids[(model, gen)] = vals
        allv += [v for v in vals.values() if v is not None]
    if not allv:
        return None
    rows = [f"subject {s}" if s != MEAN else "mean" for s in subjects]
    maps = []
    for (model, gen), vals in grids.items():
        named = {(rows[i], roi): vals[(s, roi)] for i, s in enumerate(subjects) for roi in rois}
        maps.append((f"{model} / {gen}", named))
    return Heatmaps(metric, rep.hib.get(metric, True), rows, rois, maps, min(allv), max(allv))


def paired_tables(
    rep: Report, paired: Sequence[Mapping[str, Any]]
) -> list[tuple[Block, list[Mapping[str, Any]]]]:
    """Per subject block, its ``paired.csv`` rows (blocks without tests left out)."""
    out = []
    for block in rep.subject_blocks:
        tests = [t for t in paired if (t["subject"], t["roi"]) == block.key]
        if tests:
            out.append((block, tests))
    return out


@dataclass
class DecodingTable:
    """One stage of one block: its header, then per row the leading cells (model; or
    database, model) and a ``decoding.csv`` row (or None) per metric."""

    block: Block
    stage: str
    header: list[str]
    rows: list[tuple[list[str], list[Mapping[str, Any] | None]]]

    @property
    def n_lead(self) -> int:
        return len(self.rows[0][0])


def decoding_tables(rep: Report, decoding: Sequence[Mapping[str, Any]]) -> list[DecodingTable]:
    out = []
    for block in rep.subject_blocks:
        here = [r for r in decoding if (r["subject"], r["roi"]) == block.key]
        for stage, metrics in decoding_columns(decoding).items():
            rows = [r for r in here if r.get("stage") == stage]
            if not rows:
                continue
            idx = {(r["model"], r.get("database"), r["metric"]): r for r in rows}
            if stage == "prediction":
                leads = [(m,) for m in unique(r["model"] for r in rows)]
                keys = [(m, None) for (m,) in leads]
                header = ["model"]
            else:
                keys = []
                for db in unique(r.get("database") for r in rows):
                    keys += [
                        (m, db) for m in unique(r["model"] for r in rows if r.get("database") == db)
                    ]
                leads = [(db, m) for m, db in keys]
                header = ["database", "model"]
            header = header + [f"{title}{arrow(h)}" for _, title, h in metrics]
            table = [
                (list(lead), [idx.get((m, db, metric)) for metric, _, _ in metrics])
                for lead, (m, db) in zip(leads, keys)
            ]
            out.append(DecodingTable(block, stage, header, table))
    return out


@dataclass
class Picture:
    """One cell of a picture grid."""

    path: Path | None
    stem: str
    kind: str  # "gt" (the ground truth), "hit", "miss", or "" (no retrieved label)
    caption: str  # the category, or the retrieved label with ✓/✗; "" when none
    detail: str = ""  # under the caption (the ground truth's stem)


@dataclass
class PictureGrid:
    """One subject block: a row per test image, the ground truth then each method."""

    block: Block
    methods: list[tuple[str, str]]
    labels_note: str  # where the labels come from, which are missing
    rows: list[list[Picture]]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _ground_truth(run: RunFolder, block: Block, stem: str) -> Path | None:
    folder = run.root / "images" / block.images / "ground_truth"
    try:
        hits = sorted(folder.glob(f"{_glob_escape(stem)}.*"))
    except (OSError, ValueError):
        return None
    return next((p for p in hits if run.inside(p) is not None), None)


def picture_grids(rep: Report) -> list[PictureGrid]:
    run = rep.run
    out = []
    for block in rep.subject_blocks:
        methods = rep.methods.get(block.key, [])
        dbs = unique(block.label_db.values())
        where = f" Retrieved labels from {', '.join(dbs)}." if dbs else ""
        missing = [m for m in unique(m for m, _ in methods) if m not in block.labels]
        if missing:
            where += f" No retrieved labels found for {', '.join(missing)}."
        rows = []
        for stem in block.stems:
            true = block.wnids.get(stem) or stem.split("_")[0]
            cells = [Picture(_ground_truth(run, block, stem), stem, "gt", label_name(true), stem)]
            for model, gen in methods:
                path = picture_file(run, block, model, gen, f"{stem}.png")
                shown = block.shown.get((model, gen), {}).get(stem)
                lab = block.labels.get(model, {}).get(stem)
                if shown is not None:
                    hit = shown == true
                    name = label_name(shown)
                elif lab is not None:
                    hit, name = lab.hit, lab.name or lab.top1
                else:
                    cells.append(Picture(path, stem, "", ""))
                    continue
                mark, kind = ("✓", "hit") if hit else ("✗", "miss")
                cells.append(Picture(path, stem, kind, f"{mark} {name}"))
            rows.append(cells)
        out.append(PictureGrid(block, methods, where, rows))
    return out


@dataclass
class Histogram:
    """The values of one model drawn within [lo, hi]; ``marks`` are (x, kind, tooltip)
    lines (kind: mean, zero, chance), ``notes`` lines under the plot."""

    model: str
    title: str
    values: list[float]
    lo: float
    hi: float
    bins: int
    marks: list[tuple[float, str, str]]
    notes: list[str]


def distributions(rep: Report) -> list[tuple[Block, list[Histogram]]]:
    """Per subject block with any: the per-dimension R² and the Wu–Palmer similarity of
    each model."""
    out = []
    for block in rep.subject_blocks:
        charts = []
        all_r2 = [v for vs in block.r2.values() for v in vs]
        if all_r2:
            lo, hi = max(-1.0, min(all_r2)), max(max(all_r2), 0.05)
            if hi - lo < 1e-9:
                lo, hi = lo - 0.5, hi + 0.5
            for model, vals in block.r2.items():
                if not vals:
                    continue
                med = sorted(vals)[len(vals) // 2]
                below = sum(v < lo for v in vals)
                pos = sum(v > 0 for v in vals) / len(vals)
                notes = [f"{len(vals)} dims · median {med:.3f} · {pos:.0%} above 0"]
                if below:
                    notes.append(f"{below} dims below {lo:.3g} (not drawn)")
                marks = [(med, "mean", f"median {med:.3f}"), (0.0, "zero", "0")]
                charts.append(Histogram(model, f"R² · {model}", vals, lo, hi, 24, marks, notes))
        for model, vals in block.wup.items():
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            chance = block.wup_chance.get(model)
            marks = [(mean, "mean", f"mean {mean:.3f}")]
            if chance is not None:
                marks.append((chance, "chance", f"chance {chance:.3f}"))
            notes = [f"{len(vals)} images · mean {mean:.3f}"
                     + (f" · chance {chance:.3f}" if chance is not None else ""),
                     f"labels from {block.label_db.get(model, '?')}"]  # fmt: skip
            charts.append(
                Histogram(model, f"Wu–Palmer · {model}", vals, 0.0, 1.0, 10, marks, notes)
            )
        if charts:
            out.append((block, charts))
    return out


def facts(rep: Report, now: str) -> list[tuple[str, str]]:
    """What was run, as (label, text) pairs; ``now``: when the report is written."""
    run = rep.run
    cfg, data = run.config, run.section("data")
    gen, ev, mapping = run.section("generation"), run.section("evaluation"), run.section("mapping")
    blocks = rep.subject_blocks
    subjects = sorted(unique(b.subject for b in blocks), key=subject_key)
    rois = unique(b.roi for b in blocks)
    n_images = unique(len(b.stems) for b in blocks if b.stems)
    n_train = unique(b.info.get("n_train") for b in blocks)
    voxels = unique(b.info.get("n_voxels") for b in blocks)
    conditions = unique(r["condition"] for r in run.summary)
    dbs = []
    for db in rep.databases:
        used = any(db in b.label_db.values() for b in blocks)
        dbs.append(f"{db} (labels)" if used and len(rep.databases) > 1 else db)
    finished = ""
    try:
        ts = (run.root / "stages.json").stat().st_mtime
        finished = _dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except OSError:
        pass
    n_reused = sum(bool(s.get("reused")) for s in run.stages)
    found = ""
    if len(run.folders) < len(run.stages):
        found = (f"; {len(run.stages) - len(run.folders)} stage folders not found in the "
                 "cache (moved or deleted)")  # fmt: skip
    mappers = mapping.get("mappers", mapping.get("mapper", "ridge"))
    mapper = ", ".join(mappers) if isinstance(mappers, list) else str(mappers)
    cv = mapping.get("cv")
    out = [
        ("Run folder", str(run.root.resolve())),
        ("Models", ", ".join(rep.models)),
        ("Generators", f"{', '.join(rep.generators)} (conditions: {', '.join(conditions)})"),
        ("Subjects", ", ".join(subjects)),
        ("ROIs", ", ".join(rois)),
        ("Split", str(data.get("split", "test"))),
        ("Test images", ", ".join(str(n) for n in n_images) or "?"),
        ("Training samples", ", ".join(str(n) for n in n_train) or "?"),
        ("Voxels", ", ".join(str(n) for n in voxels) or "?"),
        ("Databases", ", ".join(dbs) or "none"),
        ("Metrics", ", ".join(rep.metrics)),
        ("Mapping", f"{mapper}" + (f", cv = {cv}" if cv is not None else "")),
        ("Seed · bootstrap", f"{cfg.get('seed', '?')} · {ev.get('bootstrap', '?')}"),
        ("Device", str(cfg.get("device", "?"))),
        ("Stages", f"{len(run.stages)} ({n_reused} reused), finished {finished}" + found),
        ("Report", f"written {now} by fmri2image {__version__}"),
    ]
    if gen.get("labels_from"):
        out.insert(10, ("Labels from", str(gen["labels_from"])))
    return out
