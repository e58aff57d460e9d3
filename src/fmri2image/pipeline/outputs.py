"""What ``fmri2image run`` / ``compare`` leave in their output folder.

* **Tables** (:func:`write_tables`), each as CSV and parquet, in long format so that
  ``pandas.read_parquet(folder / "scores.parquet")`` is the whole table in one line:

  ``scores``
      One row per reconstruction set, image and metric (:func:`scores_long`).
  ``summary``
      One row per reconstruction set and metric: mean, bootstrap interval, chance or
      unpaired reference; plus the average over subjects (:func:`summary_rows`).
  ``paired``
      Sign-flip permutation tests between the encoders' reconstructions of the same
      images, Holm-corrected within each metric (:func:`paired_rows`).
  ``decoding``
      The decoding scores of each subject and ROI: embedding prediction and label
      retrieval, each beside its baseline and chance (:func:`decoding_rows`).

* **Images** (:func:`export_images`): the reconstructions beside the ground truth,
  hard-linked where the file system allows, under ``images/s<subject>-<roi>/``.
* **A grid** (:func:`image_grid`): ground truth on top, one row per method.
* **The printed table** (:func:`format_comparison`): every predicted score beside its
  floor (a random training stimulus's embedding) and ceiling (the true stimulus's).

Reconstructions come in three *conditions* (:data:`CONDITIONS`): ``"predicted"`` (the
method: the embedding or label decoded from fMRI), ``"true"`` (the ceiling: the true
stimulus's embedding or label through the same generator) and ``"random"`` (the
floor: a random training stimulus's).

The ``subject`` column holds an ``int`` per subject in the rows these functions
return, and the string ``"mean"`` in the rows that average over subjects
(:func:`summary_rows`).  In the files every subject value is written as a string
(``"1"``, ``"mean"``), in CSV and parquet alike, so that one column type fits both.
"""

from __future__ import annotations

import csv
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import atomic_path, atomic_write
from fmri2image.errors import ConfigError
from fmri2image.pipeline.tables import format_table

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.evaluation.evaluate import Evaluation
    from fmri2image.pipeline.decoding import DecodingResult

__all__ = [
    "CONDITIONS",
    "TABLE_COLUMNS",
    "ReconstructionScores",
    "decoding_rows",
    "export_images",
    "export_maps",
    "format_comparison",
    "holm_adjust",
    "image_grid",
    "paired_rows",
    "safe_component",
    "scores_long",
    "summary_rows",
    "write_tables",
]

#: The reconstruction conditions: the method, its ceiling and its floor.
CONDITIONS: tuple[str, ...] = ("predicted", "true", "random")

#: Subject value of the rows that average over subjects.
MEAN_SUBJECT = "mean"

_STR, _FLOAT, _INT, _BOOL = "string", "float64", "int64", "bool"

#: Column names and (parquet) types of each table :func:`write_tables` writes.
_SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "scores": (
        ("subject", _STR),
        ("roi", _STR),
        ("model", _STR),
        ("generator", _STR),
        ("condition", _STR),
        ("image", _STR),
        ("metric", _STR),
        ("value", _FLOAT),
    ),
    "summary": (
        ("subject", _STR),
        ("roi", _STR),
        ("model", _STR),
        ("generator", _STR),
        ("condition", _STR),
        ("metric", _STR),
        ("mean", _FLOAT),
        ("ci_low", _FLOAT),
        ("ci_high", _FLOAT),
        ("n", _INT),
        ("chance", _FLOAT),
        ("unpaired", _FLOAT),
        ("higher_is_better", _BOOL),
        ("n_subjects", _INT),
    ),
    "paired": (
        ("subject", _STR),
        ("roi", _STR),
        ("generator", _STR),
        ("metric", _STR),
        ("model_a", _STR),
        ("model_b", _STR),
        ("n", _INT),
        ("mean_difference", _FLOAT),
        ("p_value", _FLOAT),
        ("p_holm", _FLOAT),
        ("better", _STR),
    ),
    "decoding": (
        ("subject", _STR),
        ("roi", _STR),
        ("model", _STR),
        ("stage", _STR),
        ("database", _STR),
        ("metric", _STR),
        ("value", _FLOAT),
        ("baseline", _FLOAT),
        ("chance", _FLOAT),
    ),
}

#: Column names of each table, in file order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(col for col, _ in schema) for name, schema in _SCHEMAS.items()
}


@dataclass(frozen=True)
class ReconstructionScores:
    """One evaluated set of reconstructions.

    Attributes
    ----------
    subject : int
    roi : str
        The ROI expression the fMRI was read with (``"ROI_HVC"``).
    model : str
        Encoder name (``"effnet-lite0"``).
    generator : str
        Generator name (``"invert"``).
    condition : {"predicted", "true", "random"}
        ``"predicted"``: the method; ``"true"``: the ceiling (true stimulus embedding
        and label); ``"random"``: the floor (a random training stimulus's).
    evaluation : Evaluation
        The scores of these reconstructions (:class:`~fmri2image.evaluation.evaluate.Evaluation`).
    images : Path
        Folder holding ``<stem>.png`` of these reconstructions.

    Raises
    ------
    ConfigError
        ``condition`` is not one of :data:`CONDITIONS`.
    """

    subject: int
    roi: str
    model: str
    generator: str
    condition: str
    evaluation: Evaluation
    images: Path

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ConfigError(
                f"Unknown reconstruction condition {self.condition!r}; use one of "
                f"{', '.join(CONDITIONS)}."
            )

    @property
    def key(self) -> tuple[int, str, str, str, str]:
        """``(subject, roi, model, generator, condition)``."""
        return (self.subject, self.roi, self.model, self.generator, self.condition)


# ------------------------------------------------------------------ helpers
def _float(v: Any) -> float | None:
    """``v`` as a Python float; None for None, NaN and infinities."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _check_unique(entries: Sequence[ReconstructionScores]) -> None:
    seen: set[tuple] = set()
    for e in entries:
        if e.key in seen:
            raise ConfigError(
                f"Two reconstruction sets for subject {e.subject}, {e.roi}, {e.model}, "
                f"{e.generator}, condition {e.condition}: each must appear once."
            )
        seen.add(e.key)


def _metric_rank() -> dict[str, int]:
    from fmri2image.evaluation.base import list_metrics

    return {m.name: i for i, m in enumerate(list_metrics())}


def _metric_order(names: Iterable[str]) -> list[str]:
    """Unique ``names`` in registry order; unregistered names after, in first-seen order."""
    rank = _metric_rank()
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda n: rank.get(n, len(rank) + unique.index(n)))


def _higher_is_better(metric: str) -> bool:
    """The registry's direction of ``metric``; unknown names: higher is better."""
    from fmri2image.evaluation.base import METRICS

    if metric in METRICS:
        return bool(METRICS.get(metric).higher_is_better)
    return True


# ------------------------------------------------------------------ long tables
def scores_long(entries: Sequence[ReconstructionScores]) -> list[dict[str, Any]]:
    """Per-image scores as a long table.

    Parameters
    ----------
    entries : sequence of ReconstructionScores

    Returns
    -------
    list of dict
        One row per entry, image and metric, with keys ``subject, roi, model,
        generator, condition, image, metric, value`` (``value``: float, None for NaN).
    """
    rows = []
    for e in entries:
        ev = e.evaluation
        scores = {name: np.asarray(v, dtype=np.float64) for name, v in ev.scores.items()}
        for i, stem in enumerate(ev.stems):
            for name, values in scores.items():
                rows.append(
                    {
                        "subject": e.subject,
                        "roi": e.roi,
                        "model": e.model,
                        "generator": e.generator,
                        "condition": e.condition,
                        "image": stem,
                        "metric": name,
                        "value": _float(values[i]),
                    }
                )
    return rows


def summary_rows(entries: Sequence[ReconstructionScores]) -> list[dict[str, Any]]:
    """Each entry's metric summaries, and their average over subjects.

    Parameters
    ----------
    entries : sequence of ReconstructionScores

    Returns
    -------
    list of dict
        One row per entry and metric of ``evaluation.summary``, with keys ``subject,
        roi, model, generator, condition, metric, mean, ci_low, ci_high, n, chance,
        unpaired, higher_is_better, n_subjects`` (``n_subjects`` = 1).  When the
        entries hold more than one subject, then rows with ``subject="mean"`` (the
        string; subject rows have an ``int``) for every ``(roi, model, generator,
        condition, metric)`` that at least two subjects have: ``mean`` the mean of the
        subjects' means, ``ci_low``/``ci_high`` None, ``n`` the images of all
        subjects, ``chance`` the subjects' chance (their mean where they differ),
        ``unpaired`` the mean of the subjects' unpaired references, ``n_subjects`` the
        subjects averaged.  NaN values are None.

    Raises
    ------
    ConfigError
        The same ``(subject, roi, model, generator, condition)`` appears twice.
    """
    _check_unique(entries)
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        for name, s in e.evaluation.summary.items():
            row = {
                "subject": e.subject,
                "roi": e.roi,
                "model": e.model,
                "generator": e.generator,
                "condition": e.condition,
                "metric": name,
                "mean": _float(s.mean),
                "ci_low": _float(s.ci_low),
                "ci_high": _float(s.ci_high),
                "n": int(s.n),
                "chance": _float(s.chance),
                "unpaired": _float(s.unpaired),
                "higher_is_better": bool(s.higher_is_better),
                "n_subjects": 1,
            }
            rows.append(row)
            groups.setdefault((e.roi, e.model, e.generator, e.condition, name), []).append(row)
    if len({e.subject for e in entries}) < 2:
        return rows
    for (roi, model, generator, condition, name), members in groups.items():
        if len(members) < 2:
            continue
        means = [m["mean"] for m in members]
        chances = [m["chance"] for m in members]
        known_chances = [c for c in chances if c is not None]
        unpaired = [m["unpaired"] for m in members if m["unpaired"] is not None]
        if all(c == chances[0] for c in chances):
            chance = chances[0]
        else:
            chance = float(np.mean(known_chances)) if known_chances else None
        rows.append(
            {
                "subject": MEAN_SUBJECT,
                "roi": roi,
                "model": model,
                "generator": generator,
                "condition": condition,
                "metric": name,
                # A subject without a defined mean leaves the average undefined.
                "mean": None if None in means else _float(np.mean(means)),
                "ci_low": None,
                "ci_high": None,
                "n": sum(m["n"] for m in members),
                "chance": chance,
                "unpaired": _float(np.mean(unpaired)) if unpaired else None,
                "higher_is_better": members[0]["higher_is_better"],
                "n_subjects": len(members),
            }
        )
    return rows


def holm_adjust(p: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values.

    Parameters
    ----------
    p : sequence of float
        The p-values of one family of tests.  NaN (an undefined test) stays NaN and
        does not count in the family.

    Returns
    -------
    list of float
        In the order of ``p``: the ``k``-th smallest of ``m`` p-values becomes
        ``max_{j <= k} min(1, (m - j + 1) p_(j))``, so the adjusted values keep the
        order of the raw ones and never exceed 1.
    """
    values = np.asarray(p, dtype=np.float64).ravel()
    out = np.full(values.shape, math.nan)
    finite = np.flatnonzero(~np.isnan(values))
    m = finite.size
    if m:
        order = finite[np.argsort(values[finite], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * values[order])
        out[order] = np.maximum.accumulate(scaled)
    return [float(v) for v in out]


def paired_rows(
    entries: Sequence[ReconstructionScores], *, n_permutations: int = 10_000, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired permutation tests between the models' predicted reconstructions.

    For each ``(subject, roi, generator)`` with predicted reconstructions of at least
    two models, each metric and each unordered pair of models (first-seen order), the
    per-image scores of the images both models have (matched by stem, sorted as
    :meth:`Evaluation.compare` sorts them) go through
    :func:`~fmri2image.evaluation.stats.paired_permutation_test`.

    Parameters
    ----------
    entries : sequence of ReconstructionScores
    n_permutations : int, default 10000
    seed : int, default 0
        The same seed for every test.

    Returns
    -------
    list of dict
        Keys ``subject, roi, generator, metric, model_a, model_b, n, mean_difference
        (a - b), p_value, p_holm, better``.  ``p_holm`` is Holm-adjusted
        (:func:`holm_adjust`) within each ``(subject, roi, generator, metric)`` across
        the model pairs.  ``better`` is ``"model_a"``, ``"model_b"`` or ``"equal"`` by
        the sign of the difference and the metric's direction (unregistered metrics:
        higher is better); None where no image pair has both scores.  Pairs of models
        without an image in common give no row.

    Raises
    ------
    ConfigError
        The same ``(subject, roi, model, generator, condition)`` appears twice.
    """
    from fmri2image.evaluation.stats import paired_permutation_test

    _check_unique(entries)
    groups: dict[tuple[int, str, str], list[ReconstructionScores]] = {}
    for e in entries:
        if e.condition == "predicted":
            groups.setdefault((e.subject, e.roi, e.generator), []).append(e)
    rows: list[dict[str, Any]] = []
    for (subject, roi, generator), members in groups.items():
        if len(members) < 2:
            continue
        pairs = list(combinations(members, 2))
        metrics = _metric_order(name for e in members for name in e.evaluation.scores)
        for metric in metrics:
            family = []
            for a, b in pairs:
                if metric not in a.evaluation.scores or metric not in b.evaluation.scores:
                    continue
                a_index = {s: i for i, s in enumerate(a.evaluation.stems)}
                b_index = {s: i for i, s in enumerate(b.evaluation.stems)}
                common = sorted(set(a_index) & set(b_index))
                if not common:
                    continue
                a_scores = np.asarray(a.evaluation.scores[metric], dtype=np.float64)
                b_scores = np.asarray(b.evaluation.scores[metric], dtype=np.float64)
                test = paired_permutation_test(
                    a_scores[[a_index[s] for s in common]],
                    b_scores[[b_index[s] for s in common]],
                    n_permutations=n_permutations,
                    seed=seed,
                )
                diff = _float(test.mean_difference)
                if diff is None:
                    better = None
                elif abs(diff) <= 1e-12:  # float noise of equal scores (-5.6e-18)
                    diff, better = 0.0, "equal"
                else:
                    better = "model_a" if (diff > 0) == _higher_is_better(metric) else "model_b"
                family.append(
                    {
                        "subject": subject,
                        "roi": roi,
                        "generator": generator,
                        "metric": metric,
                        "model_a": a.model,
                        "model_b": b.model,
                        "n": int(test.n),
                        "mean_difference": diff,
                        "p_value": _float(test.p_value),
                        "p_holm": None,
                        "better": better,
                    }
                )
            adjusted = holm_adjust(
                [math.nan if r["p_value"] is None else r["p_value"] for r in family]
            )
            for row, p_holm in zip(family, adjusted):
                row["p_holm"] = _float(p_holm)
            rows += family
    return rows


#: (metric, value key, baseline key, chance key) of the prediction stage.
_PREDICTION_METRICS: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("pairwise_id", "pairwise_id", "pairwise_id_baseline", "pairwise_id_chance"),
    ("nway_top1", "nway_top1", None, "nway_chance"),
    ("r2", "r2", "r2_baseline", None),
    ("unit_r", "unit_r", None, None),
    ("cosine", "cosine", "cosine_baseline", None),
    ("alpha_median", "alpha_median", None, None),
)

#: (metric, has baseline and chance) of the retrieval stage, per database.
_RETRIEVAL_METRICS: tuple[tuple[str, bool], ...] = (
    ("hit1", True),
    ("hit5", True),
    ("wup", True),
    ("coverage", False),
)


def decoding_rows(decodings: Mapping[tuple[int, str], DecodingResult]) -> list[dict[str, Any]]:
    """The decoding scores of each subject and ROI as a long table.

    Parameters
    ----------
    decodings : mapping of (subject, roi) to DecodingResult
        Only :meth:`DecodingResult.summary_rows` is called.

    Returns
    -------
    list of dict
        Keys ``subject, roi, model, stage, database, metric, value, baseline,
        chance``.  Stage ``"prediction"`` (``database`` None): ``pairwise_id``,
        ``nway_top1``, ``r2``, ``unit_r``, ``cosine``, ``alpha_median``; stage
        ``"retrieval"``, per database: ``hit1``, ``hit5``, ``wup``, ``coverage``.
        Missing or NaN numbers are None.
    """
    rows: list[dict[str, Any]] = []
    for (subject, roi), result in decodings.items():
        for enc in result.summary_rows():
            key = {"subject": subject, "roi": roi, "model": enc["encoder"]}
            for metric, v, b, c in _PREDICTION_METRICS:
                rows.append(_decoding_row(key, "prediction", None, metric, enc, (v, b, c)))
            for ret in enc.get("retrieval") or ():
                for metric, refs in _RETRIEVAL_METRICS:
                    b, c = (f"{metric}_baseline", f"{metric}_chance") if refs else (None, None)
                    rows.append(
                        _decoding_row(
                            key, "retrieval", ret.get("database"), metric, ret, (metric, b, c)
                        )
                    )
    return rows


def _decoding_row(
    key: Mapping[str, Any],
    stage: str,
    database: str | None,
    metric: str,
    src: Mapping[str, Any],
    fields: tuple[str, str | None, str | None],
) -> dict[str, Any]:
    """One decoding row: ``fields`` name the value, baseline and chance keys of ``src``."""
    v, b, c = fields
    return {
        **key,
        "stage": stage,
        "database": database,
        "metric": metric,
        "value": _float(src.get(v)),
        "baseline": _float(src.get(b)) if b else None,
        "chance": _float(src.get(c)) if c else None,
    }


# ------------------------------------------------------------------ files
def _cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


def _file_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict]:
    """Rows restricted to ``columns``, subject as str, NaN as None."""
    out = []
    for r in rows:
        row = {c: r.get(c) for c in columns}
        if "subject" in row and row["subject"] is not None:
            row["subject"] = str(row["subject"])
        for c, v in row.items():
            if isinstance(v, (float, np.floating)) and not math.isfinite(float(v)):
                row[c] = None
        out.append(row)
    return out


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell(r[c]) for c in columns])
    return path


def _write_parquet(
    path: Path, rows: Sequence[Mapping[str, Any]], schema: Sequence[tuple[str, str]]
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {_STR: pa.string(), _FLOAT: pa.float64(), _INT: pa.int64(), _BOOL: pa.bool_()}
    arrow_schema = pa.schema([(name, types[kind]) for name, kind in schema])
    table = pa.Table.from_pydict(
        {name: [r[name] for r in rows] for name, _ in schema}, schema=arrow_schema
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, str(tmp))
    return path


def write_tables(
    folder: str | os.PathLike,
    entries: Sequence[ReconstructionScores],
    decodings: Mapping[tuple[int, str], DecodingResult],
    *,
    seed: int = 0,
    n_permutations: int = 10_000,
    summary: Sequence[Mapping[str, Any]] | None = None,
    paired: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write the scores, summary, paired and decoding tables as CSV and parquet.

    Parameters
    ----------
    folder : path
        Created if needed; gets ``{scores,summary,paired,decoding}.{csv,parquet}``.
    entries : sequence of ReconstructionScores
    decodings : mapping of (subject, roi) to DecodingResult
    seed, n_permutations : int
        Of the paired tests (:func:`paired_rows`).
    summary, paired : sequence of dict, optional
        :func:`summary_rows` / :func:`paired_rows` of ``entries`` when the caller has
        them already (the permutation tests are then not run again).

    Returns
    -------
    dict of str to Path
        ``"scores_csv"``, ``"scores_parquet"``, ``"summary_csv"``, … to the files.

    Notes
    -----
    Every file is written atomically (a temporary file renamed over the target).  The
    ``subject`` column is a string in both formats (``"1"``, ``"mean"``).  Missing
    and NaN values are empty CSV cells and parquet nulls.  An empty table is a
    header-only CSV and a parquet file with the columns and no rows.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "scores": scores_long(entries),
        "summary": summary_rows(entries) if summary is None else summary,
        "paired": paired_rows(entries, n_permutations=n_permutations, seed=seed)
        if paired is None
        else paired,
        "decoding": decoding_rows(decodings),
    }
    paths: dict[str, Path] = {}
    for name, rows in tables.items():
        schema = _SCHEMAS[name]
        clean = _file_rows(rows, TABLE_COLUMNS[name])
        paths[f"{name}_csv"] = _write_csv(folder / f"{name}.csv", clean, TABLE_COLUMNS[name])
        paths[f"{name}_parquet"] = _write_parquet(folder / f"{name}.parquet", clean, schema)
    return paths


# ------------------------------------------------------------------ images
def safe_component(roi: str) -> str:
    """``roi`` as a path component: alphanumerics, ``-``, ``_`` and ``.`` kept, others ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", roi) or "_"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where linking fails), replacing ``dst`` atomically."""
    if _same_file(src, dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(6)}.link")
    try:
        os.link(src, tmp)
    except OSError:  # another file system, or links not allowed: copy
        with atomic_path(dst) as copy:
            shutil.copyfile(src, copy)
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_images(
    folder: str | os.PathLike,
    entries: Sequence[ReconstructionScores],
    ground_truth: Mapping[tuple[int, str], Mapping[str, Path]],
) -> Path:
    """Lay the reconstructions out beside their ground truth.

    Parameters
    ----------
    folder : path
        The output folder; the images go under ``folder/images``.
    entries : sequence of ReconstructionScores
    ground_truth : mapping of (subject, roi) to mapping of stem to image path

    Returns
    -------
    Path
        ``folder/images``, holding per subject and ROI ``s<subject>-<roi>/ground_truth/
        <stem><suffix>`` (the ground truth's own suffix) and
        ``s<subject>-<roi>/<model>/<generator>/<condition>/<stem>.png``.

    Notes
    -----
    Only the stems of each entry's evaluation are exported, and of those only the ones
    whose PNG exists in ``entry.images`` (reconstructions) or that ``ground_truth``
    names (ground truth).  The ROI becomes a path component with every character
    other than alphanumerics, ``-``, ``_`` and ``.`` replaced by ``_``; model and
    generator names go through :func:`~fmri2image.features.shards.store_dirname`
    (``hf:org/model`` -> ``hf_org_model``).  Files are hard links to the originals
    where the file system allows, copies otherwise; an existing file is replaced
    atomically.  Files from earlier exports that are not part of this one are left
    in place.
    """
    from fmri2image.features.shards import store_dirname

    root = Path(folder) / "images"
    root.mkdir(parents=True, exist_ok=True)
    gt_stems: dict[tuple[int, str], dict[str, None]] = {}
    for e in entries:
        base = root / f"s{e.subject}-{safe_component(e.roi)}"
        target = base / store_dirname(e.model) / store_dirname(e.generator) / e.condition
        for stem in e.evaluation.stems:
            src = Path(e.images) / f"{stem}.png"
            if src.is_file():
                _place(src, target / f"{stem}.png")
            gt_stems.setdefault((e.subject, e.roi), {})[stem] = None
    for (subject, roi), stems in gt_stems.items():
        images = ground_truth.get((subject, roi)) or {}
        target = root / f"s{subject}-{safe_component(roi)}" / "ground_truth"
        for stem in stems:
            src = images.get(stem)
            if src is not None and Path(src).is_file():
                _place(Path(src), target / f"{stem}{Path(src).suffix}")
    return root


_GREY = (128, 128, 128)
_PAD = 6


def export_maps(folder: str | os.PathLike, maps: Mapping[tuple[int, str, str], Path]) -> Path:
    """Lay the fitted maps out by subject, ROI and model.

    ``maps`` gives the artifact folder of each (subject, roi, model) mapping stage;
    every file under it is placed (hard link, else copy) in
    ``folder/maps/s<subject>-<roi>/<model>/`` with the same relative path: the
    fitted model (``mapping/``, readable with :func:`fmri2image.mapping.load_mapping`),
    the predicted embeddings, the prediction metrics and ``fit.json``.  The stage's
    own manifest is left out.  Returns ``folder/maps``.
    """
    from fmri2image.features.shards import store_dirname
    from fmri2image.pipeline.graph import MANIFEST

    root = Path(folder) / "maps"
    for (subject, roi, model), src in maps.items():
        dst = root / f"s{subject}-{safe_component(roi)}" / store_dirname(model)
        for path in sorted(Path(src).rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                _place(path, dst / path.relative_to(src))
    return root


def image_grid(
    path: str | os.PathLike,
    ground_truth: Mapping[str, Path],
    rows: Sequence[tuple[str, Path]],
    stems: Sequence[str],
    *,
    size: int = 128,
    max_images: int = 10,
) -> Path:
    """One PNG: the ground truth on top, then one row of reconstructions per method.

    Parameters
    ----------
    path : path
        The PNG to write (atomically).
    ground_truth : mapping of stem to image path
    rows : sequence of (label, folder)
        Each folder holds ``<stem>.png``; the label is drawn in the left margin.
    stems : sequence of str
        The columns, in order; at most ``max_images`` are shown.
    size : int, default 128
        Side of each (square) cell in pixels.
    max_images : int, default 10

    Returns
    -------
    Path
        ``path``: an image ``margin + n * size`` wide and ``(1 + len(rows)) * size``
        high, where the margin fits the widest label (PIL's default font) and
        ``n = min(len(stems), max_images)``.  Missing or unreadable images are grey
        cells.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    stems = list(stems)[: max(0, max_images)]
    font = ImageFont.load_default()
    labels = ["ground truth", *(label for label, _ in rows)]
    widths = [font.getbbox(label)[2] for label in labels]
    margin = int(max(widths)) + 2 * _PAD
    n_rows = 1 + len(rows)
    grid = Image.new("RGB", (margin + len(stems) * size, n_rows * size), "white")
    draw = ImageDraw.Draw(grid)
    sources = [
        [ground_truth.get(s) for s in stems],
        *([Path(folder) / f"{s}.png" for s in stems] for _, folder in rows),
    ]
    for r, (label, files) in enumerate(zip(labels, sources)):
        top = r * size
        _, t, _, bottom = font.getbbox(label)
        draw.text((_PAD, top + (size - (bottom - t)) // 2 - t), label, fill="black", font=font)
        for c, file in enumerate(files):
            cell = None
            if file is not None:
                try:
                    with Image.open(file) as im:
                        cell = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                except OSError:  # missing or unreadable: a grey cell
                    cell = None
            if cell is None:
                cell = Image.new("RGB", (size, size), _GREY)
            grid.paste(cell, (margin + c * size, top))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path


# ------------------------------------------------------------------ the printed table
def _num(v: Any, fmt: str = ".3f") -> str:
    v = None if v is None else _float(v)
    return "n/a" if v is None else format(v, fmt)


def _p(v: Any) -> str:
    v = None if v is None else _float(v)
    if v is None:
        return "n/a"
    return f"{v:.1e}" if v < 0.001 else f"{v:.3f}"


def _range(values: Sequence[float]) -> str:
    texts = list(dict.fromkeys(_num(v) for v in values))
    if len(texts) == 1:
        return texts[0]
    return f"{_num(min(values))}–{_num(max(values))}"


def _block_title(subject: Any, roi: str, rows: Sequence[Mapping[str, Any]]) -> str:
    ns = [int(r["n"]) for r in rows if r.get("n") is not None]
    images = "?" if not ns else (str(ns[0]) if min(ns) == max(ns) else f"{min(ns)}–{max(ns)}")
    if str(subject) == MEAN_SUBJECT:
        subjects = {int(r["n_subjects"]) for r in rows if r.get("n_subjects") is not None}
        k = "/".join(str(s) for s in sorted(subjects)) or "?"
        who = f"mean of {k} subjects"
        over = f"subjects' means; {images} images in all"
    else:
        who = f"subject {subject}"
        over = f"{images} images"
    return (
        f"Reconstructions: {who}, {roi} (mean over {over}; "
        "[floor: random training stimulus, ceiling: true stimulus])"
    )


def format_comparison(
    summary: Sequence[Mapping[str, Any]], paired: Sequence[Mapping[str, Any]]
) -> str:
    """The comparison the ``run`` / ``compare`` commands print.

    Parameters
    ----------
    summary : sequence of dict
        :func:`summary_rows`.
    paired : sequence of dict
        :func:`paired_rows`.

    Returns
    -------
    str
        One block per ``(subject, roi)`` in order of appearance, the average over
        subjects last: per ``(model, generator)`` of the predicted reconstructions, each
        metric's mean as ``"mean [floor, ceiling]"`` (floor: condition ``"random"``,
        ceiling: condition ``"true"``; ``n/a`` where absent), then each metric's chance
        or unpaired reference and direction, then the paired tests between models of
        that subject and ROI, if any.
    """
    by_key: dict[tuple, Mapping[str, Any]] = {}
    blocks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    shown: dict[tuple[str, str], Any] = {}
    for r in summary:
        block = (str(r["subject"]), r["roi"])
        blocks.setdefault(block, []).append(r)
        shown.setdefault(block, r["subject"])
        by_key[(*block, r["model"], r["generator"], r["condition"], r["metric"])] = r
    order = [b for b in blocks if b[0] != MEAN_SUBJECT] + [
        b for b in blocks if b[0] == MEAN_SUBJECT
    ]
    out: list[str] = []
    for block in order:
        rows = blocks[block]
        predicted = [r for r in rows if r["condition"] == "predicted"]
        if not predicted:
            continue
        metrics = _metric_order(r["metric"] for r in predicted)
        methods = list(dict.fromkeys((r["model"], r["generator"]) for r in predicted))
        table_rows = []
        for model, generator in methods:
            cells = [model, generator]
            for metric in metrics:
                here = by_key.get((*block, model, generator, "predicted", metric))
                if here is None:
                    cells.append("n/a")
                    continue
                floor = by_key.get((*block, model, generator, "random", metric))
                ceiling = by_key.get((*block, model, generator, "true", metric))
                cells.append(
                    f"{_num(here['mean'])} [{_num(floor and floor['mean'])}, "
                    f"{_num(ceiling and ceiling['mean'])}]"
                )
            table_rows.append(cells)
        if out:
            out.append("")
        out.append(_block_title(shown[block], block[1], predicted))
        out += format_table(
            ["model", "generator", *metrics], table_rows, align="ll" + "r" * len(metrics)
        )
        refs = []
        for metric in metrics:
            these = [r for r in predicted if r["metric"] == metric]
            chances = [r["chance"] for r in these if r.get("chance") is not None]
            unpaired = [r["unpaired"] for r in these if r.get("unpaired") is not None]
            if chances:
                ref = f"chance {_range(chances)}"
            elif unpaired:
                ref = f"unpaired {_range(unpaired)}"
            else:
                ref = "no reference"
            hib = these[0].get("higher_is_better")
            if hib is None:
                hib = _higher_is_better(metric)
            direction = "higher" if hib in (True, "True", "true") else "lower"
            refs.append(f"{metric} {ref}, {direction} is better")
        out.append("Reference: " + "; ".join(refs))
        tests = [t for t in paired if str(t["subject"]) == block[0] and t["roi"] == block[1]]
        if tests:
            out += [
                "",
                "Paired tests between models (sign-flip permutation, Holm-corrected within "
                "each metric):",
            ]
            test_rows = []
            for t in tests:
                better = t.get("better")
                winner = {"model_a": t["model_a"], "model_b": t["model_b"], "equal": "="}.get(
                    better, "n/a"
                )
                test_rows.append(
                    [
                        t["generator"],
                        t["metric"],
                        f"{t['model_a']} − {t['model_b']}",
                        _num(t.get("mean_difference"), "+.3f"),
                        _p(t.get("p_value")),
                        _p(t.get("p_holm")),
                        winner,
                    ]
                )
            out += format_table(
                ["generator", "metric", "a − b", "difference", "p", "p (Holm)", "better"],
                test_rows,
                align="lllrrrl",
            )
    return "\n".join(out)
