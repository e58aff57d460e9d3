"""The comparison report of a ``run`` / ``compare`` / ``demo`` output folder.

:func:`write_report` reads what a run left in its folder and nothing else: the
tables (``tables/*.parquet``), the exported pictures (``images/``) and maps
(``maps/``), ``config.toml``, and ``stages.json`` with the stage folders it lists
(for the retrieved labels and the library versions).  It writes, each atomically:

``report.html``
    One self-contained page: every picture is embedded (a small JPEG ``data:`` URI),
    the style sheet and the plots (SVG) are inline, and there is no script and no
    address outside the file, so it opens from disk, offline, in any browser.  It
    holds what was run; the comparison table (each metric's mean and 95 % interval
    beside its floor, ceiling and chance, the best value of each column marked); the
    paired tests between models; the decoding tables; plots of the metrics, of the
    per-dimension R² and of the labels' Wu–Palmer similarity, and a subject × ROI
    heat map when there are several; a picture grid per subject × ROI with the
    retrieved label of each reconstruction; and the configuration and versions.
``report.md``
    The comparison, paired and decoding tables as GitHub markdown.
``report/``
    The report's tables as CSV: ``comparison.csv``, ``paired.csv``, ``decoding.csv``
    and ``labels.csv``.

``fmri2image report RUN_DIR`` calls it; so does every ``run`` at its end.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import logging
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image import __version__
from fmri2image._io import atomic_write, load_json
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image._io import safe_name
from fmri2image._io import safe_name as safe_component

__all__ = [
    "REPORT_DIR",
    "REPORT_HTML",
    "REPORT_MD",
    "THUMBNAIL",
    "RunFolder",
    "load_run",
    "write_report",
]

log = logging.getLogger(__name__)

#: What :func:`write_report` writes into the run folder by default.
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_DIR = "report"

#: Longest side, in pixels, of the pictures embedded in the page.
THUMBNAIL = 160

#: The files that make a folder a run folder.
_REQUIRED = (
    "config.toml",
    "stages.json",
    "tables/summary.parquet",
    "tables/paired.parquet",
    "tables/decoding.parquet",
)

_MEAN = "mean"
_SIGNIFICANT = 0.05
_BEST = "★"
_SIG = "✓"

#: The decoding metrics, in table order: (stage, metric, header, higher is better).
_DECODING = {
    "prediction": (
        ("pairwise_id", "pairwise id", True),
        ("nway_top1", "n-way top-1", True),
        ("r2", "R²", True),
        ("unit_r", "unit r", True),
        ("cosine", "cosine", True),
        ("alpha_median", "median α", None),
    ),
    "retrieval": (
        ("hit1", "hit@1", True),
        ("hit5", "hit@5", True),
        ("wup", "Wu–Palmer", True),
        ("coverage", "coverage", True),
    ),
}

_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
            "#8c8c8c", "#ccb974", "#64b5cd")  # fmt: skip

#: The package versions shown when no evaluation recorded its own.
_VERSION_PACKAGES = ("numpy", "scipy", "torch", "torchvision", "scikit-learn", "scikit-image",
                     "Pillow", "pyarrow", "faiss-cpu", "transformers", "diffusers")  # fmt: skip


# ---------------------------------------------------------------- reading the run
@dataclass
class RunFolder:
    """What :func:`load_run` read from a run folder.

    Attributes
    ----------
    root : Path
    config : dict
        ``config.toml`` parsed (empty when it does not parse).
    config_text : str
        ``config.toml`` as written.
    stages : list of dict
        ``stages.json``: one record per stage (name, key, reused, seconds, folder).
    folders : dict of str to Path
        Each stage's artifact folder that could be found, by stage name.
    summary, paired, decoding : list of dict
        The rows of ``tables/<name>.parquet``.
    """

    root: Path
    config: dict[str, Any]
    config_text: str
    stages: list[dict[str, Any]]
    folders: dict[str, Path]
    summary: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    decoding: list[dict[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(str(path)).to_pylist()
    except Exception as exc:  # pyarrow raises its own error types
        raise DataFormatError(
            f"Cannot read {path} ({exc}); rerun the command that wrote the run folder "
            "to write its tables again."
        ) from exc
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
        if r.get("subject") is not None:
            r["subject"] = str(r["subject"])
    return rows


def _run_cwd(root: Path, out: Any) -> Path | None:
    """The working folder of the run, from where its ``out`` points (relative paths
    in ``stages.json`` are relative to it)."""
    if not isinstance(out, str) or not out:
        return None
    rel = Path(out)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    parts = root.resolve().parts
    n = len([p for p in rel.parts if p != "."])
    if n == 0:
        return root.resolve()
    if list(parts[-n:]) != [p for p in rel.parts if p != "."]:
        return None
    return Path(*parts[:-n])


def _stage_folder(root: Path, record: Mapping[str, Any], config: Mapping[str, Any]) -> Path | None:
    """The artifact folder of one stage record, where it still is."""
    raw = record.get("folder")
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw)
    candidates: list[Path] = []
    if path.is_absolute():
        candidates.append(path)
    else:
        run_cwd = _run_cwd(root, config.get("out"))
        if run_cwd is not None:
            candidates.append(run_cwd / path)
        candidates.append(Path.cwd() / path)
    if len(path.parts) >= 2:  # <cache>/<stage>/<key[:20]>: look in the run's own cache too
        tail = Path(*path.parts[-2:])
        cache = config.get("cache")
        if isinstance(cache, str) and cache:
            c = Path(cache)
            run_cwd = _run_cwd(root, config.get("out"))
            if c.is_absolute():
                candidates.append(c / tail)
            elif run_cwd is not None:
                candidates.append(run_cwd / c / tail)
        candidates.append(root / "cache" / tail)
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _require_run_folder(root: Path) -> None:
    """Raise ConfigError unless ``root`` holds what a run leaves (:data:`_REQUIRED`)."""
    makers = (
        "`fmri2image run`, `fmri2image compare` and `fmri2image demo` make one "
        "(the demo's is OUT/results)"
    )
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass the output folder of a run: {makers}.")
    missing = [p for p in _REQUIRED if not (root / p).is_file()]
    if missing:
        hint = ""
        for child in ("results",):
            if all((root / child / p).is_file() for p in _REQUIRED):
                hint = f" {root / child} is one: pass it instead."
        raise ConfigError(
            f"{root} is not a run folder: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing; {makers}.{hint}"
        )


def load_run(run_dir: str | os.PathLike) -> RunFolder:
    """Read a run folder (see the module docstring for what is read).

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder; the message names what is missing and the
        commands that make one.
    DataFormatError
        A table or ``stages.json`` cannot be read.
    """
    root = Path(run_dir)
    _require_run_folder(root)
    config_text = (root / "config.toml").read_text(encoding="utf-8", errors="replace")
    try:
        config = _toml().loads(config_text)
    except _toml().TOMLDecodeError as exc:
        log.warning(
            "warning: %s does not parse (%s); the report shows it as text",
            root / "config.toml",
            exc,
        )
        config = {}
    stages = load_json(root / "stages.json")
    if isinstance(stages, dict):  # TEMPORARY: the new stage record (folders under its cache)
        cache = Path(stages.get("cache") or "")
        stages = [
            {**s, "folder": str(cache / s["folder"])}
            if (cache / s["folder"]).is_dir()
            else {**s, "folder": str(root / "cache" / s["folder"])}
            for s in stages.get("stages", [])
        ]
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise DataFormatError(
            f"{root / 'stages.json'} is not a list of stage records; rerun the command "
            "that wrote the run folder."
        )
    folders = {}
    for record in stages:
        folder = _stage_folder(root, record, config)
        if folder is not None and isinstance(record.get("name"), str):
            folders[record["name"]] = folder
    return RunFolder(
        root=root,
        config=config,
        config_text=config_text,
        stages=stages,
        folders=folders,
        summary=_read_table(root / "tables" / "summary.parquet"),
        paired=_read_table(root / "tables" / "paired.parquet"),
        decoding=_read_table(root / "tables" / "decoding.parquet"),
    )


# ---------------------------------------------------------------- the report's model
def _dirname(name: str) -> str:
    from fmri2image.features.shards import store_dirname

    return store_dirname(name)


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def _subject_key(s: str) -> tuple[int, Any]:
    return (0, int(s)) if s.isdigit() else (1, s)


@dataclass
class _Label:
    top1: str
    name: str
    true: str
    true_name: str
    hit: bool


@dataclass
class _Block:
    """One subject × ROI (or the mean over subjects of one ROI)."""

    subject: str
    roi: str
    stems: list[str] = field(default_factory=list)
    wnids: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    label_db: dict[str, str] = field(default_factory=dict)  # model -> database
    labels: dict[str, dict[str, _Label]] = field(default_factory=dict)  # model -> stem -> label
    wup: dict[str, list[float]] = field(default_factory=dict)  # model -> per-image Wu–Palmer
    wup_chance: dict[str, float] = field(default_factory=dict)
    r2: dict[str, list[float]] = field(default_factory=dict)  # model -> per-dimension R²

    @property
    def is_mean(self) -> bool:
        return self.subject == _MEAN

    @property
    def title(self) -> str:
        if self.is_mean:
            return f"Mean over subjects · {self.roi}"
        return f"Subject {self.subject} · {self.roi}"

    @property
    def images(self) -> str:
        return f"s{self.subject}-{safe_component(self.roi)}"

    @property
    def anchor(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.subject}-{self.roi}")


def _name(wnid: str) -> str:
    from fmri2image.imagenet import prompt_name

    try:
        return prompt_name(wnid)
    except Exception:
        return wnid


def _load_labels(run: RunFolder, block: _Block, model: str, database: str) -> None:
    name = f"retrieval/{model}/{database}/s{block.subject}/{safe_name(block.roi)}"
    folder = run.folders.get(name)
    if folder is None:
        return
    import pyarrow.parquet as pq

    labels: dict[str, _Label] = {}
    per_query = folder / "semantic_per_query.parquet"
    rows: list[dict[str, Any]] = []
    if per_query.is_file():
        try:
            rows = pq.read_table(str(per_query)).to_pylist()
        except Exception as exc:
            log.warning("warning: cannot read %s (%s)", per_query, exc)
    if rows:
        wup = []
        chances = []
        for r in rows:
            stem = str(r.get("query"))
            true = block.wnids.get(stem) or str(r.get("true_wnid") or stem.split("_")[0])
            top1 = str(r.get("top1_wnid") or "")
            labels[stem] = _Label(
                top1=top1,
                name=str(r.get("top1_name") or _name(top1)) if top1 else "",
                true=true,
                true_name=str(r.get("true_name") or _name(true)),
                hit=bool(top1) and top1 == true,
            )
            if isinstance(r.get("wup"), float) and math.isfinite(r["wup"]):
                wup.append(r["wup"])
            if isinstance(r.get("wup_chance"), float) and math.isfinite(r["wup_chance"]):
                chances.append(r["wup_chance"])
        block.wup[model] = wup
        if chances:
            block.wup_chance[model] = sum(chances) / len(chances)
    else:
        meta_path = folder / "retrieval.json"
        try:
            top1s = list(load_json(meta_path).get("top1") or [])
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("warning: cannot read %s (%s)", meta_path, exc)
            top1s = []
        for stem, top1 in zip(block.stems, top1s):
            true = block.wnids.get(stem) or stem.split("_")[0]
            labels[stem] = _Label(str(top1), _name(str(top1)), true, _name(true), top1 == true)
    block.labels[model] = labels


def _load_r2(run: RunFolder, block: _Block, model: str) -> None:
    import pyarrow.parquet as pq

    paths = [run.root / "maps" / block.images / _dirname(model) / "prediction"]
    folder = run.folders.get(f"mapping/{model}/s{block.subject}/{safe_name(block.roi)}")
    if folder is not None:
        paths.append(folder / "prediction")
    for p in paths:
        f = p / "per_dimension.parquet"
        if f.is_file():
            try:
                col = pq.read_table(str(f), columns=["r2"]).column("r2").to_pylist()
            except Exception as exc:
                log.warning("warning: cannot read %s (%s)", f, exc)
                continue
            block.r2[model] = [v for v in col if isinstance(v, float) and math.isfinite(v)]
            return


@dataclass
class _Report:
    run: RunFolder
    blocks: list[_Block]  # subject blocks first, mean blocks last
    models: list[str]
    generators: list[str]
    metrics: list[str]
    hib: dict[str, bool]
    summary: dict[tuple, dict[str, Any]]  # (subject, roi, model, gen, cond, metric) -> row
    methods: dict[tuple[str, str], list[tuple[str, str]]]  # block -> (model, generator)
    databases: list[str]
    labels_from: str | None

    def row(self, block: _Block, model: str, gen: str, cond: str, metric: str) -> dict | None:
        return self.summary.get((block.subject, block.roi, model, gen, cond, metric))

    @property
    def subject_blocks(self) -> list[_Block]:
        return [b for b in self.blocks if not b.is_mean]


def _build(run: RunFolder) -> _Report:
    summary = {
        (r["subject"], r["roi"], r["model"], r["generator"], r["condition"], r["metric"]): r
        for r in run.summary
    }
    keys = _unique((r["subject"], r["roi"]) for r in run.summary)
    keys += [k for k in _unique((r["subject"], r["roi"]) for r in run.decoding) if k not in keys]
    keys = [k for k in keys if k[0] != _MEAN] + [k for k in keys if k[0] == _MEAN]
    predicted = [r for r in run.summary if r["condition"] == "predicted"]
    models = _unique([*(r["model"] for r in run.summary), *(r["model"] for r in run.decoding)])
    generators = _unique(r["generator"] for r in run.summary)
    metrics = _unique(r["metric"] for r in predicted)
    hib: dict[str, bool] = {}
    for r in run.summary:
        if r.get("higher_is_better") is not None:
            hib.setdefault(r["metric"], bool(r["higher_is_better"]))
    methods: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for r in predicted:
        methods.setdefault((r["subject"], r["roi"]), [])
        if (r["model"], r["generator"]) not in methods[(r["subject"], r["roi"])]:
            methods[(r["subject"], r["roi"])].append((r["model"], r["generator"]))
    databases = _unique(r.get("database") for r in run.decoding if r.get("stage") == "retrieval")
    labels_from = run.section("generation").get("labels_from")
    labels_from = labels_from if isinstance(labels_from, str) and labels_from else None
    blocks = []
    for subject, roi in keys:
        block = _Block(subject=subject, roi=roi)
        if not block.is_mean:
            data = run.folders.get(f"data/s{subject}/{safe_name(roi)}")
            meta: dict[str, Any] = {}
            if data is not None and (data / "data.json").is_file():
                try:
                    meta = load_json(data / "data.json")
                except (OSError, ValueError) as exc:
                    log.warning("warning: cannot read %s (%s)", data / "data.json", exc)
            meta = meta if isinstance(meta, dict) else {}
            block.stems = [str(s) for s in meta.get("test_stems") or ()]
            block.wnids = dict(zip(block.stems, (str(w) for w in meta.get("true_wnids") or ())))
            block.info = dict(meta.get("info") or {})
            if not block.stems:  # no data stage folder: the exported ground truth
                gt = run.root / "images" / block.images / "ground_truth"
                block.stems = sorted(p.stem for p in gt.glob("*") if p.is_file())
            for model in models:
                dbs = _unique(
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
        blocks.append(block)
    return _Report(
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


# ---------------------------------------------------------------- numbers and tables
def _num(v: Any, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(float(v), fmt)


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.1e}" if v < 0.001 else f"{v:.3f}"


def _range(values: Sequence[float]) -> str:
    texts = _unique(_num(v) for v in values)
    if len(texts) == 1:
        return texts[0]
    return f"{_num(min(values))}–{_num(max(values))}"


def _best(values: Mapping[Any, float | None], higher: bool | None) -> set[Any]:
    """The keys holding the best value (ties included); none with fewer than two values
    or when all are equal."""
    known = {k: v for k, v in values.items() if v is not None}
    if higher is None or len(known) < 2:
        return set()
    top = max(known.values()) if higher else min(known.values())
    best = {k for k, v in known.items() if math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-12)}
    return set() if len(best) == len(known) else best  # all equal: nothing stands out


def _comparison_rows(rep: _Report) -> list[dict[str, Any]]:
    """``comparison.csv``: one row per block × model × generator × metric."""
    rows = []
    for block in rep.blocks:
        methods = rep.methods.get((block.subject, block.roi), [])
        best = {
            metric: _best(
                {m: (rep.row(block, *m, "predicted", metric) or {}).get("mean") for m in methods},
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
                        "best": (model, gen) in best[metric],
                    }
                )
    return rows


def _paired_rows(rep: _Report) -> list[dict[str, Any]]:
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
                "significant": p is not None and p < _SIGNIFICANT,
            }
        )
    return out


def _decoding_table(rep: _Report) -> list[dict[str, Any]]:
    """``decoding.csv``: the decoding table with the best model of each score marked."""
    groups: dict[tuple, dict[int, float | None]] = {}
    for i, r in enumerate(rep.run.decoding):
        groups.setdefault(
            (r["subject"], r["roi"], r.get("stage"), r.get("database"), r["metric"]), {}
        )[i] = r.get("value")
    directions = {m: h for stage in _DECODING.values() for m, _, h in stage}
    best: set[int] = set()
    for (_, _, _, _, metric), values in groups.items():
        best |= _best(values, directions.get(metric))
    return [{**r, "best": i in best} for i, r in enumerate(rep.run.decoding)]


def _label_rows(rep: _Report) -> list[dict[str, Any]]:
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


_CSV_COLUMNS = {
    "comparison": ("subject", "roi", "model", "generator", "metric", "mean", "ci_low", "ci_high",
                   "n", "n_subjects", "floor", "ceiling", "chance", "unpaired",
                   "higher_is_better", "best"),
    "paired": ("subject", "roi", "generator", "metric", "model_a", "model_b", "n",
               "mean_difference", "p_value", "p_holm", "better", "winner", "significant"),
    "decoding": ("subject", "roi", "model", "stage", "database", "metric", "value", "baseline",
                 "chance", "best"),
    "labels": ("subject", "roi", "model", "database", "image", "true_wnid", "true_name",
               "top1_wnid", "top1_name", "hit"),
}  # fmt: skip


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_cell(r.get(c)) for c in columns])
    return path


# ---------------------------------------------------------------- markdown
def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return lines


def _arrow(higher: bool | None) -> str:
    return "" if higher is None else (" ↑" if higher else " ↓")


def _reference(rep: _Report, block: _Block, metric: str) -> str:
    rows = [rep.row(block, *m, "predicted", metric) for m in rep.methods.get(_bkey(block), [])]
    rows = [r for r in rows if r is not None]
    chances = [r["chance"] for r in rows if r.get("chance") is not None]
    unpaired = [r["unpaired"] for r in rows if r.get("unpaired") is not None]
    if chances:
        return f"chance {_range(chances)}"
    if unpaired:
        return f"unpaired {_range(unpaired)}"
    return "no reference"


def _bkey(block: _Block) -> tuple[str, str]:
    return (block.subject, block.roi)


def _n_images(rep: _Report, block: _Block) -> str:
    ns = _unique(r.get("n") for (s, roi, *_), r in rep.summary.items() if (s, roi) == _bkey(block))
    if block.is_mean:
        k = _unique(
            r.get("n_subjects")
            for (s, roi, *_), r in rep.summary.items()
            if (s, roi) == _bkey(block)
        )
        subjects = "/".join(str(x) for x in sorted(k)) or "?"
        return f"{subjects} subjects' means"
    if block.stems:
        return f"{len(block.stems)} images"
    return f"{'/'.join(str(n) for n in sorted(ns))} images" if ns else ""


def _md(rep: _Report, comparison: Sequence[Mapping[str, Any]]) -> str:
    run = rep.run
    by = {(r["subject"], r["roi"], r["model"], r["generator"], r["metric"]): r for r in comparison}
    out = [
        f"# fmri2image report: {run.root.name}",
        "",
        f"Models: {', '.join(rep.models)}. Generators: {', '.join(rep.generators)}. "
        f"fmri2image {__version__}.",
        "",
        "## Comparison",
        "",
        f"Each cell: the mean of the `predicted` reconstructions [95 % CI] (floor / ceiling: "
        f"the `random` and `true` conditions). {_BEST} marks the best of each column "
        "(↑ higher is better, ↓ lower).",
    ]
    for block in rep.blocks:
        methods = rep.methods.get(_bkey(block), [])
        if not methods:
            continue
        out += ["", f"### {block.title} ({_n_images(rep, block)})", ""]
        header = [
            "model",
            "generator",
            *(f"{m}{_arrow(rep.hib.get(m, True))}" for m in rep.metrics),
        ]
        rows = []
        for model, gen in methods:
            cells = [model, gen]
            for metric in rep.metrics:
                r = by.get((block.subject, block.roi, model, gen, metric))
                if r is None:
                    cells.append("n/a")
                    continue
                mean = _num(r["mean"])
                if r["best"]:
                    mean = f"**{mean}** {_BEST}"
                ci = "" if r["ci_low"] is None else f" [{_num(r['ci_low'])}, {_num(r['ci_high'])}]"
                cells.append(f"{mean}{ci} ({_num(r['floor'])} / {_num(r['ceiling'])})")
            rows.append(cells)
        rows.append(["reference", "", *(_reference(rep, block, m) for m in rep.metrics)])
        out += _md_table(header, rows, "ll" + "r" * len(rep.metrics))
    paired = _paired_rows(rep)
    if paired:
        out += [
            "",
            "## Paired tests between models",
            "",
            "Sign-flip permutation tests on the images both models reconstructed; p (Holm) is "
            f"Holm-corrected within each subject × ROI × generator × metric; {_SIG} marks "
            f"p (Holm) < {_SIGNIFICANT}.",
        ]
        for block in rep.subject_blocks:
            tests = [t for t in paired if (t["subject"], t["roi"]) == _bkey(block)]
            if not tests:
                continue
            out += ["", f"### {block.title}", ""]
            rows = []
            for t in tests:
                holm = _p(t.get("p_holm"))
                if t["significant"]:
                    holm = f"**{holm}** {_SIG}"
                rows.append([t["generator"], t["metric"], f"{t['model_a']} − {t['model_b']}",
                             _num(t.get("mean_difference"), "+.3f"), _p(t.get("p_value")), holm,
                             "=" if t.get("better") == "equal" else str(t.get("winner") or "n/a")])  # fmt: skip
            out += _md_table(
                ["generator", "metric", "a − b", "difference", "p", "p (Holm)", "better"],
                rows,
                "lllrrrl",
            )
    decoding = _decoding_table(rep)
    if decoding:
        out += ["", "## Decoding", "",
                "Each cell: the score (baseline: the training mean's; chance). "
                f"{_BEST} marks the best model."]  # fmt: skip
        for block in rep.subject_blocks:
            for stage, header, rows in _decoding_blocks(block, decoding):
                out += ["", f"### {block.title}: {stage}", ""]
                md_rows = [[*lead, *(_md_decoding_cell(c) for c in cells)] for lead, cells in rows]
                out += _md_table(header, md_rows, "l" * (len(header) - len(rows[0][1]))
                                 + "r" * len(rows[0][1]))  # fmt: skip
    return "\n".join(out) + "\n"


def _decoding_blocks(block: _Block, decoding: Sequence[Mapping[str, Any]]):
    """Per stage: (stage, header, [(leading cells, [row or None per metric])])."""
    here = [r for r in decoding if (r["subject"], r["roi"]) == _bkey(block)]
    out = []
    for stage, metrics in _DECODING.items():
        rows = [r for r in here if r.get("stage") == stage]
        if not rows:
            continue
        idx = {(r["model"], r.get("database"), r["metric"]): r for r in rows}
        if stage == "prediction":
            leads = [(m,) for m in _unique(r["model"] for r in rows)]
            keys = [(m, None) for (m,) in leads]
            header = ["model"]
        else:
            keys = []
            for db in _unique(r.get("database") for r in rows):
                keys += [
                    (m, db) for m in _unique(r["model"] for r in rows if r.get("database") == db)
                ]
            leads = [(db, m) for m, db in keys]
            header = ["database", "model"]
        header = header + [f"{title}{_arrow(h)}" for _, title, h in metrics]
        table = [
            (list(lead), [idx.get((m, db, metric)) for metric, _, _ in metrics])
            for lead, (m, db) in zip(leads, keys)
        ]
        out.append((stage, header, table))
    return out


def _decoding_value(r: Mapping[str, Any]) -> str:
    v = r.get("value")
    if r.get("metric") == "alpha_median" and v is not None:
        return f"{v:.0f}" if 1 <= abs(v) < 1e6 else f"{v:.2g}"
    return _num(v)


def _decoding_refs(r: Mapping[str, Any]) -> str:
    refs = []
    if r.get("baseline") is not None:
        refs.append(f"baseline {_num(r['baseline'])}")
    if r.get("chance") is not None:
        refs.append(f"chance {_num(r['chance'])}")
    return "; ".join(refs)


def _md_decoding_cell(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    value = _decoding_value(r)
    if r.get("best"):
        value = f"**{value}** {_BEST}"
    refs = _decoding_refs(r)
    return f"{value} ({refs})" if refs else value


# ---------------------------------------------------------------- SVG
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    t = math.ceil(lo / step - 1e-9) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return out


def _tick_text(v: float) -> str:
    return f"{v:.3g}"


def _domain(values: Iterable[float | None], *, zero: bool = True) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if zero:
        vals.append(0.0)
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    return lo - (pad if lo < 0 else 0), hi + pad


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}">{body}</svg>'
    )


def _bar_chart(
    metric: str, higher: bool | None, items: Sequence[Mapping[str, Any]], chance: float | None
) -> str:
    """Horizontal bars: the predicted mean of each method, its 95 % interval, its floor
    (▼) and ceiling (◆), the chance line (dashed) or each method's unpaired reference."""
    label_w, width, row_h, top, bottom = 150, 400, 22, 24, 26
    height = top + row_h * len(items) + bottom
    x0, x1 = label_w + 8, width - 14
    values = [chance]
    for it in items:
        values += [it.get(k) for k in ("mean", "lo", "hi", "floor", "ceiling", "unpaired")]
    lo, hi = _domain(values)

    def x(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    parts = [
        f'<text x="4" y="15" class="ct">{_e(metric)}{_e(_arrow(higher))}</text>',
    ]
    axis_y = top + row_h * len(items)
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 4}" y2="{axis_y}" '
                     'class="grid"/>')  # fmt: skip
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" class="tick" '
                     f'text-anchor="middle">{_tick_text(t)}</text>')  # fmt: skip
    base = x(0.0) if lo <= 0 <= hi else x(lo)
    for i, it in enumerate(items):
        y = top + i * row_h
        mid = y + row_h / 2
        label = str(it["label"])
        short = label if len(label) <= 24 else label[:23] + "…"
        star = f" {_BEST}" if it.get("best") else ""
        parts.append(f'<text x="{label_w}" y="{mid + 4:.1f}" text-anchor="end" class="lab">'
                     f'<title>{_e(label)}</title>{_e(short)}{star}</text>')  # fmt: skip
        mean = it.get("mean")
        if mean is not None:
            xa, xb = sorted((base, x(mean)))
            parts.append(f'<rect x="{xa:.1f}" y="{y + 4}" width="{max(xb - xa, 0.8):.1f}" '
                         f'height="{row_h - 8}" fill="{it["color"]}" opacity="0.85">'
                         f'<title>{_e(label)}: {_num(mean)}</title></rect>')  # fmt: skip
        if it.get("lo") is not None and it.get("hi") is not None:
            a, b = x(it["lo"]), x(it["hi"])
            parts.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{mid}" y2="{mid}" class="wh"/>'
                         f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{mid - 4}" y2="{mid + 4}" class="wh"/>'
                         f'<line x1="{b:.1f}" x2="{b:.1f}" y1="{mid - 4}" y2="{mid + 4}" class="wh"/>')  # fmt: skip
        if it.get("unpaired") is not None and chance is None:
            u = x(it["unpaired"])
            parts.append(f'<line x1="{u:.1f}" x2="{u:.1f}" y1="{y + 2}" y2="{y + row_h - 2}" '
                         'class="ref"/>')  # fmt: skip
        if it.get("floor") is not None:
            f = x(it["floor"])
            parts.append(f'<path d="M{f - 4:.1f},{y + 1} L{f + 4:.1f},{y + 1} L{f:.1f},{y + 8} Z" '
                         f'class="floor"><title>floor (random) {_num(it["floor"])}</title></path>')  # fmt: skip
        if it.get("ceiling") is not None:
            c = x(it["ceiling"])
            parts.append(f'<path d="M{c:.1f},{mid - 5} L{c + 5:.1f},{mid} L{c:.1f},{mid + 5} '
                         f'L{c - 5:.1f},{mid} Z" class="ceil"><title>ceiling (true) '
                         f'{_num(it["ceiling"])}</title></path>')  # fmt: skip
    if chance is not None:
        c = x(chance)
        parts.append(f'<line x1="{c:.1f}" x2="{c:.1f}" y1="{top - 6}" y2="{axis_y}" class="chance">'
                     f'<title>chance {_num(chance)}</title></line>')  # fmt: skip
    parts.append(f'<line x1="{x0}" x2="{x1}" y1="{axis_y}" y2="{axis_y}" class="axis"/>')
    return _svg(width, height, "".join(parts), f"{metric}: mean and 95 % CI per method")


def _histogram(
    values: Sequence[float],
    lo: float,
    hi: float,
    *,
    bins: int,
    color: str,
    title: str,
    marks: Sequence[tuple[float, str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """A histogram of the ``values`` within [lo, hi] (those outside are not drawn: say
    so in ``notes``, one line each); ``marks`` are (x, css class, tooltip) lines."""
    width, left, right, top = 270, 30, 12, 22
    ph = 96
    height = top + ph + 18 + 13 * len(notes) + 4
    counts = [0] * bins
    for v in values:
        if lo <= v <= hi:
            counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts) or 1
    pw = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    parts = [f'<text x="4" y="15" class="ct">{_e(title)}</text>']
    bw = pw / bins
    for i, c in enumerate(counts):
        if c:
            h = c / peak * ph
            parts.append(f'<rect x="{left + i * bw + 0.5:.1f}" y="{top + ph - h:.1f}" '
                         f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" fill="{color}">'
                         f'<title>{c}</title></rect>')  # fmt: skip
    for t in _ticks(lo, hi):
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 13}" class="tick" '
                     f'text-anchor="middle">{_tick_text(t)}</text>')  # fmt: skip
    parts.append(f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{peak}</text>'
                 f'<text x="{left - 4}" y="{top + ph}" class="tick" text-anchor="end">0</text>')  # fmt: skip
    for v, cls, tip in marks:
        if v is not None and math.isfinite(v) and lo <= v <= hi:
            xv = x(v)
            parts.append(f'<line x1="{xv:.1f}" x2="{xv:.1f}" y1="{top - 2}" y2="{top + ph}" '
                         f'class="{cls}"><title>{_e(tip)}</title></line>')  # fmt: skip
    parts.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
    )
    for i, note in enumerate(notes):
        y = top + ph + 30 + 13 * i
        parts.append(f'<text x="4" y="{y}" class="tick">{_e(note)}</text>')
    return _svg(width, height, "".join(parts), title)


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i : i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


def _heatmap(
    title: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: Mapping[tuple[str, str], float | None],
    vmin: float,
    vmax: float,
    higher: bool,
) -> str:
    cell_w, cell_h, left, top = 84, 30, 90, 40
    width = left + cell_w * len(cols) + 10
    height = top + cell_h * len(rows) + 10
    parts = [f'<text x="4" y="15" class="ct">{_e(title)}</text>']
    for j, c in enumerate(cols):
        short = c if len(c) <= 12 else c[:11] + "…"
        parts.append(f'<text x="{left + j * cell_w + cell_w / 2:.1f}" y="{top - 6}" class="lab" '
                     f'text-anchor="middle"><title>{_e(c)}</title>{_e(short)}</text>')  # fmt: skip
    for i, r in enumerate(rows):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" class="lab" '
                     f'text-anchor="end">{_e(r)}</text>')  # fmt: skip
        for j, c in enumerate(cols):
            v = values.get((r, c))
            xx = left + j * cell_w
            if v is None:
                fill, text, ink = "#eeeeee", "n/a", "#777"
            else:
                t = 0.5 if vmax <= vmin else (v - vmin) / (vmax - vmin)
                t = t if higher else 1 - t
                fill = _mix("#f2f6fb", "#08306b", 0.1 + 0.85 * t)
                text, ink = _num(v), "#fff" if t > 0.55 else "#111"
            parts.append(f'<rect x="{xx}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                         f'fill="{fill}"><title>{_e(r)}, {_e(c)}: {text}</title></rect>'
                         f'<text x="{xx + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 3:.1f}" '
                         f'class="hv" fill="{ink}" text-anchor="middle">{text}</text>')  # fmt: skip
    return _svg(width, height, "".join(parts), title)


# ---------------------------------------------------------------- pictures
def _thumbnail(path: Path, size: int) -> tuple[str, bool] | None:
    """``path`` as a JPEG ``data:`` URI at most ``size`` pixels a side, and whether it
    is tiny (shown without smoothing); None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            tiny = max(im.size) < 64
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80, optimize=True)
    except (OSError, ValueError) as exc:
        log.warning("warning: cannot read picture %s (%s)", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), tiny


def _figure(path: Path | None, size: int, stem: str, caption: str, cls: str = "") -> str:
    thumb = _thumbnail(path, size) if path is not None and path.is_file() else None
    if thumb is None:
        img = f'<div class="missing" style="width:{size}px;height:{size}px">no picture</div>'
    else:
        uri, tiny = thumb
        px = ' class="px"' if tiny else ""
        img = f'<img src="{uri}" width="{size}" height="{size}" alt="{_e(stem)}"{px}>'
    return (f'<figure class="cell {cls}" data-stem="{_e(stem)}">{img}'
            f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip


def _ground_truth(run: RunFolder, block: _Block, stem: str) -> Path | None:
    folder = run.root / "images" / block.images / "ground_truth"
    hits = sorted(folder.glob(f"{_glob_escape(stem)}.*"))
    return hits[0] if hits else None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# ---------------------------------------------------------------- HTML
_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 margin:0;color:#1d232a;background:#fafbfc}
main{max-width:1500px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 8px;border-bottom:2px solid #d8dee4;
 padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
.sub{color:#57606a;margin:0 0 14px}
nav a{margin-right:14px;color:#0b5cad;text-decoration:none}
.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:2px 16px;background:#fff;border:1px solid
 #d8dee4;border-radius:6px;padding:10px 14px;margin:10px 0}
.facts dt{color:#57606a}.facts dd{margin:0}
.scroll{overflow-x:auto;max-width:100%}
table.t{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums;margin:4px 0 6px;
 border:1px solid #d8dee4}
table.t th,table.t td{padding:3px 8px;border-bottom:1px solid #e6e9ed;text-align:right;vertical-align:top;
 white-space:nowrap}
table.t th{background:#f3f5f7;font-weight:600}
table.t th.l,table.t td.l{text-align:left}
table.t td.g{border-left:1px solid #d8dee4}
table.t tr.ref td{color:#57606a;font-size:12px;background:#fbfbfc}
.ci,.refs{color:#6e7781;font-size:12px}
.bd{color:#57606a;font-size:12px}.fl{color:#cf222e}.ce{color:#1a7f37}
.best{font-weight:700;color:#0a3069}
.sig td{background:#fff8c5}
.sigv{font-weight:700;color:#116329}
.legend{color:#57606a;font-size:12px;margin:2px 0 10px}
.charts{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
svg.chart{background:#fff;border:1px solid #d8dee4;border-radius:4px}
svg .ct{font-size:13px;font-weight:600;fill:#1d232a}
svg .lab{font-size:11px;fill:#1d232a}svg .tick{font-size:10px;fill:#6e7781}
svg .hv{font-size:11px}
svg .grid{stroke:#eef0f2;stroke-width:1}svg .axis{stroke:#8c959f;stroke-width:1}
svg .wh{stroke:#1d232a;stroke-width:1.3}
svg .floor{fill:#cf222e}svg .ceil{fill:#1a7f37}
svg .chance{stroke:#57606a;stroke-width:1.2;stroke-dasharray:4 3}
svg .ref{stroke:#57606a;stroke-width:1.5;stroke-dasharray:2 2}
svg .mean{stroke:#1d232a;stroke-width:1.5}
svg .zero{stroke:#8c959f;stroke-width:1;stroke-dasharray:3 3}
table.grid{border-collapse:collapse;background:#fff;border:1px solid #d8dee4}
table.grid th{font-size:12px;font-weight:600;padding:4px;background:#f3f5f7;max-width:170px}
table.grid td{padding:3px;vertical-align:top}
figure.cell{margin:0;width:min-content}
figure.cell img{display:block;object-fit:contain;background:#eee}
figure.cell img.px{image-rendering:pixelated}
figure.cell figcaption{font-size:11px;line-height:1.25;padding:2px 3px;max-width:160px;
 overflow-wrap:anywhere}
figure.hit figcaption{background:#dafbe1;color:#116329}
figure.miss figcaption{background:#ffebe9;color:#a40e26}
figure.gt figcaption{color:#57606a}
.missing{display:flex;align-items:center;justify-content:center;background:#eee;color:#888;font-size:11px}
details{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:8px 12px;margin:8px 0}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;padding:10px;overflow-x:auto;font-size:12px}
.note{color:#57606a;font-size:13px}
"""


def _facts(rep: _Report, now: str) -> str:
    run = rep.run
    cfg, data = run.config, run.section("data")
    gen, ev, mapping = run.section("generation"), run.section("evaluation"), run.section("mapping")
    blocks = rep.subject_blocks
    subjects = sorted(_unique(b.subject for b in blocks), key=_subject_key)
    rois = _unique(b.roi for b in blocks)
    n_images = _unique(len(b.stems) for b in blocks if b.stems)
    n_train = _unique(b.info.get("n_train") for b in blocks)
    voxels = _unique(b.info.get("n_voxels") for b in blocks)
    conditions = _unique(r["condition"] for r in run.summary)
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
        found = (f"; {len(run.stages) - len(run.folders)} stage folders not found (cache "
                 "moved or deleted): what only they hold is left out")  # fmt: skip
    mapper = mapping.get("mapper", "ridge")
    cv = mapping.get("cv")
    facts = [
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
        facts.insert(10, ("Labels from", str(gen["labels_from"])))
    return '<dl class="facts">' + "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts
    ) + "</dl>"  # fmt: skip


def _html_comparison(rep: _Report, comparison: Sequence[Mapping[str, Any]]) -> str:
    by = {(r["subject"], r["roi"], r["model"], r["generator"], r["metric"]): r for r in comparison}
    out = [
        '<p class="note">Each metric: the mean of the <b>predicted</b> reconstructions with its '
        "95 % bootstrap interval, then the <b>floor</b> (the same generator fed a random "
        "training stimulus: condition <code>random</code>) and the <b>ceiling</b> (fed the true "
        f"stimulus: <code>true</code>). {_BEST} and bold: the best method of the column "
        "(↑ higher is better, ↓ lower). The last row gives each metric's chance level or, "
        "where none exists, the unpaired reference (pictures scored against shuffled ground "
        "truth).</p>"
    ]
    for block in rep.blocks:
        methods = rep.methods.get(_bkey(block), [])
        if not methods:
            continue
        out.append(f'<h3 id="cmp-{block.anchor}">{_e(block.title)} '
                   f'<span class="sub">({_e(_n_images(rep, block))})</span></h3>')  # fmt: skip
        head = '<tr><th class="l">model</th><th class="l">generator</th>'
        for m in rep.metrics:
            what = "mean" if block.is_mean else "mean [95 % CI]"
            head += (f'<th class="g">{_e(m)}{_e(_arrow(rep.hib.get(m, True)))}<br>'
                     f'<span class="ci">{what}</span><br><span class="bd"><span class="fl">▼</span>'
                     ' floor · <span class="ce">◆</span> ceiling</span></th>')  # fmt: skip
        rows = []
        for model, gen in methods:
            cells = f'<td class="l">{_e(model)}</td><td class="l">{_e(gen)}</td>'
            for metric in rep.metrics:
                r = by.get((block.subject, block.roi, model, gen, metric))
                if r is None:
                    cells += '<td class="g">n/a</td>'
                    continue
                mean = _e(_num(r["mean"]))
                if r["best"]:
                    mean = f'<span class="best">{mean} {_BEST}</span>'
                ci = ("" if r["ci_low"] is None else
                      f' <span class="ci">[{_num(r["ci_low"])}, {_num(r["ci_high"])}]</span>')  # fmt: skip
                bounds = (f'<span class="bd"><span class="fl">▼</span> {_num(r["floor"])} · '
                          f'<span class="ce">◆</span> {_num(r["ceiling"])}</span>')  # fmt: skip
                cells += f'<td class="g">{mean}{ci}<br>{bounds}</td>'
            rows.append(f"<tr>{cells}</tr>")
        ref = '<tr class="ref"><td class="l" colspan="2">chance / unpaired reference</td>'
        for m in rep.metrics:
            ref += f'<td class="g">{_e(_reference(rep, block, m))}</td>'
        rows.append(ref + "</tr>")
        out.append(f'<div class="scroll"><table class="t">{head}</tr>'
                   f'{"".join(rows)}</table></div>')  # fmt: skip
    return "".join(out)


def _colors(rep: _Report) -> dict[str, str]:
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(rep.models)}


def _html_bars(rep: _Report, comparison: Sequence[Mapping[str, Any]]) -> str:
    colors = _colors(rep)
    by = {(r["subject"], r["roi"], r["model"], r["generator"], r["metric"]): r for r in comparison}
    out = [
        '<p class="legend">Bars: the predicted mean; whiskers: its 95 % interval; '
        '<span style="color:#cf222e">▼</span> floor (random); '
        '<span style="color:#1a7f37">◆</span> ceiling (true); dashed line: chance; dotted '
        "tick: the method's unpaired reference (where no chance exists).</p>"
    ]
    for block in rep.blocks:
        methods = rep.methods.get(_bkey(block), [])
        if not methods:
            continue
        charts = []
        for metric in rep.metrics:
            items = []
            chances = []
            for model, gen in methods:
                r = by.get((block.subject, block.roi, model, gen, metric))
                if r is None:
                    continue
                items.append({"label": f"{model} / {gen}", "mean": r["mean"], "lo": r["ci_low"],
                              "hi": r["ci_high"], "floor": r["floor"], "ceiling": r["ceiling"],
                              "unpaired": r["unpaired"], "best": r["best"],
                              "color": colors.get(model, _PALETTE[0])})  # fmt: skip
                if r["chance"] is not None:
                    chances.append(r["chance"])
            if not items:
                continue
            chance = chances[0] if chances and len(_unique(chances)) == 1 else None
            charts.append(_bar_chart(metric, rep.hib.get(metric, True), items, chance))
        out.append(f'<h3>{_e(block.title)}</h3><div class="charts">{"".join(charts)}</div>')
    return "".join(out)


def _headline(rep: _Report) -> str | None:
    """The metric of the heat maps: the first with a chance level (an identification
    score), else the first."""
    for metric in rep.metrics:
        if any(r.get("chance") is not None for k, r in rep.summary.items()
               if k[5] == metric and k[4] == "predicted"):  # fmt: skip
            return metric
    return rep.metrics[0] if rep.metrics else None


def _html_heatmaps(rep: _Report) -> str:
    metric = _headline(rep)
    if metric is None:
        return ""
    subjects = sorted(_unique(b.subject for b in rep.subject_blocks), key=_subject_key)
    if any(b.is_mean for b in rep.blocks):
        subjects.append(_MEAN)
    rois = _unique(b.roi for b in rep.subject_blocks)
    methods = _unique(m for b in rep.blocks for m in rep.methods.get(_bkey(b), []))
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
        return ""
    vmin, vmax = min(allv), max(allv)
    higher = rep.hib.get(metric, True)
    rows = [f"subject {s}" if s != _MEAN else "mean" for s in subjects]
    maps = []
    for (model, gen), vals in grids.items():
        named = {(rows[i], roi): vals[(s, roi)] for i, s in enumerate(subjects) for roi in rois}
        maps.append(_heatmap(f"{model} / {gen}", rows, rois, named, vmin, vmax, higher))
    return (
        f'<p class="note">The predicted mean of <b>{_e(metric)}</b>{_e(_arrow(higher))} per '
        f"subject and ROI; one colour scale for all maps ({_num(vmin)} to {_num(vmax)}, "
        f'darker is better).</p><div class="charts">{"".join(maps)}</div>'
    )


def _html_paired(rep: _Report) -> str:
    paired = _paired_rows(rep)
    if not paired:
        return '<p class="note">One model only: no paired tests.</p>'
    out = [
        '<p class="note">Sign-flip permutation tests between the models\' predicted '
        "reconstructions of the same images (difference: a − b). p (Holm) is Holm-corrected "
        f"within each subject × ROI × generator × metric; {_SIG} and shading: p (Holm) &lt; "
        f"{_SIGNIFICANT}. <i>better</i> takes the metric's direction into account.</p>"
    ]
    for block in rep.subject_blocks:
        tests = [t for t in paired if (t["subject"], t["roi"]) == _bkey(block)]
        if not tests:
            continue
        rows = []
        for t in tests:
            holm = _e(_p(t.get("p_holm")))
            if t["significant"]:
                holm = f'<span class="sigv">{holm} {_SIG}</span>'
            winner = "=" if t.get("better") == "equal" else str(t.get("winner") or "n/a")
            sig = ' class="sig"' if t["significant"] else ""
            rows.append(f'<tr{sig}>'
                        f'<td class="l">{_e(t["generator"])}</td><td class="l">{_e(t["metric"])}</td>'
                        f'<td class="l">{_e(t["model_a"])} − {_e(t["model_b"])}</td>'
                        f'<td>{t.get("n") if t.get("n") is not None else "n/a"}</td>'
                        f'<td>{_num(t.get("mean_difference"), "+.3f")}</td>'
                        f'<td>{_p(t.get("p_value"))}</td><td>{holm}</td>'
                        f'<td class="l">{_e(winner)}</td></tr>')  # fmt: skip
        out.append(f"<h3>{_e(block.title)}</h3><div class=\"scroll\"><table class=\"t\"><tr>"
                   '<th class="l">generator</th><th class="l">metric</th><th class="l">a − b</th>'
                   "<th>images</th><th>difference</th><th>p</th><th>p (Holm)</th>"
                   f'<th class="l">better</th></tr>{"".join(rows)}</table></div>')  # fmt: skip
    return "".join(out)


def _html_decoding(rep: _Report) -> str:
    decoding = _decoding_table(rep)
    if not decoding:
        return '<p class="note">No decoding table.</p>'
    out = [
        '<p class="note"><b>prediction</b>: how well the map predicts the test images\' '
        "embeddings (pairwise identification, n-way top-1, variance-weighted R², the mean "
        "correlation per unit, cosine; the median ridge α). <b>retrieval</b>: the labels of "
        "the nearest database entries (hit@1, hit@5, Wu–Palmer similarity to the true "
        "label, the share of test categories the database holds). Under each score: the "
        f"training mean's baseline and chance. {_BEST}: the best model.</p>"
    ]
    for block in rep.subject_blocks:
        for stage, header, rows in _decoding_blocks(block, decoding):
            n_lead = len(rows[0][0])
            head = "".join(
                f'<th class="{"l" if i < n_lead else ""}">{_e(h)}</th>'
                for i, h in enumerate(header)
            )
            body = []
            for lead, cells in rows:
                tds = "".join(f'<td class="l">{_e(x)}</td>' for x in lead)
                for r in cells:
                    if r is None:
                        tds += "<td>n/a</td>"
                        continue
                    v = _e(_decoding_value(r))
                    if r.get("best"):
                        v = f'<span class="best">{v} {_BEST}</span>'
                    refs = _decoding_refs(r)
                    tds += (
                        f"<td>{v}{f'<br><span class=refs>{_e(refs)}</span>' if refs else ''}</td>"
                    )
                body.append(f"<tr>{tds}</tr>")
            out.append(f"<h3>{_e(block.title)}: {stage}</h3><div class=\"scroll\">"
                       f'<table class="t"><tr>{head}</tr>{"".join(body)}</table></div>')  # fmt: skip
    return "".join(out)


def _html_grids(rep: _Report, size: int) -> str:
    run = rep.run
    out = [
        '<p class="note">Each row: the test image seen (ground truth, with its category), '
        "then each model × generator's reconstruction from the fMRI (condition "
        "<code>predicted</code>), captioned with the top-1 label that model retrieved "
        "(✓ green: the true category, ✗ red: another).</p>"
    ]
    for block in rep.subject_blocks:
        methods = rep.methods.get(_bkey(block), [])
        dbs = _unique(block.label_db.values())
        where = f" Labels from {', '.join(dbs)}." if dbs else ""
        missing = [m for m in _unique(m for m, _ in methods) if m not in block.labels]
        if missing:
            where += f" No retrieved labels found for {', '.join(missing)}."
        head = "<tr><th>ground truth</th>" + "".join(
            f"<th>{_e(m)}<br>{_e(g)}</th>" for m, g in methods
        )
        rows = []
        for stem in block.stems:
            true = block.wnids.get(stem) or stem.split("_")[0]
            cells = [_figure(_ground_truth(run, block, stem), size, stem,
                             f"{_e(_name(true))}<br><span class=refs>{_e(stem)}</span>", "gt")]  # fmt: skip
            for model, gen in methods:
                path = (run.root / "images" / block.images / _dirname(model) / _dirname(gen)
                        / "predicted" / f"{stem}.png")  # fmt: skip
                lab = block.labels.get(model, {}).get(stem)
                if lab is None:
                    cells.append(_figure(path, size, stem, "&nbsp;"))
                else:
                    mark = "✓" if lab.hit else "✗"
                    cap = f"{mark} {_e(lab.name or lab.top1)}"
                    cells.append(_figure(path, size, stem, cap, "hit" if lab.hit else "miss"))
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append(f'<h3 id="img-{block.anchor}">{_e(block.title)}</h3>'
                   f'<p class="note">{len(block.stems)} test images.{_e(where)}</p>'
                   f'<div class="scroll"><table class="grid">{head}</tr>{"".join(rows)}'
                   "</table></div>")  # fmt: skip
    return "".join(out)


def _html_distributions(rep: _Report) -> str:
    colors = _colors(rep)
    out = [
        '<p class="note"><b>R² per embedding dimension</b> of each model\'s map on the test '
        "images (solid: the median; dotted: 0; the axis stops at −1, the dimensions below "
        "are counted under the plot). <b>Wu–Palmer similarity</b> between each test "
        "image's retrieved top-1 label and its true category (solid: the mean; dashed: the "
        "mean chance level).</p>"
    ]
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
                charts.append(_histogram(vals, lo, hi, bins=24, color=colors.get(model, _PALETTE[0]),
                                         title=f"R² · {model}", notes=notes,
                                         marks=[(med, "mean", f"median {med:.3f}"),
                                                (0.0, "zero", "0")]))  # fmt: skip
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
            charts.append(_histogram(vals, 0.0, 1.0, bins=10, color=colors.get(model, _PALETTE[0]),
                                     title=f"Wu–Palmer · {model}", marks=marks, notes=notes))  # fmt: skip
        if charts:
            out.append(f'<h3>{_e(block.title)}</h3><div class="charts">{"".join(charts)}</div>')
    return "".join(out)


def _versions(run: RunFolder) -> dict[str, str]:
    for record in run.stages:
        name = str(record.get("name", ""))
        folder = run.folders.get(name)
        if not name.startswith("evaluation/") or folder is None:
            continue
        try:
            versions = load_json(folder / "scores.summary.json").get("protocol", {}).get("versions")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(versions, dict) and versions:
            out = {str(k): str(v) for k, v in versions.items() if v}
            out.setdefault("python", platform.python_version())
            return out
    from fmri2image._io import package_versions

    out = {"fmri2image": __version__, "python": platform.python_version()}
    out.update({k: v for k, v in package_versions(_VERSION_PACKAGES).items() if v})
    return out


def _html_setup(rep: _Report) -> str:
    run = rep.run
    versions = _versions(run)
    rows = "".join(f"<tr><td class=\"l\">{_e(k)}</td><td class=\"l\">{_e(v)}</td></tr>"
                   for k, v in versions.items())  # fmt: skip
    stages = "".join(
        f'<tr><td class="l">{_e(s.get("name"))}</td><td>{"reused" if s.get("reused") else "computed"}'
        f'</td><td>{_num(s.get("seconds"), ".1f")}</td><td class="l">{_e(s.get("reason") or "")}</td></tr>'
        for s in run.stages
    )  # fmt: skip
    return (
        "<details><summary>The resolved configuration (config.toml)</summary>"
        f"<pre>{_e(run.config_text)}</pre></details>"
        "<details><summary>Package versions</summary>"
        f'<table class="t"><tr><th class="l">package</th><th class="l">version</th></tr>{rows}'
        "</table></details>"
        f"<details><summary>Stages ({len(run.stages)})</summary>"
        '<div class="scroll"><table class="t"><tr><th class="l">stage</th><th>status</th>'
        f'<th>seconds</th><th class="l">reason</th></tr>{stages}</table></div></details>'
    )


def _html(rep: _Report, comparison: Sequence[Mapping[str, Any]], size: int) -> str:
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    sections = [
        ("comparison", "Comparison", _html_comparison(rep, comparison)),
        ("metrics", "Metrics", _html_bars(rep, comparison)),
    ]
    if len(rep.subject_blocks) > 1:
        sections.append(("heatmap", "Subjects × ROIs", _html_heatmaps(rep)))
    sections += [
        ("paired", "Paired tests between models", _html_paired(rep)),
        ("decoding", "Decoding", _html_decoding(rep)),
        ("images", "Reconstructions", _html_grids(rep, size)),
        ("distributions", "Distributions", _html_distributions(rep)),
        ("setup", "Configuration and versions", _html_setup(rep)),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(title)}</h2>{content}</section>'
                   for sid, title, content in sections)  # fmt: skip
    where = rep.run.root.resolve()
    title = f"fmri2image report: {'/'.join(where.parts[-2:]) if len(where.parts) > 2 else where}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub">{_e(", ".join(rep.models))} × {_e(", ".join(rep.generators))}</p>'
        f"<nav>{nav}</nav>{_facts(rep, now)}{body}</main></body></html>\n"
    )


# ---------------------------------------------------------------- entry point
def write_report(
    run_dir: str | os.PathLike,
    *,
    html_path: str | os.PathLike | None = None,
    thumbnail: int = THUMBNAIL,
) -> dict[str, Path]:
    """Write the report of a run folder.

    Parameters
    ----------
    run_dir : path
        The output folder of ``fmri2image run`` / ``compare`` (``demo``: ``OUT/results``).
    html_path : path, optional
        The HTML file (default ``run_dir/report.html``); it must end in ``.html``.
        The markdown goes beside it (``<name>.md``), the CSV tables into the folder
        ``<name>/`` beside it (default: ``run_dir/report.md``, ``run_dir/report/``).
    thumbnail : int, default 160
        Longest side of the embedded pictures, in pixels.

    Returns
    -------
    dict of str to Path
        ``"html"``, ``"md"``, ``"comparison_csv"``, ``"paired_csv"``,
        ``"decoding_csv"``, ``"labels_csv"``.

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder, or ``html_path`` does not end in ``.html``.

    Notes
    -----
    Only the run folder is read (see the module docstring); a stage folder that is
    gone (a deleted cache) leaves out what only it holds (the retrieved labels, the
    versions), with a note in the page.  Every file is written atomically.  When the
    report goes into the run folder, the run's writer lock is held meanwhile (a
    running ``run`` into the same folder makes this wait for nothing: it stops with
    the holder's name).
    """
    from fmri2image._lock import output_lock

    if int(thumbnail) < 16:
        raise ConfigError(f"thumbnail = {thumbnail}: use at least 16 pixels.")
    root = Path(run_dir)
    target = Path(html_path) if html_path is not None else root / REPORT_HTML
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"The report file {target} must end in .html (--out FILE.html).")
    _require_run_folder(root)
    inside = _is_inside(target, root)
    with output_lock(root, flag="RUN_DIR") if inside else nullcontext():
        rep = _build(load_run(root))
        comparison = _comparison_rows(rep)
        tables = target.parent / target.stem
        paths: dict[str, Path] = {}
        for name, rows in (
            ("comparison", comparison),
            ("paired", _paired_rows(rep)),
            ("decoding", _decoding_table(rep)),
            ("labels", _label_rows(rep)),
        ):
            paths[f"{name}_csv"] = _write_csv(tables / f"{name}.csv", _CSV_COLUMNS[name], rows)
        md_path = target.with_suffix(".md")
        with atomic_write(md_path, "w", encoding="utf-8") as fh:
            fh.write(_md(rep, comparison))
        page = _html(rep, comparison, int(thumbnail))
        with atomic_write(target, "w", encoding="utf-8") as fh:
            fh.write(page)
    return {"html": target, "md": md_path, **paths}


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
