"""Is the retrieved label right?  Hit rates, WordNet similarity and coverage.

For each query (a test image, its embedding predicted from fMRI) we know the true
WordNet id (``stimulus_id`` → ``"n%08d"``).  :func:`semantic_metrics` compares it
with the labels a :class:`~fmri2image.retrieval.vote.RetrievalResult` ranked:

* **hit@1 / hit@5** — the true wnid is the top / among the five top-ranked labels.
  Chance: ``1 / n_classes`` and ``min(5, n_classes) / n_classes`` for a label drawn
  uniformly from the database's classes.
* **coverage** — which test categories exist in the database at all.  A label absent
  from the database can never be hit (GOD test categories come from ImageNet-21k;
  most are not among the 1000 ImageNet-1k classes), so hit rates are also given
  restricted to covered queries, and ``hit_ceiling`` is the best reachable hit@1.
* **Wu–Palmer / path similarity** between the retrieved top-1 and the true synset
  (WordNet 3.0, nltk's definitions; see :mod:`fmri2image.wordnet`), beside their
  chance level: the mean similarity of the true synset to a uniformly drawn
  database class.  These reward near misses ("tabby cat" for "tiger cat").
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image._io import atomic_path, load_json, save_json
from fmri2image.errors import ConfigError, DependencyError
from fmri2image.evaluation.base import list_metrics
from fmri2image.imagenet import wnid_name
from fmri2image.retrieval.vote import RetrievalResult
from fmri2image.wordnet import WordNet

__all__ = ["SemanticMetrics", "label_scores", "semantic_metrics"]

logger = logging.getLogger(__name__)

PER_QUERY_FILE = "semantic_per_query.parquet"
SUMMARY_FILE = "semantic_summary.json"


def _higher_is_better() -> dict[str, bool]:
    return {m.name: m.higher_is_better for m in list_metrics("labels")}


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class SemanticMetrics:
    """Label-level scores of a retrieval, per query and summarized.

    Attributes
    ----------
    per_query : dict of str to ndarray, each of shape (n_queries,)
        Columns ``query, true_wnid, true_name, top1_wnid, top1_name, top1_score,
        rank`` (1-based rank of the true wnid among the ranked labels, 0 if absent),
        ``hit1, hit5, covered, n_ranked, wup, path, wup_chance, path_chance``.
    summary : dict
        Means and counts: ``hit1, hit5`` with ``hit1_chance, hit5_chance``;
        ``hit1_covered, hit5_covered, n_covered_queries, hit_ceiling``; ``coverage``
        (share of distinct test categories present in the database),
        ``n_categories, n_covered_categories, missing_categories``; ``wup, path``
        with ``wup_chance, path_chance``; ``n_queries, n_database_classes, k, vote,
        metric, wordnet`` and ``higher_is_better``.
    """

    per_query: dict[str, np.ndarray]
    summary: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    def to_arrow(self) -> Any:
        """The per-query table as a ``pyarrow.Table``."""
        import pyarrow as pa

        return pa.table({k: pa.array(np.asarray(v).tolist()) for k, v in self.per_query.items()})

    def save(self, directory: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``semantic_per_query.parquet`` and ``semantic_summary.json`` atomically."""
        import pyarrow.parquet as pq

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        table_path = directory / PER_QUERY_FILE
        with atomic_path(table_path) as tmp:
            pq.write_table(self.to_arrow(), tmp)
        summary = {k: _json_safe(v) for k, v in self.summary.items()}
        return table_path, save_json(directory / SUMMARY_FILE, summary)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SemanticMetrics:
        """Read what :meth:`save` wrote."""
        import pyarrow.parquet as pq

        directory = Path(directory)
        table = pq.read_table(directory / PER_QUERY_FILE)
        per_query = {
            name: np.asarray(table.column(name).to_numpy(zero_copy_only=False))
            for name in table.column_names
        }
        return cls(per_query=per_query, summary=load_json(directory / SUMMARY_FILE))

    def format(self) -> str:
        """A few human-readable lines, every score beside its chance level."""
        s = self.summary

        def pct(x: float) -> str:
            return (
                "n/a"
                if x is None or (isinstance(x, float) and math.isnan(x))
                else f"{100 * x:.1f}%"
            )

        def num(x: float) -> str:
            return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

        lines = [
            f"label hit@1 {pct(s['hit1'])} (chance {pct(s['hit1_chance'])}), "
            f"hit@5 {pct(s['hit5'])} (chance {pct(s['hit5_chance'])}); "
            f"{s['n_queries']} queries, {s['n_database_classes']} database classes",
            f"coverage: {s['n_covered_categories']}/{s['n_categories']} test categories in the "
            f"database; on covered queries hit@1 {pct(s['hit1_covered'])}, "
            f"hit@5 {pct(s['hit5_covered'])}; best reachable hit@1 {pct(s['hit_ceiling'])}",
            f"WordNet Wu-Palmer {num(s['wup'])} (chance {num(s['wup_chance'])}), "
            f"path {num(s['path'])} (chance {num(s['path_chance'])})",
        ]
        return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: store it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _resolve_wordnet(wordnet: WordNet | bool | None) -> WordNet | None:
    if wordnet is False:
        return None
    if isinstance(wordnet, WordNet):
        return wordnet
    try:
        return WordNet.load()
    except DependencyError as exc:
        if wordnet is True:
            raise
        logger.warning("WordNet similarity skipped: %s", exc)
        return None


def _safe_sim(fn: Any, a: str, b: str, wn: WordNet) -> float:
    if not a or not b or a not in wn or b not in wn:
        return math.nan
    return float(fn(a, b))


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else math.nan


def label_scores(
    y_true: Sequence[str],
    y_pred: Sequence[Sequence[str] | str],
    *,
    wordnet: WordNet | bool | None = None,
) -> dict[str, np.ndarray]:
    """Per-query scores of predicted labels against the true WordNet ids.

    Parameters
    ----------
    y_true : sequence of str, length n
        The true synset of each query (``"n02123045"``).
    y_pred : sequence, length n
        Each query's predicted labels, best first (a ranked sequence of wnids, or one
        wnid as a string).
    wordnet : WordNet, bool or None
        As in :func:`semantic_metrics`: ``None`` loads the default reader if present
        (else NaN similarities and a warning), ``True`` requires it, ``False`` skips it.

    Returns
    -------
    dict of str to ndarray of shape (n,)
        ``rank`` (1-based rank of the true wnid among the predictions, 0 if absent),
        ``hit1``, ``hit5`` (bool), ``wup`` and ``path`` (WordNet similarity of the top
        prediction to the truth; NaN where a synset is unknown or WordNet is skipped).
    """
    true = [str(t) for t in y_true]
    ranked = [(p,) if isinstance(p, str) else tuple(p) for p in y_pred]
    if len(ranked) != len(true):
        raise ConfigError(
            f"Got {len(true)} true labels and {len(ranked)} predictions; pass one of each per "
            "query, in the same order."
        )
    rank = np.array([r.index(t) + 1 if t in r else 0 for r, t in zip(ranked, true)], dtype=np.int64)
    wn = _resolve_wordnet(wordnet)
    wup = np.full(len(true), math.nan)
    path = np.full(len(true), math.nan)
    if wn is not None:
        for i, (t, r) in enumerate(zip(true, ranked)):
            top = r[0] if r else ""
            wup[i] = _safe_sim(wn.wup_similarity, top, t, wn)
            path[i] = _safe_sim(wn.path_similarity, top, t, wn)
    return {
        "rank": rank,
        "hit1": rank == 1,
        "hit5": (rank >= 1) & (rank <= 5),
        "wup": wup,
        "path": path,
    }


def semantic_metrics(
    result: RetrievalResult,
    true_wnids: Sequence[str],
    database_wnids: Sequence[str] | None = None,
    wordnet: WordNet | bool | None = None,
    *,
    chance_samples: int = 1000,
    seed: int = 0,
    query_ids: Sequence[str] | None = None,
    baseline: RetrievalResult | None = None,
) -> SemanticMetrics:
    """Score retrieved labels against the true WordNet ids.

    Parameters
    ----------
    result : RetrievalResult
        Output of :func:`~fmri2image.retrieval.vote.retrieve` for ``n_queries`` queries.
    true_wnids : sequence of str, length n_queries
        The true synset of each query.
    database_wnids : sequence of str, optional
        Labels of the database rows (or its distinct classes); defaults to
        ``result.database_classes``.  Defines coverage and chance levels.
    wordnet : WordNet, bool or None
        Reader for Wu–Palmer / path similarity.  ``None`` loads the default one and,
        if the files are missing, logs a warning and reports NaN; ``True`` requires
        it; ``False`` skips WordNet.
    chance_samples : int, default 1000
        WordNet chance levels average over all database classes, or over this many
        drawn at random (seeded) when there are more.
    seed : int, default 0
        Seed of that draw.
    query_ids : sequence of str, optional
        Name of each query (for GOD: the stimulus stem ``"n01443537_22563"``), stored
        in the ``query`` column so the table joins with the prediction metrics'
        ``per_image.parquet``; default: the 0-based query number as text.
    baseline : RetrievalResult, optional
        The retrieval of the *training-mean embedding* (one query, or one per
        query): what a map that learned nothing retrieves, for every image alike.
        Its hit@1, hit@5 and Wu–Palmer similarity are reported beside the real
        ones as ``hit1_baseline``, ``hit5_baseline``, ``wup_baseline`` (with
        ``baseline_top1``, the label it retrieves): collapsed predictions all get
        this label, so a hit rate is only meaningful above it.

    Returns
    -------
    SemanticMetrics
    """
    true = np.asarray(list(true_wnids), dtype=str)
    if true.shape[0] != result.n_queries:
        raise ConfigError(
            f"Got {true.shape[0]} true wnids for {result.n_queries} retrieved queries; pass "
            "one true label per query, in query order."
        )
    classes = sorted(set(database_wnids if database_wnids is not None else result.database_classes))
    classes = [c for c in classes if c]
    if not classes:
        raise ConfigError("The database has no labels; cannot score retrieved labels.")
    class_set = set(classes)
    n_db = len(classes)
    wn = _resolve_wordnet(wordnet)

    ranked = result.ranked_labels
    top1 = result.top1
    scores = label_scores(true, ranked, wordnet=wn if wn is not None else False)
    rank, hit1, hit5 = scores["rank"], scores["hit1"], scores["hit5"]
    covered = np.array([t in class_set for t in true], dtype=bool)
    top1_score = np.array([s[0] if s else math.nan for s in result.ranked_scores], dtype=np.float64)

    nq = true.shape[0]
    wup, path = scores["wup"], scores["path"]
    wup_chance = np.full(nq, math.nan)
    path_chance = np.full(nq, math.nan)
    if wn is not None:
        chance_classes = [c for c in classes if c in wn]
        if len(chance_classes) > chance_samples:
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(chance_classes), size=chance_samples, replace=False)
            chance_classes = [chance_classes[i] for i in np.sort(pick)]
        cache: dict[str, tuple[float, float]] = {}
        for i, t in enumerate(true):
            if t not in cache:
                if t in wn and chance_classes:
                    cache[t] = (
                        float(np.mean([wn.wup_similarity(c, t) for c in chance_classes])),
                        float(np.mean([wn.path_similarity(c, t) for c in chance_classes])),
                    )
                else:
                    cache[t] = (math.nan, math.nan)
            wup_chance[i], path_chance[i] = cache[t]

    if query_ids is None:
        qnames = np.array([str(i) for i in range(nq)], dtype=str)
    else:
        qnames = np.asarray([str(q) for q in query_ids], dtype=str)
        if qnames.shape[0] != nq:
            raise ConfigError(
                f"Got {qnames.shape[0]} query ids for {nq} retrieved queries; pass one "
                "name per query, in query order."
            )
    per_query = {
        "query": qnames,
        "true_wnid": true,
        "true_name": np.array([wnid_name(t) for t in true], dtype=str),
        "top1_wnid": top1,
        "top1_name": np.array([wnid_name(p) if p else "" for p in top1], dtype=str),
        "top1_score": top1_score,
        "rank": rank,
        "hit1": hit1,
        "hit5": hit5,
        "covered": covered,
        "n_ranked": np.array([len(r) for r in ranked], dtype=np.int64),
        "wup": wup,
        "path": path,
        "wup_chance": wup_chance,
        "path_chance": path_chance,
    }
    categories = sorted(set(true.tolist()))
    missing = [c for c in categories if c not in class_set]

    def mean_or_nan(x: np.ndarray) -> float:
        return float(np.mean(x)) if x.size else math.nan

    summary = {
        "n_queries": int(nq),
        "n_database_classes": n_db,
        "k": result.k,
        "vote": result.vote,
        "metric": result.metric,
        "hit1": mean_or_nan(hit1),
        "hit1_chance": 1.0 / n_db,
        "hit5": mean_or_nan(hit5),
        "hit5_chance": min(5, n_db) / n_db,
        "mean_n_ranked": mean_or_nan(per_query["n_ranked"]),
        "n_categories": len(categories),
        "n_covered_categories": len(categories) - len(missing),
        "coverage": (len(categories) - len(missing)) / len(categories) if categories else math.nan,
        "missing_categories": missing,
        "n_covered_queries": int(covered.sum()),
        "hit_ceiling": mean_or_nan(covered),
        "hit1_covered": mean_or_nan(hit1[covered]),
        "hit5_covered": mean_or_nan(hit5[covered]),
        "wup": _nanmean(wup),
        "wup_chance": _nanmean(wup_chance),
        "path": _nanmean(path),
        "path_chance": _nanmean(path_chance),
        "n_wordnet_scored": int(np.sum(~np.isnan(wup))),
        "wordnet": str(wn.directory) if wn is not None else None,
        "higher_is_better": _higher_is_better(),
    }
    if baseline is not None:
        summary.update(_baseline_summary(baseline, true, wn))
    return SemanticMetrics(per_query=per_query, summary=summary)


def _baseline_summary(
    baseline: RetrievalResult, true: np.ndarray, wn: WordNet | None
) -> dict[str, Any]:
    """hit@1, hit@5 and Wu–Palmer of one fixed ranked label list for every query."""
    if baseline.n_queries < 1:
        raise ConfigError("The baseline retrieval has no query.")
    if baseline.n_queries not in (1, true.shape[0]):
        raise ConfigError(
            f"The baseline retrieval has {baseline.n_queries} queries; pass one (the "
            f"training-mean embedding) or one per query ({true.shape[0]})."
        )
    ranked = list(baseline.ranked_labels)
    if len(ranked) == 1:
        ranked = ranked * true.shape[0]
    top1 = [r[0] if r else "" for r in ranked]
    scores = label_scores(true, ranked, wordnet=wn if wn is not None else False)
    labels = sorted(set(top1))
    return {
        "hit1_baseline": float(scores["hit1"].mean()),
        "hit5_baseline": float(scores["hit5"].mean()),
        "wup_baseline": _nanmean(scores["wup"]),
        "baseline_top1": labels[0] if len(labels) == 1 else labels,
    }
