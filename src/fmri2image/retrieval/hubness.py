"""Hub-free nearest-neighbour search: centering and CSLS.

In a high-dimensional cosine k-NN a few database items, the *hubs*, are the nearest
neighbour of many queries.  Ridge predictions make this worse: they are shrunk
towards the training-mean embedding, so most predicted queries point the same way
and the items near the mean direction win for all of them.  Two corrections
(registry of names :data:`HUBNESS`):

``"center"``
    Subtract the training-mean embedding (the mean of the *training* stimuli's
    embeddings) from every query, and the database's own mean (the mean of its
    stored, normalized rows) from every database item, then take the cosine.
``"csls"``
    Cross-domain similarity local scaling (Conneau et al. 2018, "Word translation
    without parallel data"): ``score(q, i) = 2 cos(q, i) - r(i)``, where ``r(i)``
    is the mean cosine of item ``i`` to its ``csls_k`` nearest *reference*
    vectors.  The references are the training stimuli's embeddings, never the test
    queries, so no test statistic enters the scores.  The query's own term
    ``r(q)`` is constant per query and is left out (it does not change a ranking).
    Here the cosines are taken on centered vectors (as ``"center"``): on planted
    hub data and on the demo, CSLS on centered vectors was better than on raw ones
    (docs/retrieval.md, "Hubness").

Every statistic comes from the training stimuli or the database, and each query is
scored on its own: a query's neighbours do not depend on the other queries.

Search.  For a ``flat`` index the corrected scores of every database row are
computed blockwise from the stored vectors (exact; memory: one block).  An
``ivf`` / ``hnsw`` index is searched for ``candidates`` rows (default
``max(10 k, 100)``) with the (centered) query, and those are rescored exactly; the
per-item statistics (database mean, ``r(i)``) are computed once, exactly, from
the vectors the index reconstructs.  With ``candidates >= ntotal`` every row is
scored from its reconstructed vector, as for a flat index: exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.retrieval.index import l2_normalize as _normalize

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.retrieval.index import FeatureIndex

__all__ = [
    "DEFAULT_CSLS_K",
    "DEFAULT_HUBNESS",
    "HUBNESS",
    "HubnessCorrection",
    "hub_concentration",
    "hubness_correction",
]

#: The corrections: ``none`` (plain cosine), ``center``, ``csls`` (on centered vectors).
HUBNESS = ("none", "center", "csls")
#: The default of the pipeline (``retrieval.hubness``), chosen on the evidence in
#: docs/retrieval.md.
DEFAULT_HUBNESS = "csls"
#: Reference neighbours of CSLS's ``r(i)`` (Conneau et al. use 10).
DEFAULT_CSLS_K = 10
_BLOCK_ELEMENTS = 1 << 24  # floats in one (rows x queries) score block: 64 MB


def check_hubness(method: str) -> str:
    """``method`` if it is a name in :data:`HUBNESS`, else :class:`ConfigError`."""
    if method not in HUBNESS:
        raise ConfigError(
            f"Unknown hubness correction {method!r}; use one of {', '.join(HUBNESS)} "
            "(none: plain cosine, center: subtract the training / database means, "
            "csls: CSLS on centered vectors)."
        )
    return method


def _vector_blocks(index: FeatureIndex, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, vectors)`` of the index's stored rows, ``rows`` at a time."""
    n = index.ntotal
    if index.kind == "flat":
        xb = index.database_vectors()
        for start in range(0, n, rows):
            yield start, xb[start : start + rows]
        return
    raw = index.faiss_index
    _enable_reconstruct(raw)
    for start in range(0, n, rows):
        yield start, np.asarray(raw.reconstruct_n(start, min(rows, n - start)), np.float32)


def _enable_reconstruct(raw: object) -> None:
    from fmri2image.retrieval.index import import_faiss

    faiss = import_faiss()
    try:
        ivf = faiss.extract_index_ivf(raw)
    except RuntimeError:  # not an IVF index (flat storage reconstructs directly)
        return
    if ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()


@dataclass(frozen=True, eq=False)  # array fields
class HubnessCorrection:
    """What a corrected search needs beside the index (:func:`hubness_correction`).

    Attributes
    ----------
    method : {"none", "center", "csls"}
    query_mean : ndarray of shape (dim,) or None
        Subtracted from every query (the training-mean embedding); None: not centered.
    database_mean : ndarray of shape (dim,) or None
        Subtracted from every stored (normalized) database row.
    penalty : ndarray of shape (ntotal,) or None
        CSLS's ``r(i)`` of each database row.
    csls_k : int
        Reference neighbours of ``r(i)``.
    candidates : int or None
        Rows an approximate index is searched for before exact rescoring
        (None: ``max(10 k, 100)``).
    ntotal, dim : int
        Size of the index the statistics belong to (checked when searching).
    """

    method: str
    query_mean: np.ndarray | None
    database_mean: np.ndarray | None
    penalty: np.ndarray | None
    csls_k: int
    candidates: int | None
    ntotal: int
    dim: int

    @property
    def centered(self) -> bool:
        return self.database_mean is not None

    def queries(self, queries: np.ndarray) -> np.ndarray:
        """Queries as searched: minus the training mean (if centered), unit norm."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ConfigError(
                f"queries must have shape (n, {self.dim}) like the index, got {q.shape}."
            )
        if not np.all(np.isfinite(q)):
            raise DataFormatError(
                "queries contain NaN or infinite values; fix the upstream features "
                "(e.g. a failed extraction or a diverged mapping) before searching."
            )
        if self.query_mean is not None:
            q = q - self.query_mean
        return _normalize(q)

    def items(self, vectors: np.ndarray) -> np.ndarray:
        """Stored (normalized) database rows as compared: minus the database mean, unit norm."""
        if self.database_mean is None:
            return np.asarray(vectors, dtype=np.float32)
        return _normalize(np.asarray(vectors, dtype=np.float32) - self.database_mean)

    def scores(self, u: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Corrected scores (len(u), len(rows)) of prepared queries ``u`` and stored rows."""
        s = u @ self.items(vectors).T
        if self.penalty is not None:
            s = 2.0 * s - self.penalty[rows][None, :]
        return s

    def search(self, index: FeatureIndex, queries: np.ndarray, k: int):
        """The ``k`` best rows of each query by the corrected score.

        Returns
        -------
        scores : ndarray of shape (n_queries, k), float32
            Cosine (``none``, ``center``) or CSLS score, descending.
        indices : ndarray of shape (n_queries, k), int64
            Database rows (``-1`` where an approximate index found fewer).
        """
        if index.ntotal != self.ntotal or index.dim_ != self.dim:
            raise ConfigError(
                f"This hubness correction was computed for an index of {self.ntotal} rows "
                f"of dim {self.dim}, not for {index!r}; compute it for this index "
                "(hubness_correction(index, ...))."
            )
        if k < 1:
            raise ConfigError(f"k must be a positive integer, got {k}.")
        k = min(int(k), index.ntotal)
        if self.method == "none":
            return index.search(queries, k)
        u = self.queries(queries)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=index.threads, user_api="blas"):
            n_cand = min(index.ntotal, self.candidates or max(10 * k, 100))
            if index.kind == "flat" or n_cand >= index.ntotal:
                return self._search_all(index, u, k)
            return self._rescore(index, u, k, n_cand)

    def _search_all(self, index: FeatureIndex, u: np.ndarray, k: int):
        from fmri2image.retrieval.index import _top_k_selector

        m = u.shape[0]
        top_k = _top_k_selector()
        best_s = np.full((m, k), -np.inf, dtype=np.float32)
        best_i = np.full((m, k), -1, dtype=np.int64)
        rows_ = np.arange(m)[:, None]
        block = max(1024, _BLOCK_ELEMENTS // max(m, index.dim_ or 1))
        for start, xb in _vector_blocks(index, block):
            rows = np.arange(start, start + xb.shape[0])
            s = np.ascontiguousarray(self.scores(u, xb, rows), dtype=np.float32)
            part = top_k(s, min(k, s.shape[1]))
            cand_s = np.concatenate([best_s, s[rows_, part]], axis=1)
            cand_i = np.concatenate([best_i, part + start], axis=1)
            keep = np.argpartition(cand_s, cand_s.shape[1] - k, axis=1)[:, -k:]
            best_s, best_i = cand_s[rows_, keep], cand_i[rows_, keep]
        order = np.lexsort((best_i, -best_s), axis=1)  # ties: ascending row
        return best_s[rows_, order], best_i[rows_, order]

    def _rescore(self, index: FeatureIndex, u: np.ndarray, k: int, n_cand: int):
        _, cand = index.search(u, n_cand)
        raw = index.faiss_index
        _enable_reconstruct(raw)
        m = u.shape[0]
        out_s = np.full((m, k), -np.inf, dtype=np.float32)
        out_i = np.full((m, k), -1, dtype=np.int64)
        for j in range(m):
            rows = cand[j][cand[j] >= 0]
            if rows.size == 0:
                continue
            vecs = np.asarray(raw.reconstruct_batch(rows), dtype=np.float32)
            s = self.scores(u[j : j + 1], vecs, rows)[0].astype(np.float32)
            order = np.lexsort((rows, -s))[:k]
            out_s[j, : order.size], out_i[j, : order.size] = s[order], rows[order]
        return out_s, out_i


def hubness_correction(
    index: FeatureIndex,
    method: str = DEFAULT_HUBNESS,
    *,
    query_mean: np.ndarray | None = None,
    references: np.ndarray | None = None,
    csls_k: int = DEFAULT_CSLS_K,
    center: bool | None = None,
    candidates: int | None = None,
) -> HubnessCorrection:
    """The statistics a hub-corrected search of ``index`` needs.

    Parameters
    ----------
    index : FeatureIndex
        A cosine index (any kind), already filled.
    method : {"none", "center", "csls"}
    query_mean : ndarray of shape (dim,)
        The training-mean embedding (mean of the training stimuli's embeddings);
        required when centering.  Never a mean of the test queries.
    references : ndarray of shape (n_ref, dim)
        CSLS reference vectors: the training stimuli's embeddings (each once).
        Required for ``csls``; centered with ``query_mean`` like the queries.
    csls_k : int, default 10
        Reference neighbours averaged in ``r(i)`` (at most ``n_ref``).
    center : bool, optional
        Whether ``csls`` works on centered vectors (default: True, see the module
        docstring); ``center`` always does, ``none`` never.
    candidates : int, optional
        Rows an ``ivf``/``hnsw`` index is searched for before exact rescoring.

    Returns
    -------
    HubnessCorrection
        Pass it to :func:`fmri2image.retrieval.retrieve` (``hubness=``).
    """
    check_hubness(method)
    if index.ntotal == 0:
        raise ConfigError("The index is empty; add database vectors before searching.")
    if method != "none" and index.metric != "cosine":
        raise ConfigError(
            f"Hubness correction {method!r} needs a cosine index, not metric "
            f"{index.metric!r}; build the index with metric='cosine' or use hubness='none'."
        )
    if center is None or method != "csls":
        center = method in ("center", "csls")
    if isinstance(csls_k, bool) or not isinstance(csls_k, int | np.integer) or csls_k < 1:
        raise ConfigError(f"csls_k must be a positive integer, got {csls_k!r}.")
    if candidates is not None and (isinstance(candidates, bool) or int(candidates) < 1):
        raise ConfigError(f"candidates must be a positive integer, got {candidates!r}.")
    dim = int(index.dim_ or 0)
    qmean = dmean = penalty = None
    if center:
        if query_mean is None:
            raise ConfigError(
                f"Hubness correction {method!r} centers the queries: pass query_mean, the "
                "mean embedding of the training stimuli."
            )
        qmean = np.asarray(query_mean, dtype=np.float32).reshape(-1)
        if qmean.shape[0] != dim or not np.all(np.isfinite(qmean)):
            raise ConfigError(f"query_mean must be a finite vector of length {dim}.")
        total = np.zeros(dim, dtype=np.float64)
        for _, xb in _vector_blocks(index, 65536):
            total += xb.sum(axis=0, dtype=np.float64)
        dmean = (total / index.ntotal).astype(np.float32)
    partial = HubnessCorrection(
        method, qmean, dmean, None, int(csls_k), candidates, int(index.ntotal), dim
    )
    if method == "csls":
        if references is None or len(references) == 0:
            raise ConfigError(
                "Hubness correction 'csls' needs reference vectors (the training stimuli's "
                "embeddings), never the test queries."
            )
        refs = partial.queries(np.asarray(references))
        kk = min(int(csls_k), refs.shape[0])
        penalty = np.empty(index.ntotal, dtype=np.float32)
        block = max(1024, _BLOCK_ELEMENTS // max(refs.shape[0], dim, 1))
        for start, xb in _vector_blocks(index, block):
            s = partial.items(xb) @ refs.T  # (rows, n_ref)
            top = np.partition(s, s.shape[1] - kk, axis=1)[:, -kk:]
            penalty[start : start + xb.shape[0]] = top.mean(axis=1)
    return HubnessCorrection(
        method, qmean, dmean, penalty, int(csls_k), candidates, int(index.ntotal), dim
    )


def hub_concentration(top1: np.ndarray | list[str]) -> float:
    """Share of queries whose top-1 label is the most frequent top-1 label (0 if none)."""
    labels = [str(t) for t in top1]
    if not labels:
        return 0.0
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / len(labels))
