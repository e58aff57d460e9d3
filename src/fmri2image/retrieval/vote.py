"""From k nearest neighbours to a ranked list of class labels.

A vote turns the labels and similarities of one query's neighbours into a ranking
of the distinct labels among them, with a score per label (registry :data:`VOTES`):

``"nearest"``
    Labels in the order their best neighbour appears; score = that neighbour's
    similarity.  Top-1 is the label of the single nearest neighbour (the seed
    pipeline's rule).
``"majority"``
    Labels by number of neighbours; score = share of the k neighbours.  Ties go to
    the label whose best neighbour is nearer.
``"weighted"``
    Labels by the summed similarity of their neighbours; score = that sum.  Ties go to
    the label whose best neighbour is nearer.  With cosine similarity a neighbour of
    negative similarity lowers its label's score.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import atomic_path
from fmri2image.errors import ConfigError
from fmri2image.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.retrieval.hubness import HubnessCorrection
    from fmri2image.retrieval.index import FeatureIndex

__all__ = ["VOTES", "RetrievalResult", "apply_vote", "retrieve"]

VoteFn = Callable[[Sequence[str], np.ndarray], list[tuple[str, float]]]
VOTES: Registry[VoteFn] = Registry("vote")


def _first_positions(labels: Sequence[str]) -> dict[str, int]:
    first: dict[str, int] = {}
    for pos, lab in enumerate(labels):
        first.setdefault(lab, pos)
    return first


@VOTES.register("nearest")
def vote_nearest(labels: Sequence[str], sims: np.ndarray) -> list[tuple[str, float]]:
    """Distinct labels in neighbour order; score = similarity of the label's best neighbour."""
    return [(lab, float(sims[pos])) for lab, pos in _first_positions(labels).items()]


@VOTES.register("majority")
def vote_majority(labels: Sequence[str], sims: np.ndarray) -> list[tuple[str, float]]:
    """Labels by neighbour count (ties: nearest best neighbour); score = count / k."""
    first = _first_positions(labels)
    counts = {lab: 0 for lab in first}
    for lab in labels:
        counts[lab] += 1
    order = sorted(first, key=lambda lab: (-counts[lab], first[lab]))
    return [(lab, counts[lab] / len(labels)) for lab in order]


@VOTES.register("weighted")
def vote_weighted(labels: Sequence[str], sims: np.ndarray) -> list[tuple[str, float]]:
    """Labels by summed similarity (ties: nearest best neighbour); score = the sum."""
    first = _first_positions(labels)
    totals = dict.fromkeys(first, 0.0)
    for lab, s in zip(labels, sims):
        totals[lab] += float(s)
    order = sorted(first, key=lambda lab: (-totals[lab], first[lab]))
    return [(lab, totals[lab]) for lab in order]


def apply_vote(
    neighbor_labels: np.ndarray, similarities: np.ndarray, method: str = "nearest"
) -> tuple[tuple[tuple[str, ...], ...], tuple[tuple[float, ...], ...]]:
    """Apply a vote to every query.

    Parameters
    ----------
    neighbor_labels : ndarray of shape (n_queries, k), str
        Labels of each query's neighbours, nearest first; ``""`` marks a missing
        neighbour (ignored).
    similarities : ndarray of shape (n_queries, k)
        Their similarities, descending.
    method : str
        A name in :data:`VOTES`.

    Returns
    -------
    ranked_labels, ranked_scores : tuple of tuples
        Per query, the distinct labels best first and their scores.
    """
    fn = VOTES.get(method)
    labels_out, scores_out = [], []
    for labs, sims in zip(neighbor_labels, similarities):
        keep = np.asarray(labs) != ""
        ranked = fn(list(np.asarray(labs)[keep]), np.asarray(sims)[keep]) if keep.any() else []
        labels_out.append(tuple(str(lab) for lab, _ in ranked))
        scores_out.append(tuple(float(s) for _, s in ranked))
    return tuple(labels_out), tuple(scores_out)


@dataclass(frozen=True, eq=False)  # array fields: compare explicitly
class RetrievalResult:
    """Nearest database items of each query and the labels voted from them.

    Attributes
    ----------
    indices : ndarray of shape (n_queries, k), int64
        Database rows of the neighbours, nearest first (``-1``: none found).
    similarities : ndarray of shape (n_queries, k), float32
        Their similarities (cosine for a cosine index; with ``hubness="csls"`` the
        CSLS score ``2 cos - r(i)``).
    neighbor_labels : ndarray of shape (n_queries, k), str
        Their labels (WordNet ids).
    ranked_labels : tuple of tuple of str
        Per query, the distinct neighbour labels ranked by the vote (at most k).
    ranked_scores : tuple of tuple of float
        The vote's score of each ranked label.
    vote : str
        Vote used (``"nearest"``, ``"majority"``, ``"weighted"``).
    metric : str
        Similarity of the index (``"cosine"`` or ``"ip"``).
    database_classes : tuple of str
        Distinct labels of the whole database (what *could* have been retrieved).
    neighbor_items : ndarray of shape (n_queries, k), str, or None
        Item names (image paths) of the neighbours when the index keeps them.
    query_ids : tuple of str, or None
        Name of each query (for GOD: the stimulus stem), when the caller gave them.
    hubness : str
        Hubness correction of the search (``"none"``, ``"center"``, ``"csls"``;
        :mod:`fmri2image.retrieval.hubness`).
    """

    indices: np.ndarray
    similarities: np.ndarray
    neighbor_labels: np.ndarray
    ranked_labels: tuple[tuple[str, ...], ...]
    ranked_scores: tuple[tuple[float, ...], ...]
    vote: str
    metric: str
    database_classes: tuple[str, ...]
    neighbor_items: np.ndarray | None = None
    query_ids: tuple[str, ...] | None = None
    hubness: str = "none"

    @property
    def n_queries(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    @property
    def top1(self) -> np.ndarray:
        """Top-ranked label of each query, shape (n_queries,) (``""`` if none)."""
        return np.array([r[0] if r else "" for r in self.ranked_labels], dtype=str)

    def top(self, n: int) -> list[tuple[str, ...]]:
        """The ``n`` best-ranked labels of each query (fewer if fewer were found)."""
        return [r[:n] for r in self.ranked_labels]

    def to_arrow(self) -> Any:
        """Per-query table (pyarrow): list columns for neighbours and ranked labels."""
        import pyarrow as pa

        cols = {
            "query": pa.array(
                list(self.query_ids)
                if self.query_ids is not None
                else [str(i) for i in range(self.n_queries)],
                pa.string(),
            ),
            "top1": pa.array(self.top1.tolist(), pa.string()),
            "ranked_labels": pa.array([list(r) for r in self.ranked_labels], pa.list_(pa.string())),
            "ranked_scores": pa.array(
                [list(r) for r in self.ranked_scores], pa.list_(pa.float64())
            ),
            "neighbor_indices": pa.array(self.indices.tolist(), pa.list_(pa.int64())),
            "neighbor_similarities": pa.array(
                self.similarities.astype(np.float32).tolist(), pa.list_(pa.float32())
            ),
            "neighbor_labels": pa.array(self.neighbor_labels.tolist(), pa.list_(pa.string())),
        }
        if self.neighbor_items is not None:
            cols["neighbor_items"] = pa.array(self.neighbor_items.tolist(), pa.list_(pa.string()))
        meta = {
            "vote": self.vote,
            "metric": self.metric,
            "hubness": self.hubness,
            "k": str(self.k),
            "database_classes": "\n".join(self.database_classes),
        }
        return pa.table(cols).replace_schema_metadata(meta)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result as one parquet file (atomically)."""
        import pyarrow.parquet as pq

        path = Path(path)
        with atomic_path(path) as tmp:
            pq.write_table(self.to_arrow(), tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RetrievalResult:
        """Read a result written by :meth:`save`."""
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        k = int(meta["k"])
        n = table.num_rows

        def mat(col: str, dtype: Any) -> np.ndarray:
            return np.array(table.column(col).to_pylist(), dtype=dtype).reshape(n, k)

        items = mat("neighbor_items", str) if "neighbor_items" in table.column_names else None
        query_ids = tuple(str(q) for q in table.column("query").to_pylist())
        classes = meta.get("database_classes", "")
        return cls(
            indices=mat("neighbor_indices", np.int64),
            similarities=mat("neighbor_similarities", np.float32),
            neighbor_labels=mat("neighbor_labels", str),
            ranked_labels=tuple(tuple(r) for r in table.column("ranked_labels").to_pylist()),
            ranked_scores=tuple(tuple(r) for r in table.column("ranked_scores").to_pylist()),
            vote=meta["vote"],
            metric=meta["metric"],
            database_classes=tuple(classes.split("\n")) if classes else (),
            neighbor_items=items,
            query_ids=query_ids,
            hubness=meta.get("hubness", "none"),
        )


def retrieve(
    queries: np.ndarray,
    index: FeatureIndex,
    k: int = 5,
    vote: str = "nearest",
    *,
    query_ids: Sequence[str] | None = None,
    hubness: HubnessCorrection | None = None,
) -> RetrievalResult:
    """Search ``index`` for each query and vote a ranked list of labels.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, dim)
        Embeddings to label (e.g. predicted from fMRI).
    index : FeatureIndex
        Labelled database (image features or class prototypes).
    k : int, default 5
        Neighbours per query.  The ranked label list holds the distinct labels among
        them, so with many images per class raise ``k`` (e.g. 50) to get five
        distinct candidate labels for hit@5.
    vote : str, default "nearest"
        A name in :data:`VOTES` (``"nearest"``, ``"majority"``, ``"weighted"``).
    query_ids : sequence of str, optional
        Name of each query (e.g. the stimulus stem), kept in the saved table's
        ``query`` column; default: the query number.
    hubness : HubnessCorrection, optional
        Search with a hubness correction (centering or CSLS) computed for ``index``
        by :func:`fmri2image.retrieval.hubness_correction`; default: plain similarity.

    Returns
    -------
    RetrievalResult
    """
    VOTES.get(vote)  # validate before searching
    if k < 1:
        raise ConfigError(f"k must be a positive integer, got {k}.")
    if query_ids is not None:
        query_ids = tuple(str(q) for q in query_ids)
        if len(query_ids) != len(queries):
            raise ConfigError(
                f"Got {len(query_ids)} query ids for {len(queries)} queries; pass one "
                "name per query."
            )
    if hubness is None:
        sims, idx = index.search(queries, k)
    else:
        sims, idx = hubness.search(index, queries, k)
    labels = index.labels_of(idx)
    ranked, scores = apply_vote(labels, sims, vote)
    items = index.items_
    neighbor_items = None
    if items is not None:
        neighbor_items = np.where(idx >= 0, items[np.where(idx >= 0, idx, 0)], "")
    return RetrievalResult(
        indices=idx,
        similarities=sims,
        neighbor_labels=labels,
        ranked_labels=ranked,
        ranked_scores=scores,
        vote=vote,
        metric=index.metric,
        database_classes=tuple(index.classes_.tolist()),
        neighbor_items=neighbor_items,
        query_ids=query_ids,
        hubness="none" if hubness is None else hubness.method,
    )
