"""One comparison over several datasets: each its own run, one table indexed by dataset.

A configuration with a ``datasets`` list (``[[datasets]]`` tables in TOML, or
``compare --datasets god=GOD_DIR deeprecon=DEEPRECON_DIR``) runs the same models,
mappers, generators and metrics on every dataset in it::

    [[datasets]]
    dataset = "god"
    path = "god/"
    subjects = [3]

    [[datasets]]
    dataset = "deeprecon"
    path = "deeprecon/"
    subjects = [1, 2]
    rois = ["ROI_VC", "ROI_hV4"]

Each entry holds ``[data]`` keys (``dataset`` and ``path`` are required; ``label``
names its folder, default the dataset's name).  An entry without ``subjects``,
``split``, ``normalization`` or ``drop_nan_voxels`` takes the ``[data]`` section's;
``rois`` and ``options`` are the dataset's own (``ROI_VC`` means nothing to THINGS),
so an entry without ``rois`` decodes the dataset's default ROIs.

Every dataset is a complete run in ``OUT/<label>/`` (its tables, pictures and
report) with its stages cached in ``CACHE/<label>/`` (each dataset's stages have
their own names); ``OUT/tables/*.csv`` are those tables stacked with a leading
``dataset`` column, and ``OUT/report.html`` has one section per dataset: what was
decoded, its comparison table, and a link to its full report.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image.errors import ConfigError, Fmri2ImageError
from fmri2image.pipeline.config import DataSection, RunConfig

__all__ = ["DatasetsResult", "dataset_configs", "run_datasets"]

#: ``[data]`` keys an entry without them takes from the ``[data]`` section.
INHERITED = ("subjects", "split", "normalization", "drop_nan_voxels")
#: The tables stacked into ``OUT/tables``.
TABLES = ("summary", "paired", "decoding", "scores")


def _label(entry: Mapping[str, Any], index: int) -> str:
    label = entry.get("label", entry.get("dataset"))
    if not isinstance(label, str) or not label.strip() or "/" in label or label.startswith("."):
        raise ConfigError(
            f"datasets[{index}]: label {label!r} must be a plain folder name (no '/')."
        )
    return label.strip()


def dataset_configs(config: RunConfig) -> list[tuple[str, RunConfig]]:
    """``(label, configuration)`` of every entry of ``config.datasets``, validated.

    Raises
    ------
    ConfigError
        An entry that is not a table, lacks ``dataset`` or ``path``, has an unknown
        key, repeats a label, fails the run's own checks, or lacks a subject's files
        (naming the entry): all before any dataset runs.
    """
    if not config.out:
        raise ConfigError("No output folder: pass --out DIR.")
    out = Path(config.out)
    cache = Path(config.cache) if config.cache else out / "cache"
    known = [f.name for f in dataclasses.fields(DataSection)]
    configs: list[tuple[str, RunConfig]] = []
    for i, entry in enumerate(config.datasets):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"datasets[{i}] must be a table (dataset = ..., path = ...).")
        missing = [k for k in ("dataset", "path") if not entry.get(k)]
        if missing:
            raise ConfigError(
                f'datasets[{i}] needs {" and ".join(missing)} (e.g. dataset = "deeprecon", '
                'path = "deeprecon/").'
            )
        unknown = sorted(set(entry) - {*known, "label"})
        if unknown:
            raise ConfigError(
                f"datasets[{i}] ({entry['dataset']}): unknown key(s) {', '.join(unknown)}; "
                f"an entry takes the [data] keys ({', '.join(known)}) and label."
            )
        label = _label(entry, i)
        if label in (lab for lab, _ in configs):
            raise ConfigError(
                f"datasets[{i}]: the label {label!r} is used twice; give each entry its own "
                'label = "...".'
            )
        values = {k: getattr(config.data, k) for k in INHERITED}
        values.update({k: v for k, v in entry.items() if k != "label"})
        for key in ("subjects", "rois"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            data = DataSection(**values)
            sub = dataclasses.replace(
                config, data=data, datasets=(), out=str(out / label), cache=str(cache / label)
            )
            sub.validate()
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"datasets[{i}] ({label}): {exc}") from exc
        configs.append((label, sub))
    if not configs:
        raise ConfigError("datasets is empty: name at least one (--datasets NAME=DIR).")
    for i, (label, sub) in enumerate(configs):  # every subject's files (reads no fMRI)
        try:
            dataset = sub.data.open()
            for subject in sub.data.subjects:
                dataset.files(subject)
        except Fmri2ImageError as exc:
            raise ConfigError(f"datasets[{i}] ({label}): {exc}") from exc
    return configs


@dataclass(frozen=True)
class DatasetsResult:
    """What :func:`run_datasets` made: one run per dataset, and the stacked tables."""

    out_dir: Path
    runs: tuple[tuple[str, Any], ...]  # (label, ExperimentResult)
    tables: dict[str, Path]
    report: Path
    seconds: float

    def format(self) -> str:
        parts = []
        for label, result in self.runs:
            d = result.config.data
            head = f"== {label}: {d.dataset} at {d.path} =="
            parts.append(f"{head}\n{result.format()}")
        return "\n\n".join(parts)

    def stage_summary(self) -> str:
        return "\n".join(f"{label}: {result.stage_summary()}" for label, result in self.runs)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        return [], []
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return (rows[0], rows[1:]) if rows else ([], [])


def stack_tables(runs: Sequence[tuple[str, Path]], folder: Path) -> dict[str, Path]:
    """``folder/<table>.csv``: each run's ``tables/<table>.csv`` with a leading
    ``dataset`` column (the runs' label)."""
    paths = {}
    for name in TABLES:
        header: list[str] = []
        rows: list[list[str]] = []
        for label, run_dir in runs:
            cols, body = _read_csv(run_dir / "tables" / f"{name}.csv")
            if not cols:
                continue
            if header and cols != header:  # the same version wrote every run
                raise ConfigError(f"{run_dir / 'tables' / name}.csv has other columns.")
            header = cols
            rows.extend([label, *r] for r in body)
        path = folder / f"{name}.csv"
        with _io.atomic_write(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["dataset", *header])
            writer.writerows(rows)
        paths[f"{name}_csv"] = path
    return paths


def _table_html(path: Path) -> str:
    cols, body = _read_csv(path)
    if not cols:
        return "<p>(no comparison table)</p>"
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def write_datasets_report(out: Path, runs: Sequence[tuple[str, Any]]) -> Path:
    """``out/report.html``: a section per dataset with its comparison table and a link
    to its own report (one self-contained page, no script)."""
    from importlib import resources

    css = (resources.files("fmri2image.pipeline.report") / "report.css").read_text("utf-8")
    esc = html.escape
    sections = []
    for label, result in runs:
        d = result.config.data
        rel = f"{label}/report.html"
        sections.append(
            f'<section id="{esc(label)}"><h2>{esc(label)}</h2>'
            f"<p>dataset <b>{esc(d.dataset)}</b> in <code>{esc(str(d.path))}</code>; subjects "
            f"{esc(', '.join(map(str, d.subjects)))}; ROIs {esc(', '.join(d.roi_list()))}; "
            f'split {esc(d.split)}. Full report: <a href="{esc(rel)}">{esc(rel)}</a>.</p>'
            f"{_table_html(result.out_dir / 'report' / 'comparison.csv')}</section>"
        )
    toc = " · ".join(f'<a href="#{esc(lab)}">{esc(lab)}</a>' for lab, _ in runs)
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>fmri2image: datasets compared</title>"
        f"<style>{css}</style></head><body><main><h1>Datasets compared</h1>"
        f"<p>The same models, mappers, generators and metrics on each dataset: {toc}. "
        "Stacked tables (a leading <code>dataset</code> column): <code>tables/</code>.</p>"
        + "".join(sections)
        + "</main></body></html>\n"
    )
    path = out / "report.html"
    with _io.atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path


def run_datasets(
    config: RunConfig, *, force: Sequence[str] = (), progress: bool = True
) -> DatasetsResult:
    """Run ``config`` on every dataset of ``config.datasets`` (see the module docstring).

    Every entry is checked before anything runs; a failure in one dataset's run stops
    the comparison with its error (the datasets before it keep their finished runs,
    reused by the next attempt).
    """
    from fmri2image.pipeline.experiment import run_experiment

    t0 = time.perf_counter()
    configs = dataset_configs(config)
    out = Path(config.out or ".")
    runs = tuple(
        (label, run_experiment(sub, force=force, progress=progress)) for label, sub in configs
    )
    tables = stack_tables([(label, r.out_dir) for label, r in runs], out / "tables")
    report = write_datasets_report(out, runs)
    _io.save_json(
        out / "summary.json",
        {
            "datasets": [
                {
                    "label": label,
                    "dataset": r.config.data.dataset,
                    "path": r.config.data.path,
                    "subjects": list(r.config.data.subjects),
                    "rois": list(r.config.data.roi_list()),
                    "out": label,
                }
                for label, r in runs
            ]
        },
    )
    config.save(out)
    return DatasetsResult(out, runs, tables, report, time.perf_counter() - t0)
