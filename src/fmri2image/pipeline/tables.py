"""Every table a run writes and prints, from one place.

Metric names and directions come from the metric registry
(:data:`fmri2image.evaluation.METRICS`), so a registered metric (a plugin's
included) appears in every table, ranked the right way, with no change here.

* **Long tables** (:func:`write_tables`), each as CSV and parquet, so that
  ``pandas.read_parquet(folder / "scores.parquet")`` is the whole table in one line:

  ``scores``
      One row per reconstruction set, image and metric (:func:`scores_long`).
  ``summary``
      One row per reconstruction set and metric: mean, bootstrap interval, chance or
      unpaired reference; plus the average over subjects (:func:`summary_rows`).
  ``paired``
      Sign-flip permutation tests between the models' reconstructions of the same
      images, Holm-corrected within each metric (:func:`paired_rows`).
  ``decoding``
      The decoding scores of each subject and ROI: every embedding metric of the
      prediction and every label metric of each retrieval, beside its baseline
      and chance (:func:`decoding_rows`).

* **summary.json** (:func:`decoding_summary`): one machine-readable row per subject,
  ROI and encoder (what ``decode`` promised its users).
* **Printed tables**: :func:`decoding_tables`, :func:`labels_table`,
  :func:`format_comparison` (each predicted score beside its floor and ceiling).

Reconstructions come in three *conditions* (:data:`CONDITIONS`): ``"predicted"`` (the
method), ``"true"`` (the ceiling: the true stimulus's embedding or label through the
same generator) and ``"random"`` (the floor: a random training stimulus's).

The ``subject`` column holds an ``int`` per subject in the rows these functions
return, and the string ``"mean"`` in the rows that average over subjects.  In the
files every subject value is written as a string (``"1"``, ``"mean"``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import atomic_path, atomic_write
from fmri2image.errors import ConfigError
from fmri2image.pipeline.config import CONDITIONS

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.evaluation.evaluate import Evaluation

__all__ = [
    "BEST_MARK",
    "CONDITIONS",
    "FLOOR_ALPHA",
    "MEAN_SUBJECT",
    "TABLE_COLUMNS",
    "Decoding",
    "ModelDecoding",
    "ReconstructionScores",
    "beats_floor",
    "best_keys",
    "decoding_rows",
    "decoding_summary",
    "decoding_tables",
    "floor_tests",
    "format_comparison",
    "format_table",
    "labels_table",
    "num",
    "p_text",
    "paired_rows",
    "scores_long",
    "summary_rows",
    "value_range",
    "winners",
    "write_csv",
    "write_tables",
]

#: Subject value of the rows that average over subjects.
MEAN_SUBJECT = "mean"

_STR, _FLOAT, _INT, _BOOL = "string", "float64", "int64", "bool"

#: Column names and (parquet) types of each table :func:`write_tables` writes.
_SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "scores": (
        ("subject", _STR), ("roi", _STR), ("model", _STR), ("mapper", _STR),
        ("generator", _STR), ("condition", _STR), ("image", _STR), ("metric", _STR),
        ("value", _FLOAT),
    ),
    "summary": (
        ("subject", _STR), ("roi", _STR), ("model", _STR), ("mapper", _STR),
        ("generator", _STR), ("condition", _STR), ("metric", _STR), ("mean", _FLOAT),
        ("ci_low", _FLOAT),
        ("ci_high", _FLOAT), ("n", _INT), ("chance", _FLOAT), ("unpaired", _FLOAT),
        ("higher_is_better", _BOOL), ("n_subjects", _INT), ("floor_difference", _FLOAT),
        ("p_floor", _FLOAT),
    ),
    "paired": (
        ("subject", _STR), ("roi", _STR), ("generator", _STR), ("metric", _STR),
        ("model_a", _STR), ("mapper_a", _STR), ("model_b", _STR), ("mapper_b", _STR),
        ("n", _INT), ("mean_difference", _FLOAT),
        ("p_value", _FLOAT), ("p_holm", _FLOAT), ("better", _STR),
    ),
    "decoding": (
        ("subject", _STR), ("roi", _STR), ("model", _STR), ("mapper", _STR),
        ("stage", _STR), ("database", _STR), ("metric", _STR), ("value", _FLOAT), ("baseline", _FLOAT),
        ("chance", _FLOAT), ("higher_is_better", _BOOL),
    ),
}  # fmt: skip

#: Column names of each table, in file order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(col for col, _ in schema) for name, schema in _SCHEMAS.items()
}


# ------------------------------------------------------------------ formatting
def num(v: Any, fmt: str = ".3f") -> str:
    """A number as text; ``n/a`` for None, NaN and infinities."""
    v = _float(v)
    return "n/a" if v is None else format(v, fmt)


def p_text(v: Any) -> str:
    """A p-value as text (scientific below 0.001)."""
    v = _float(v)
    if v is None:
        return "n/a"
    return f"{v:.1e}" if v < 0.001 else f"{v:.3f}"


def value_range(values: Sequence[float]) -> str:
    """One value, or ``lo–hi`` when they differ at the shown precision."""
    texts = list(dict.fromkeys(num(v) for v in values))
    if len(texts) == 1:
        return texts[0]
    return f"{num(min(values))}–{num(max(values))}"


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None
) -> list[str]:
    """Lines of a table whose columns line up.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of sequences of str
        Cells, already formatted.
    align : str, optional
        One character per column, ``"l"`` or ``"r"``; default: first column left,
        the others right.
    """
    n = len(header)
    align = align or "l" + "r" * (n - 1)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if a == "l" else str(c).rjust(w)
            for c, w, a in zip(cells, widths, align)
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), "-" * len(line(["-" * w for w in widths]))]
    out += [line(r) for r in rows]
    return out


def _float(v: Any) -> float | None:
    """``v`` as a Python float; None for None, NaN and infinities."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ------------------------------------------------------------------ the registry
def _metric_rank() -> dict[str, int]:
    from fmri2image.evaluation.base import list_metrics

    return {m.name: i for i, m in enumerate(list_metrics())}


def metric_order(names: Iterable[str]) -> list[str]:
    """Unique ``names`` in registry order; unregistered names after, in first-seen order."""
    rank = _metric_rank()
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda n: rank.get(n, len(rank) + unique.index(n)))


def higher_is_better(metric: str) -> bool | None:
    """The registry's direction of ``metric``; None for a name it does not know."""
    from fmri2image.evaluation.base import METRICS

    return bool(METRICS.get(metric).higher_is_better) if metric in METRICS else None


# ------------------------------------------------------------------ reconstructions
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
    evaluation : Evaluation
        The scores of these reconstructions.
    images : Path
        Folder holding ``<stem>.png`` of these reconstructions.
    mapper : str
        The mapping model whose predictions they were made from (``"ridge"``).

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
    mapper: str = "ridge"

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ConfigError(
                f"Unknown reconstruction condition {self.condition!r}; use one of "
                f"{', '.join(CONDITIONS)}."
            )

    @property
    def key(self) -> tuple[int, str, str, str, str, str]:
        """``(subject, roi, model, mapper, generator, condition)``."""
        return (self.subject, self.roi, self.model, self.mapper, self.generator, self.condition)

    @property
    def method(self) -> tuple[str, str, str]:
        """``(model, mapper, generator)``: what made the pictures."""
        return (self.model, self.mapper, self.generator)


def _check_unique(entries: Sequence[ReconstructionScores]) -> None:
    seen: set[tuple] = set()
    for e in entries:
        if e.key in seen:
            raise ConfigError(
                f"Two reconstruction sets for subject {e.subject}, {e.roi}, {e.model}, "
                f"{e.mapper}, {e.generator}, condition {e.condition}: each must appear once."
            )
        seen.add(e.key)


def scores_long(entries: Sequence[ReconstructionScores]) -> list[dict[str, Any]]:
    """Per-image scores as a long table: one row per entry, image and metric, with keys
    ``subject, roi, model, mapper, generator, condition, image, metric, value`` (``value``:
    float, None for NaN)."""
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
                        "mapper": e.mapper,
                        "generator": e.generator,
                        "condition": e.condition,
                        "image": stem,
                        "metric": name,
                        "value": _float(values[i]),
                    }
                )
    return rows


def summary_rows(
    entries: Sequence[ReconstructionScores], *, n_permutations: int = 10_000, seed: int = 0
) -> list[dict[str, Any]]:
    """Each entry's metric summaries, their test against the floor, and their average
    over subjects.

    Returns
    -------
    list of dict
        One row per entry and metric of ``evaluation.summary``, with keys ``subject,
        roi, model, mapper, generator, condition, metric, mean, ci_low, ci_high, n, chance,
        unpaired, higher_is_better, n_subjects, floor_difference, p_floor``
        (``n_subjects`` = 1).  ``floor_difference`` and ``p_floor`` (``predicted``
        rows of a method that has ``random`` pictures too): the mean per-image
        difference from the floor (predicted − random, on the images both have) and
        the one-sided sign-flip permutation p-value that the method beats its floor
        (:func:`floor_tests`), Holm-corrected within each subject × ROI × metric
        across the methods.  When the
        entries hold more than one subject, then rows with ``subject="mean"`` for
        every ``(roi, model, mapper, generator, condition, metric)`` that at least two
        subjects have: ``mean`` the mean of the subjects' means, ``ci_low`` /
        ``ci_high`` None, ``n`` the images of all subjects, ``chance`` the subjects'
        chance (their mean where they differ), ``unpaired`` the mean of the subjects'
        unpaired references, ``n_subjects`` the subjects averaged.  NaN is None.

    Raises
    ------
    ConfigError
        The same ``(subject, roi, model, mapper, generator, condition)`` appears twice.
    """
    _check_unique(entries)
    floors = floor_tests(entries, n_permutations=n_permutations, seed=seed)
    rows: list[dict[str, Any]] = []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for e in entries:
        for name, s in e.evaluation.summary.items():
            row = {
                "subject": e.subject,
                "roi": e.roi,
                "model": e.model,
                "mapper": e.mapper,
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
                **floors.get((e.key, name), {"floor_difference": None, "p_floor": None}),
            }
            rows.append(row)
            groups.setdefault((e.roi, *e.method, e.condition, name), []).append(row)
    if len({e.subject for e in entries}) < 2:
        return rows
    for (roi, model, mapper, generator, condition, name), members in groups.items():
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
                "mapper": mapper,
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
                "floor_difference": None,
                "p_floor": None,
            }
        )
    return rows


def _paired_scores(
    a: ReconstructionScores, b: ReconstructionScores, metric: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """The per-image scores of ``metric`` of two sets on the images both have (by
    stem, sorted); None when there are none."""
    if metric not in a.evaluation.scores or metric not in b.evaluation.scores:
        return None
    a_index = {s: i for i, s in enumerate(a.evaluation.stems)}
    b_index = {s: i for i, s in enumerate(b.evaluation.stems)}
    common = sorted(set(a_index) & set(b_index))
    if not common:
        return None
    a_scores = np.asarray(a.evaluation.scores[metric], dtype=np.float64)
    b_scores = np.asarray(b.evaluation.scores[metric], dtype=np.float64)
    return a_scores[[a_index[s] for s in common]], b_scores[[b_index[s] for s in common]]


def floor_tests(
    entries: Sequence[ReconstructionScores], *, n_permutations: int = 10_000, seed: int = 0
) -> dict[tuple[tuple, str], dict[str, float | None]]:
    """Does each method's ``predicted`` set beat its own floor (its ``random`` set)?

    Per ``predicted`` entry with a ``random`` entry of the same subject, ROI, model,
    mapper and generator, and per metric both have: the one-sided sign-flip
    permutation test (:func:`~fmri2image.evaluation.stats.paired_permutation_test`)
    that the predicted pictures score better than the floor's on the same images
    (higher or lower by the metric's direction), Holm-corrected within each subject ×
    ROI × metric across the methods.  A method that wins a column only by a
    difference the images cannot tell from its floor is no winner: the report and
    the printed comparison mark the best of a column only where ``p_floor`` < 0.05.

    Returns
    -------
    dict
        ``(entry.key, metric)`` -> ``{"floor_difference": mean(predicted - floor),
        "p_floor": Holm-adjusted p}`` (None where undefined).
    """
    from fmri2image.evaluation.stats import holm_adjust, paired_permutation_test

    by_key = {e.key: e for e in entries}
    families: dict[tuple[int, str, str], list[tuple[tuple, float | None, float]]] = {}
    for e in entries:
        if e.condition != "predicted":
            continue
        floor = by_key.get((e.subject, e.roi, *e.method, "random"))
        if floor is None:
            continue
        for metric in metric_order(e.evaluation.scores):
            pair = _paired_scores(e, floor, metric)
            if pair is None:
                continue
            hib = higher_is_better(metric) is not False
            test = paired_permutation_test(
                *pair, n_permutations=n_permutations, seed=seed,
                alternative="greater" if hib else "less",
            )  # fmt: skip
            p = _float(test.p_value)
            families.setdefault((e.subject, e.roi, metric), []).append(
                (e.key, _float(test.mean_difference), math.nan if p is None else p)
            )
    out: dict[tuple[tuple, str], dict[str, float | None]] = {}
    for (_, _, metric), family in families.items():
        adjusted = holm_adjust([p for _, _, p in family])
        for (key, diff, _), p_holm in zip(family, adjusted):
            out[(key, metric)] = {"floor_difference": diff, "p_floor": _float(p_holm)}
    return out


#: Below this (Holm-corrected) p-value a method beats its floor and may be marked best.
FLOOR_ALPHA = 0.05


def beats_floor(row: Mapping[str, Any]) -> bool:
    """Whether a ``summary`` row's method beats its floor by the paired test."""
    p = _float(row.get("p_floor"))
    return p is not None and p < FLOOR_ALPHA


def paired_rows(
    entries: Sequence[ReconstructionScores], *, n_permutations: int = 10_000, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired permutation tests between the decoders' predicted reconstructions.

    A decoder is a model × mapper.  For each ``(subject, roi, generator)`` with
    predicted reconstructions of at least two decoders, each metric and each unordered
    pair of decoders (first-seen order) whose pictures are not the same files (a
    generator that reads neither the model nor the mapper, such as ``lowlevel``,
    gives every decoder the same pictures: nothing to test), the
    per-image scores of the images both models have (matched by stem, sorted) go
    through :func:`~fmri2image.evaluation.stats.paired_permutation_test`.

    Returns
    -------
    list of dict
        Keys ``subject, roi, generator, metric, model_a, mapper_a, model_b, mapper_b, n,
        mean_difference
        (a - b), p_value, p_holm, better``.  ``p_holm`` is Holm-adjusted
        (:func:`~fmri2image.evaluation.stats.holm_adjust`) within each ``(subject,
        roi, generator, metric)`` across the decoder pairs.  ``better`` is
        ``"model_a"``, ``"model_b"`` or ``"equal"`` by the sign of the difference and
        the metric's direction in the registry (unregistered metrics: higher is
        better); None where no image pair has both scores.

    Raises
    ------
    ConfigError
        The same ``(subject, roi, model, mapper, generator, condition)`` appears twice.
    """
    from fmri2image.evaluation.stats import holm_adjust, paired_permutation_test

    _check_unique(entries)
    groups: dict[tuple[int, str, str], list[ReconstructionScores]] = {}
    for e in entries:
        if e.condition == "predicted":
            groups.setdefault((e.subject, e.roi, e.generator), []).append(e)
    rows: list[dict[str, Any]] = []
    for (subject, roi, generator), members in groups.items():
        if len(members) < 2:
            continue
        # Two decoders that share their pictures (a generator that reads neither the
        # model nor the mapper, such as lowlevel) have nothing to test.
        pairs = [(a, b) for a, b in combinations(members, 2) if a.images != b.images]
        for metric in metric_order(name for e in members for name in e.evaluation.scores):
            family = []
            for a, b in pairs:
                pair = _paired_scores(a, b, metric)
                if pair is None:
                    continue
                test = paired_permutation_test(*pair, n_permutations=n_permutations, seed=seed)
                diff = _float(test.mean_difference)
                if diff is None:
                    better = None
                elif abs(diff) <= 1e-12:  # float noise of equal scores (-5.6e-18)
                    diff, better = 0.0, "equal"
                else:
                    hib = higher_is_better(metric) is not False
                    better = "model_a" if (diff > 0) == hib else "model_b"
                family.append(
                    {
                        "subject": subject,
                        "roi": roi,
                        "generator": generator,
                        "metric": metric,
                        "model_a": a.model,
                        "mapper_a": a.mapper,
                        "model_b": b.model,
                        "mapper_b": b.mapper,
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


# ------------------------------------------------------------------ decoding
@dataclass(frozen=True)
class ModelDecoding:
    """What one model's map and retrievals gave, for one subject × ROI.

    Attributes
    ----------
    model : str
    dim : int
    metrics : dict
        Prediction metrics by registry name, each ``{"value", "baseline", "chance",
        "higher_is_better", ...}`` (:meth:`PredictionMetrics.to_dict`).
    fit : dict
        :func:`fmri2image.mapping.fit_summary` and the fit warnings.
    retrievals : tuple of RetrievalArtifact
    seconds : float
        Time spent on the mapping stage (0 when reused).
    mapper : str
        The mapping model (``"ridge"``).
    """

    model: str
    dim: int
    metrics: dict[str, Any]
    fit: dict[str, Any]
    retrievals: tuple[Any, ...] = ()
    seconds: float = 0.0
    mapper: str = "ridge"


@dataclass(frozen=True)
class Decoding:
    """The decoding of one subject × ROI: every model side by side.

    Attributes
    ----------
    subject : int
    roi : str
    info : dict
        Counts (``n_train``, ``n_train_categories``, ``n_eval``, ``n_eval_repeats``,
        ``n_voxels``, ``split``).
    test_stems, true_labels : tuple of str
    models : tuple of ModelDecoding
    """

    subject: int
    roi: str
    info: dict[str, Any]
    test_stems: tuple[str, ...]
    true_labels: tuple[str, ...]
    models: tuple[ModelDecoding, ...] = field(default_factory=tuple)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(w for m in self.models for w in m.fit.get("warnings", ()))

    def header(self) -> str:
        info = self.info
        reps = "/".join(str(n) for n in info.get("n_eval_repeats", ()))
        imagery = info.get("split") == "imagery"
        what = "imagined stimuli (imagery trials)" if imagery else "test images"
        return (
            f"subject {self.subject}, {self.roi}: {info.get('n_train')} training samples "
            f"({info.get('n_train_categories')} categories), {info.get('n_eval')} {what} "
            f"(mean of {reps} repeats), {info.get('n_voxels')} voxels"
        )


def _prediction_metric_names(decodings: Iterable[Decoding]) -> list[str]:
    return metric_order(n for d in decodings for m in d.models for n in m.metrics)


#: The label metrics of a retrieval summary, and whether each has a baseline and chance.
_RETRIEVAL_METRICS: tuple[tuple[str, bool], ...] = (
    ("hit1", True),
    ("hit5", True),
    ("wup", True),
    ("coverage", False),
)


def decoding_rows(decodings: Iterable[Decoding]) -> list[dict[str, Any]]:
    """The decoding scores of each subject and ROI as a long table.

    Returns
    -------
    list of dict
        Keys ``subject, roi, model, mapper, stage, database, metric, value, baseline,
        chance, higher_is_better``.  Stage ``"prediction"`` (``database`` None):
        every embedding metric the map was scored with (registry names:
        ``pairwise_identification``, ``nway_top1``, ``r2_variance_weighted``,
        ``dimension_correlation``, ``cosine``, ...); stage ``"retrieval"``, per
        database: ``hit1``, ``hit5``, ``wup``, ``coverage``.  Missing or NaN numbers
        are None; directions come from the registry.
    """
    rows: list[dict[str, Any]] = []
    for d in decodings:
        for m in d.models:
            key = {"subject": d.subject, "roi": d.roi, "model": m.model, "mapper": m.mapper}
            for metric in metric_order(m.metrics):
                r = m.metrics[metric]
                rows.append(
                    {
                        **key, "stage": "prediction", "database": None, "metric": metric,
                        "value": _float(r.get("value")), "baseline": _float(r.get("baseline")),
                        "chance": _float(r.get("chance")),
                        "higher_is_better": higher_is_better(metric),
                    }
                )  # fmt: skip
            for ret in m.retrievals:
                s = ret.summary
                for metric, refs in _RETRIEVAL_METRICS:
                    rows.append(
                        {
                            **key, "stage": "retrieval", "database": ret.database,
                            "metric": metric, "value": _float(s.get(metric)),
                            "baseline": _float(s.get(f"{metric}_baseline")) if refs else None,
                            "chance": _float(s.get(f"{metric}_chance")) if refs else None,
                            "higher_is_better": higher_is_better(metric),
                        }
                    )  # fmt: skip
    return rows


#: Keys of a retrieval in summary.json.
_SUMMARY_RETRIEVAL_KEYS = (
    "n_database_classes", "hit1", "hit1_baseline", "hit1_chance", "hit5", "hit5_baseline",
    "hit5_chance", "wup", "wup_baseline", "wup_chance", "coverage", "n_covered_categories",
    "n_categories", "baseline_top1",
)  # fmt: skip


def decoding_summary(decodings: Iterable[Decoding]) -> list[dict[str, Any]]:
    """One JSON-ready row per subject, ROI and encoder (``summary.json``): pairwise
    identification, n-way top-1, R², unit r and cosine, each with its baseline and
    chance, the fit, and every retrieval's hit@k and Wu–Palmer with theirs."""
    rows = []
    for d in decodings:
        for m in d.models:
            p = m.metrics

            def get(metric: str, what: str, p: Mapping[str, Any] = p) -> Any:
                return _float((p.get(metric) or {}).get(what))

            rows.append(
                {
                    "subject": d.subject,
                    "roi": d.roi,
                    "encoder": m.model,
                    "mapper": m.mapper,
                    "dim": m.dim,
                    "alpha_median": m.fit.get("alpha_median"),
                    "pairwise_id": get("pairwise_identification", "value"),
                    "pairwise_id_baseline": get("pairwise_identification", "baseline"),
                    "pairwise_id_chance": get("pairwise_identification", "chance"),
                    "nway_top1": get("nway_top1", "value"),
                    "nway_chance": get("nway_top1", "chance"),
                    "r2": get("r2_variance_weighted", "value"),
                    "r2_baseline": get("r2_variance_weighted", "baseline"),
                    # GOD's feature decoding accuracy: Pearson r per unit across images.
                    "unit_r": get("dimension_correlation", "value"),
                    "cosine": get("cosine", "value"),
                    "cosine_baseline": get("cosine", "baseline"),
                    "metrics": p,
                    "fit": m.fit,
                    "retrieval": [
                        {
                            "database": r.database,
                            "label": r.label,
                            "k": r.k,
                            **{k: r.summary.get(k) for k in _SUMMARY_RETRIEVAL_KEYS},
                        }
                        for r in m.retrievals
                    ],
                    "seconds": m.seconds,
                }
            )
    return rows


def _bracket(value: str, *inside: str) -> str:
    return f"{value} [{', '.join(inside)}]"


#: How the printed decoding table titles the main embedding metrics (others: their name).
_TITLES = {
    "pairwise_identification": "pairwise id",
    "nway_top1": "n-way top-1",
    "r2_variance_weighted": "R2",
    "dimension_correlation": "unit r",
}
#: The embedding metrics the printed table shows first (the rest of the registry's
#: embedding metrics with a score function follow).
_SHOWN = ("pairwise_identification", "nway_top1", "r2_variance_weighted", "dimension_correlation")


def _cell(r: Mapping[str, Any] | None, signed: bool) -> str:
    if not r:
        return "n/a"
    fmt = "+.3f" if signed else ".3f"
    refs = [num(r[k], fmt) for k in ("baseline", "chance") if r.get(k) is not None]
    return _bracket(num(r.get("value"), fmt), *refs) if refs else num(r.get("value"), fmt)


def decoding_tables(decoding: Decoding) -> str:
    """The prediction table and the retrieval table of one subject × ROI, with legends."""
    from fmri2image.evaluation.base import METRICS

    names = _prediction_metric_names([decoding])
    extra = [
        n for n in names
        if n not in _SHOWN and n in METRICS and METRICS.get(n).score is not None
    ]  # fmt: skip
    shown = [n for n in _SHOWN if n in names] + extra
    signed = {"r2_variance_weighted", "dimension_correlation"}
    several = len({m.mapper for m in decoding.models}) > 1
    lead = ["encoder", *(["mapper"] if several else [])]

    def who(m: ModelDecoding) -> list[str]:
        return [m.model, *([m.mapper] if several else [])]

    pred_rows = [
        [*who(m), str(m.dim)]
        + [_cell(m.metrics.get(n), n in signed) for n in shown]
        + [num(m.fit.get("alpha_median"), ".0e")]
        for m in decoding.models
    ]

    def title(n: str) -> str:
        refs = [w for w, k in (("mean", "baseline"), ("chance", "chance"))
                if any((m.metrics.get(n) or {}).get(k) is not None for m in decoding.models)]  # fmt: skip
        return _TITLES.get(n, n) + (f" [{', '.join(refs)}]" if refs else "")

    lines = [f"Embedding prediction: {decoding.header()}"]
    lines += format_table(
        [*lead, "dim", *(title(n) for n in shown), "alpha (median)"], pred_rows,
        align="l" * len(lead) + "r" * (len(shown) + 2),
    )  # fmt: skip
    ret_rows = []
    for m in decoding.models:
        for r in m.retrievals:
            s = r.summary
            ret_rows.append(
                [
                    *who(m),
                    r.label,
                    str(s.get("n_database_classes")),
                    str(r.k),
                    *(
                        _bracket(
                            num(s.get(k)), num(s.get(f"{k}_baseline")), num(s.get(f"{k}_chance"))
                        )
                        for k in ("hit1", "hit5", "wup")
                    ),
                    f"{s.get('n_covered_categories')}/{s.get('n_categories')}",
                ]
            )
    if ret_rows:
        lines += ["", "Label retrieval: the labels of the k nearest database items, by cosine"]
        lines += format_table(
            [*lead, "database", "classes", "k", "hit@1 [mean, chance]",
             "hit@5 [mean, chance]", "Wu-Palmer [mean, chance]", "cover"],
            ret_rows,
            align="l" * len(lead) + "lrrrrrr",
        )  # fmt: skip
    lines += [
        "",
        "[mean] = the score of always predicting the training-mean embedding: what a map "
        "that learned nothing predicts",
        "  (for labels: the one label that embedding retrieves, given to every test image).",
        "chance = an image or a database label drawn at random.  n-way: among all test "
        "images.  R2: variance-weighted, vs. the test mean.  unit r: GOD's feature decoding "
        "accuracy, Pearson r of each embedding unit across test images, mean over units "
        "(0 at chance; per unit in prediction/per_dimension.parquet).",
    ]
    if ret_rows:
        lines.append(
            "cover = test categories present in the database (a category it lacks can never "
            "be hit)."
        )
    return "\n".join(lines)


_NAME_CHARS = 22


def _name(label: str) -> str:
    from fmri2image.imagenet import is_wnid, wnid_name

    if not label:
        return "-"
    name = wnid_name(label) if is_wnid(label) else label
    if len(name) > _NAME_CHARS:
        name = name[: _NAME_CHARS - 1] + "…"
    return f"{name} ({label})" if is_wnid(label) else name


def labels_table(decoding: Decoding) -> str:
    """True vs retrieved top-1 label of every test image, one column per retrieval."""
    several = len({m.mapper for m in decoding.models}) > 1
    columns = [
        (f"{m.model} · {m.mapper}" if several else m.model, r)
        for m in decoding.models
        for r in m.retrievals
    ]
    if not columns:
        return ""
    several_dbs = len({r.database for _, r in columns}) > 1
    header = ["test image", "true category"] + [
        f"{model} / {r.database}" if several_dbs else model for model, r in columns
    ]
    rows = []
    for i, (stem, true) in enumerate(zip(decoding.test_stems, decoding.true_labels)):
        cells = [stem, _name(true)]
        for _, r in columns:
            got = r.top1[i] if i < len(r.top1) else ""
            cells.append(("* " if got and got == true else "  ") + _name(got))
        rows.append(cells)
    lines = ["Retrieved top-1 labels"]
    lines += format_table(header, rows, align="l" * len(header))
    lines.append("* = the retrieved label is the true category")
    return "\n".join(lines)


# ------------------------------------------------------------------ files
def _cell_value(v: Any) -> Any:
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


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """``rows`` as a CSV file with ``columns`` (atomically; None and NaN as empty cells)."""
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_cell_value(r.get(c)) for c in columns])
    return path


def _write_parquet(
    path: Path, rows: Sequence[Mapping[str, Any]], schema: Sequence[tuple[str, str]]
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {_STR: pa.string(), _FLOAT: pa.float64(), _INT: pa.int64(), _BOOL: pa.bool_()}
    pa_schema = pa.schema([(name, types[kind]) for name, kind in schema])
    table = pa.table({name: [r.get(name) for r in rows] for name, _ in schema}, schema=pa_schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_tables(
    folder: str | Path,
    entries: Sequence[ReconstructionScores],
    decodings: Iterable[Decoding],
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
    decodings : iterable of Decoding
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
    Every file is written atomically.  The ``subject`` column is a string in both
    formats (``"1"``, ``"mean"``).  Missing and NaN values are empty CSV cells and
    parquet nulls.  An empty table is a header-only CSV and a parquet file with the
    columns and no rows.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {
        "scores": scores_long(entries),
        "summary": summary_rows(entries, n_permutations=n_permutations, seed=seed)
        if summary is None
        else summary,
        "paired": paired_rows(entries, n_permutations=n_permutations, seed=seed)
        if paired is None
        else paired,
        "decoding": decoding_rows(decodings),
    }
    paths: dict[str, Path] = {}
    for name, rows in tables.items():
        clean = _file_rows(rows, TABLE_COLUMNS[name])
        paths[f"{name}_csv"] = write_csv(folder / f"{name}.csv", clean, TABLE_COLUMNS[name])
        paths[f"{name}_parquet"] = _write_parquet(folder / f"{name}.parquet", clean, _SCHEMAS[name])
    return paths


# ------------------------------------------------------------------ the printed comparison
def _decoder(test: Mapping[str, Any], side: str, several: bool) -> str:
    """One side of a paired test: its model, and its mapper when a run has several."""
    model = str(test[f"model_{side}"])
    return f"{model} · {test.get(f'mapper_{side}', 'ridge')}" if several else model


def _block_title(subject: Any, roi: str, rows: Sequence[Mapping[str, Any]], shown: str) -> str:
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
    if shown == "predicted":
        legend = "[floor: random training stimulus, ceiling: true stimulus]"
    else:
        legend = {"true": "the ceiling: the true stimulus", "random": "the floor: a random "
                  "training stimulus"}[shown]  # fmt: skip
    return f"Reconstructions: {who}, {roi} (mean over {over}; {legend})"


#: The mark of the best method of a column (that beats its own floor).
BEST_MARK = "★"


def best_keys(values: Mapping[Any, float | None], higher: bool | None) -> set[Any]:
    """The keys holding the best value (ties included); none with fewer than two values
    or when all are equal."""
    known = {k: v for k, v in values.items() if v is not None}
    if higher is None or len(known) < 2:
        return set()
    top = max(known.values()) if higher else min(known.values())
    best = {k for k, v in known.items() if math.isclose(v, top, rel_tol=1e-12, abs_tol=1e-12)}
    return set() if len(best) == len(known) else best  # all equal: nothing stands out


def winners(rows: Mapping[Any, Mapping[str, Any] | None], higher: bool | None) -> set[Any]:
    """The keys of the ``predicted`` summary rows holding the best mean of a column
    (:func:`best_keys`), kept only where that method beats its floor
    (:func:`beats_floor`): the ★ of the printed comparison and of the report."""
    top = best_keys({k: (r or {}).get("mean") for k, r in rows.items()}, higher)
    return {k for k in top if beats_floor(rows[k] or {})}


def format_comparison(
    summary: Sequence[Mapping[str, Any]], paired: Sequence[Mapping[str, Any]]
) -> str:
    """The comparison the ``run`` / ``compare`` commands print.

    One block per ``(subject, roi)`` in order of appearance, the average over
    subjects last: per ``(model, generator)`` of the predicted reconstructions, each
    metric's mean as ``"mean [floor, ceiling]"`` (floor: condition ``"random"``,
    ceiling: condition ``"true"``; ``n/a`` where absent), then each metric's chance
    or unpaired reference and direction, then the paired tests between models of
    that subject and ROI, if any.  A run that made only a bound (``generate
    --condition true``) shows that condition's means instead.
    """
    by_key: dict[tuple, Mapping[str, Any]] = {}
    blocks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    shown_subject: dict[tuple[str, str], Any] = {}
    for r in summary:
        block = (str(r["subject"]), r["roi"])
        blocks.setdefault(block, []).append(r)
        shown_subject.setdefault(block, r["subject"])
        by_key[(*block, r["model"], r.get("mapper", "ridge"), r["generator"], r["condition"],
                r["metric"])] = r  # fmt: skip
    order = [b for b in blocks if b[0] != MEAN_SUBJECT] + [
        b for b in blocks if b[0] == MEAN_SUBJECT
    ]
    out: list[str] = []
    for block in order:
        rows = blocks[block]
        present = [c for c in CONDITIONS if any(r["condition"] == c for r in rows)]
        shown = present[0]  # "predicted" whenever the method was run
        main = [r for r in rows if r["condition"] == shown]
        metrics = metric_order(r["metric"] for r in main)
        methods = list(
            dict.fromkeys((r["model"], r.get("mapper", "ridge"), r["generator"]) for r in main)
        )
        several = len({m[1] for m in methods}) > 1
        best = {
            metric: winners(
                {m: by_key.get((*block, *m, "predicted", metric)) for m in methods},
                higher_is_better(metric) is not False,
            )
            for metric in metrics
        }
        table_rows = []
        for method in methods:
            model, mapper, generator = method
            cells = [model, *([mapper] if several else []), generator]
            for metric in metrics:
                here = by_key.get((*block, *method, shown, metric))
                if here is None:
                    cells.append("n/a")
                elif shown != "predicted":
                    cells.append(num(here["mean"]))
                else:
                    floor = by_key.get((*block, *method, "random", metric))
                    ceiling = by_key.get((*block, *method, "true", metric))
                    star = f" {BEST_MARK}" if method in best[metric] else ""
                    cells.append(
                        f"{num(here['mean'])}{star} [{num(floor and floor['mean'])}, "
                        f"{num(ceiling and ceiling['mean'])}]"
                    )
            table_rows.append(cells)
        if out:
            out.append("")
        out.append(_block_title(shown_subject[block], block[1], main, shown))
        head = ["model", *(["mapper"] if several else []), "generator"]
        out += format_table(
            [*head, *metrics], table_rows, align="l" * len(head) + "r" * len(metrics)
        )
        if shown == "predicted" and any(best.values()):
            out.append(
                f"{BEST_MARK} best of its column, and better than its own floor by a paired "
                f"test (one-sided sign-flip, Holm-corrected, p < {FLOOR_ALPHA})"
            )
        refs = []
        for metric in metrics:
            these = [r for r in main if r["metric"] == metric]
            chances = [r["chance"] for r in these if r.get("chance") is not None]
            unpaired = [r["unpaired"] for r in these if r.get("unpaired") is not None]
            if chances:
                ref = f"chance {value_range(chances)}"
            elif unpaired:
                ref = f"unpaired {value_range(unpaired)}"
            else:
                ref = "no reference"
            hib = these[0].get("higher_is_better")
            if hib is None:
                hib = higher_is_better(metric) is not False
            direction = "higher" if hib in (True, "True", "true") else "lower"
            refs.append(f"{metric} {ref}, {direction} is better")
        out.append("Reference: " + "; ".join(refs))
        tests = [t for t in paired if str(t["subject"]) == block[0] and t["roi"] == block[1]]
        if tests:
            out += [
                "",
                f"Paired tests between {'decoders (model · mapper)' if several else 'models'} "
                "(sign-flip permutation, Holm-corrected within each metric):",
            ]
            test_rows = []
            for t in tests:
                better = t.get("better")
                a, b = _decoder(t, "a", several), _decoder(t, "b", several)
                winner = {"model_a": a, "model_b": b, "equal": "="}.get(better, "n/a")
                test_rows.append(
                    [
                        t["generator"],
                        t["metric"],
                        f"{a} − {b}",
                        num(t.get("mean_difference"), "+.3f"),
                        p_text(t.get("p_value")),
                        p_text(t.get("p_holm")),
                        winner,
                    ]
                )
            out += format_table(
                ["generator", "metric", "a − b", "difference", "p", "p (Holm)", "better"],
                test_rows,
                align="lllrrrl",
            )
    return "\n".join(out)
