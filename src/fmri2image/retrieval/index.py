"""Labelled nearest-neighbour index over embeddings (FAISS, numpy in / numpy out).

A :class:`FeatureIndex` holds database vectors and one class label (WordNet id) per
row.  Similarity is cosine by default: every vector added or searched is
L2-normalized (per chunk, so a database never has to fit in memory twice) and
compared by inner product, exactly as ``faiss.IndexFlatIP`` on normalized vectors.

Index kinds (registry :data:`INDEX_KINDS`; add one with ``INDEX_KINDS.register``):

``"flat"``
    Exact search.  The default; right for up to a few million rows.  Vectors are
    stored in a ``faiss.IndexFlatIP``; the search runs as blocked matrix products in
    numpy (``params={"backend": "numpy"}``, default: numpy's BLAS was ~4x faster
    than the one bundled with faiss-cpu on our test machine) or in faiss
    (``"backend": "faiss"``); both are exact.
``"ivf"``
    Inverted file (``IndexIVFFlat``): k-means into ``nlist`` cells, trained on a
    random sample; searches ``nprobe`` cells.  Approximate; much faster on large data.
``"hnsw"``
    Graph index (``IndexHNSWFlat``, inner product); approximate, no training, fast
    queries, slow to build.

Indexes are saved without pickle: ``index.faiss`` (``faiss.write_index``),
``labels.npy`` (unicode array), optional ``items.npy`` (image paths) and
``index.json`` (kind, metric, parameters, versions).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import (
    atomic_path,
    file_sha256,
    load_versioned_json,
    save_json,
    save_npy,
    tqdm_kwargs,
)
from fmri2image.errors import ConfigError, DataFormatError, MissingImageError, require
from fmri2image.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.shards import FeatureStore

__all__ = [
    "INDEX_KINDS",
    "METRICS",
    "FeatureIndex",
    "IndexKind",
    "import_faiss",
    "l2_normalize",
]

logger = logging.getLogger(__name__)

INDEX_FORMAT = "fmri2image.retrieval.index"
INDEX_FORMAT_VERSION = 2  # 2: index.json records each file's SHA-256
METRICS = ("cosine", "ip")


def import_faiss() -> Any:
    """Import FAISS the way fmri2image uses it (or raise :class:`DependencyError`).

    Before the first import, ``OMP_WAIT_POLICY`` defaults to ``PASSIVE``; see below.
    """
    if "faiss" not in sys.modules:
        # FAISS's bundled OpenMP busy-waits between parallel regions by default; on a
        # shared or oversubscribed machine that made searches up to 10x slower in our
        # measurements.  Passive waiting costs microseconds per search otherwise.  Read
        # once, when FAISS's own libgomp loads; an explicit user setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return require("faiss", "faiss", "Nearest-neighbour retrieval (FeatureIndex)")


_faiss = import_faiss


def l2_normalize(x: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalization into a new float32 array.

    Parameters
    ----------
    x : array-like of shape (n, dim)

    Returns
    -------
    ndarray of shape (n, dim), float32
        Rows of unit norm; all-zero rows stay zero (their cosine with anything is 0).
    """
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, eps, out=norms)
    out /= norms
    return out


# -- index kinds ---------------------------------------------------------------------


@dataclass(frozen=True)
class IndexKind:
    """How to build and tune one FAISS index family.

    Attributes
    ----------
    name : str
        Registry name.
    make : callable
        ``make(dim, faiss_metric, n_total, params) -> faiss.Index``; ``n_total`` is the
        expected database size (or the training-sample size when unknown).
    tune : callable
        ``tune(index, params)`` sets search-time parameters (``nprobe``, ``efSearch``).
    needs_training : bool
        Whether the index must see a training sample before vectors are added.
    defaults : dict
        Default parameters; a user's ``params`` override them.
    exact : bool
        Whether search results are exact.
    description : str
        One line for listings.
    """

    name: str
    make: Callable[[int, int, int, dict[str, Any]], Any]
    tune: Callable[[Any, dict[str, Any]], None]
    needs_training: bool
    defaults: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    description: str = ""


INDEX_KINDS: Registry[IndexKind] = Registry("index kind")


def _no_tune(index: Any, params: dict[str, Any]) -> None:
    return None


def _make_flat(dim: int, metric: int, n_total: int, params: dict[str, Any]) -> Any:
    return _faiss().IndexFlat(dim, metric)


def _ivf_nlist(n_total: int, n_train: int, params: dict[str, Any]) -> int:
    if params.get("nlist"):
        return int(params["nlist"])
    # sqrt(n) cells, but at least 39 training points per cell (k-means needs them).
    return int(max(1, min(round(math.sqrt(max(n_total, 1))), n_train // 39)))


def _make_ivf(dim: int, metric: int, n_total: int, params: dict[str, Any]) -> Any:
    faiss = _faiss()
    quantizer = faiss.IndexFlat(dim, metric)
    index = faiss.IndexIVFFlat(quantizer, dim, int(params["nlist"]), metric)
    index.cp.seed = int(params.get("seed", 0))
    return index  # faiss's Python wrapper keeps a reference to the quantizer


def _tune_ivf(index: Any, params: dict[str, Any]) -> None:
    faiss = _faiss()
    ivf = faiss.extract_index_ivf(index)
    ivf.nprobe = int(min(params["nprobe"], ivf.nlist))


def _make_hnsw(dim: int, metric: int, n_total: int, params: dict[str, Any]) -> Any:
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(dim, int(params["M"]), metric)
    index.hnsw.efConstruction = int(params["ef_construction"])
    return index


def _tune_hnsw(index: Any, params: dict[str, Any]) -> None:
    _faiss().downcast_index(index).hnsw.efSearch = int(params["ef_search"])


INDEX_KINDS.register(
    "flat",
    IndexKind(
        "flat", _make_flat, _no_tune, needs_training=False, exact=True,
        defaults={"backend": "numpy", "block_elements": 1 << 24},
        description="exact search (faiss IndexFlatIP storage, numpy or faiss search)",
    ),
)  # fmt: skip
FLAT_BACKENDS = ("numpy", "faiss")
INDEX_KINDS.register(
    "ivf",
    IndexKind(
        "ivf", _make_ivf, _tune_ivf, needs_training=True,
        defaults={"nlist": None, "nprobe": 16, "train_size": 50_000},
        description="inverted file, k-means cells (faiss IndexIVFFlat); approximate",
    ),
)  # fmt: skip
INDEX_KINDS.register(
    "hnsw",
    IndexKind(
        "hnsw", _make_hnsw, _tune_hnsw, needs_training=False,
        defaults={"M": 32, "ef_construction": 80, "ef_search": 128},
        description="HNSW graph (faiss IndexHNSWFlat, inner product); approximate",
    ),
)  # fmt: skip


@contextlib.contextmanager
def _omp_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set FAISS's OpenMP thread count (it is process-global)."""
    if threads is None:
        yield
        return
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_labels(labels: Sequence[str] | np.ndarray, n: int, what: str = "labels") -> np.ndarray:
    arr = np.asarray(labels, dtype=str)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ConfigError(
            f"Got {arr.shape[0] if arr.ndim else 1} {what} for {n} vectors; pass exactly one "
            f"label (WordNet id) per database row."
        )
    return arr


def _top_k_selector() -> Callable[[np.ndarray, int], np.ndarray]:
    """``f(sims, k) -> (m, k)`` column indices of the k largest values of each row.

    torch's multi-threaded ``topk`` is an order of magnitude faster than numpy's
    single-threaded ``argpartition`` on (50, 300 k) blocks, which otherwise costs as
    much as the matrix product; numpy is the fallback when torch is absent.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency

        def numpy_top_k(sims: np.ndarray, k: int) -> np.ndarray:
            return np.argpartition(sims, sims.shape[1] - k, axis=1)[:, -k:]

        return numpy_top_k

    def torch_top_k(sims: np.ndarray, k: int) -> np.ndarray:
        return torch.topk(torch.from_numpy(sims), k, dim=1, sorted=False).indices.numpy()

    return torch_top_k


# -- the index -----------------------------------------------------------------------


class FeatureIndex:
    """Labelled k-nearest-neighbour index (cosine by default) backed by FAISS.

    Parameters
    ----------
    kind : str, default "flat"
        A name in :data:`INDEX_KINDS`: ``"flat"`` (exact), ``"ivf"``, ``"hnsw"``.
    metric : {"cosine", "ip"}, default "cosine"
        ``"cosine"`` L2-normalizes database rows and queries and ranks by inner
        product; ``"ip"`` ranks by the raw inner product (no normalization).
    params : dict, optional
        Kind-specific parameters: flat ``{"backend": "numpy" | "faiss",
        "block_elements": 2**24}``; IVF ``{"nlist": 1024, "nprobe": 16,
        "train_size": 50000}``; HNSW ``{"M": 32, "ef_construction": 80,
        "ef_search": 128}``.
    threads : int, optional
        Threads FAISS (OpenMP) and numpy's BLAS use while adding and searching
        (default: the libraries' own, usually all cores).
    seed : int, default 0
        Seed for the IVF training sample and k-means.

    Attributes
    ----------
    dim_ : int
        Vector dimension (set by the first :meth:`add`).
    labels_ : ndarray of shape (ntotal,), str
        Label (WordNet id) of each database row.
    items_ : ndarray of shape (ntotal,), str, or None
        Optional per-row item names (image paths).
    params_ : dict
        Resolved parameters (defaults filled in, ``nlist`` chosen).

    Examples
    --------
    >>> index = FeatureIndex().add(db_feats, db_wnids)        # doctest: +SKIP
    >>> sims, idx = index.search(pred_embeddings, k=5)        # doctest: +SKIP
    >>> index.labels_[idx[:, 0]]                              # top-1 labels  # doctest: +SKIP
    """

    def __init__(
        self,
        kind: str = "flat",
        *,
        metric: str = "cosine",
        params: dict[str, Any] | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.kind = kind
        self.metric = metric
        self.params = params
        self.threads = threads
        self.seed = seed
        self._spec = INDEX_KINDS.get(kind)  # fail early on unknown kinds
        if metric not in METRICS:
            raise ConfigError(
                f"Unknown retrieval metric {metric!r}; use one of {', '.join(METRICS)} "
                "('cosine' normalizes vectors, 'ip' uses raw inner products)."
            )
        unknown = set(params or {}) - set(self._spec.defaults) - {"seed"}
        if unknown:
            raise ConfigError(
                f"Unknown parameter(s) {sorted(unknown)} for index kind {kind!r}; it accepts "
                f"{sorted(self._spec.defaults) or 'none'}."
            )
        self.params_: dict[str, Any] = {**self._spec.defaults, **(params or {}), "seed": seed}
        if kind == "flat" and self.params_["backend"] not in FLAT_BACKENDS:
            raise ConfigError(
                f"Unknown flat-index backend {self.params_['backend']!r}; use one of "
                f"{', '.join(FLAT_BACKENDS)}."
            )
        self._index: Any = None
        self._labels: list[np.ndarray] = []
        self._items: list[np.ndarray] | None = []
        self.dim_: int | None = None

    # -- state ----------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of database rows."""
        return 0 if self._index is None else int(self._index.ntotal)

    def __len__(self) -> int:
        return self.ntotal

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    @property
    def labels_(self) -> np.ndarray:
        if len(self._labels) != 1:
            merged = np.concatenate(self._labels) if self._labels else np.zeros(0, dtype="<U1")
            self._labels = [merged]
        return self._labels[0]

    @property
    def items_(self) -> np.ndarray | None:
        if not self._items:
            return None
        if len(self._items) != 1:
            merged = np.concatenate(self._items) if self._items else np.zeros(0, dtype="<U1")
            self._items = [merged]
        return self._items[0]

    @property
    def classes_(self) -> np.ndarray:
        """Sorted distinct labels of the database, shape (n_classes,)."""
        return np.unique(self.labels_)

    @property
    def faiss_index(self) -> Any:
        """The underlying ``faiss.Index`` (``None`` before the first add)."""
        return self._index

    def __repr__(self) -> str:
        return (
            f"FeatureIndex(kind={self.kind!r}, metric={self.metric!r}, ntotal={self.ntotal}, "
            f"dim={self.dim_}, classes={len(self.classes_) if self.ntotal else 0})"
        )

    def _prepare(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ConfigError(f"{what} must be a 2-D array (n, dim), got shape {x.shape}.")
        if self.dim_ is not None and x.shape[1] != self.dim_:
            raise ConfigError(
                f"{what} have dimension {x.shape[1]}, but the index holds {self.dim_}-d "
                "vectors; were they computed with another encoder?"
            )
        if not np.all(np.isfinite(x)):
            raise DataFormatError(
                f"{what} contain NaN or infinite values; fix the upstream features "
                "(e.g. a failed extraction or a diverged mapping) before searching."
            )
        if self.metric == "cosine":
            return l2_normalize(x)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _create(self, dim: int, n_total: int, n_train: int) -> None:
        faiss = _faiss()
        self.dim_ = int(dim)
        if "nlist" in self._spec.defaults:
            self.params_["nlist"] = _ivf_nlist(n_total, n_train, self.params_)
        with _omp_threads(self.threads):
            self._index = self._spec.make(
                self.dim_, faiss.METRIC_INNER_PRODUCT, n_total, self.params_
            )
        self._spec.tune(self._index, self.params_)

    # -- building -------------------------------------------------------------------
    def train(self, x: np.ndarray, *, n_total: int | None = None) -> FeatureIndex:
        """Train the index (IVF: k-means cells) on a sample; a no-op for flat/HNSW.

        Parameters
        ----------
        x : ndarray of shape (n_train, dim)
            Representative vectors (a random sample of the database).
        n_total : int, optional
            Expected database size, used to choose ``nlist`` (default ``n_train``).
        """
        xs = self._prepare(x, "training vectors")
        if self._index is None:
            self._create(xs.shape[1], n_total or xs.shape[0], xs.shape[0])
        if not self._index.is_trained:
            if xs.shape[0] < self.params_.get("nlist", 1):
                raise ConfigError(
                    f"IVF needs at least nlist={self.params_['nlist']} training vectors, "
                    f"got {xs.shape[0]}; lower 'nlist' or use kind='flat' for small databases."
                )
            with _omp_threads(self.threads):
                self._index.train(xs)
        return self

    def add(
        self,
        x: np.ndarray,
        labels: Sequence[str] | np.ndarray,
        items: Sequence[str] | None = None,
    ) -> FeatureIndex:
        """Add database vectors with their labels; returns ``self``.

        An untrained IVF index is first trained on (a random sample of) ``x``; to
        train on a sample of a larger database use :meth:`train` or
        :meth:`add_chunks`.

        Parameters
        ----------
        x : ndarray of shape (n, dim)
            Database embeddings (any float dtype; stored as float32).
        labels : sequence of str, length n
            WordNet id of each row.
        items : sequence of str, length n, optional
            Item names (image paths) kept beside the labels.
        """
        xs = self._prepare(x, "database vectors")
        lab = _as_labels(labels, xs.shape[0])
        it = None if items is None else _as_labels(items, xs.shape[0], "items")
        if self._index is None:
            self._create(xs.shape[1], xs.shape[0], min(xs.shape[0], self._train_size()))
        if not self._index.is_trained:
            sample = self._sample_rows(xs.shape[0])
            with _omp_threads(self.threads):
                self._index.train(xs[sample])
        with _omp_threads(self.threads):
            self._index.add(xs)
        self._append_meta(lab, it)
        return self

    def _train_size(self) -> int:
        return int(self.params_.get("train_size") or 50_000)

    def _sample_rows(self, n: int) -> np.ndarray:
        m = min(n, self._train_size())
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)

    def _append_meta(self, labels: np.ndarray, items: np.ndarray | None) -> None:
        self._labels.append(labels)
        # Items are kept only if every chunk came with them.
        if self._items is not None:
            if items is None:
                self._items = None
            else:
                self._items.append(items)

    def add_chunks(
        self,
        chunks: Iterable[tuple[np.ndarray, Sequence[str]]]
        | Iterable[tuple[np.ndarray, Sequence[str], Sequence[str]]],
        *,
        n_total: int | None = None,
        train_sample: np.ndarray | None = None,
        progress: bool = True,
    ) -> FeatureIndex:
        """Add a database chunk by chunk (e.g. shards read from disk); returns ``self``.

        Only one chunk (normalized) is held in memory beside the index.  An IVF index
        is trained on ``train_sample`` if given; otherwise on the first
        ``train_size`` rows, buffered before anything is added. Those rows
        over-represent the first classes when the chunks are sorted by class; pass
        a random ``train_sample`` (as :meth:`from_store` does) when that matters.

        Parameters
        ----------
        chunks : iterable of (features, labels) or (features, labels, items)
            ``features`` of shape (m, dim); ``labels`` / ``items`` of length m.
        n_total : int, optional
            Total number of rows, for the progress bar and IVF's ``nlist``.
        train_sample : ndarray of shape (n_train, dim), optional
            Vectors to train an IVF index on.
        progress : bool
            Show a tqdm progress bar.
        """
        from tqdm.auto import tqdm

        if train_sample is not None and not self.is_trained:
            self.train(train_sample, n_total=n_total)
        pending: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        n_pending = 0
        bar = tqdm(total=n_total, unit="vec", desc=f"index ({self.kind})", **tqdm_kwargs(progress))
        try:
            for chunk in chunks:
                feats, labels = chunk[0], chunk[1]
                items = chunk[2] if len(chunk) > 2 else None
                if self._spec.needs_training and not self.is_trained:
                    pending.append((np.asarray(feats, dtype=np.float32), labels, items))
                    n_pending += len(labels)
                    if n_pending >= self._train_size():
                        self._flush_pending(pending, n_total)
                        pending = []
                else:
                    self.add(feats, labels, items)
                bar.update(len(labels))
            if pending:
                self._flush_pending(pending, n_total)
        finally:
            bar.close()
        return self

    def _flush_pending(self, pending: list, n_total: int | None) -> None:
        feats = np.concatenate([p[0] for p in pending])
        sample = feats[self._sample_rows(feats.shape[0])]
        self.train(sample, n_total=n_total or feats.shape[0])
        for f, lab, it in pending:
            self.add(f, lab, it)

    @classmethod
    def from_arrays(
        cls,
        x: np.ndarray,
        labels: Sequence[str] | np.ndarray,
        items: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FeatureIndex:
        """Build an index from in-memory arrays (``kwargs`` go to the constructor)."""
        return cls(**kwargs).add(x, labels, items)

    @classmethod
    def from_store(
        cls,
        store: FeatureStore | str | os.PathLike,
        *,
        progress: bool = True,
        **kwargs: Any,
    ) -> FeatureIndex:
        """Build an index from an on-disk feature store, shard by shard.

        Shards are memory-mapped and added one at a time, so a database larger than
        memory can be indexed (the index itself holds n × dim float32).  An IVF index
        is trained on a seeded random sample drawn across all shards.

        Parameters
        ----------
        store : FeatureStore or path
            A store written by ``fmri2image extract`` (see
            :func:`fmri2image.features.shards.open_feature_store`).
        progress : bool
            Show a progress bar.
        **kwargs
            Passed to the constructor (``kind``, ``metric``, ``params``, ...).
        """
        from fmri2image.features.shards import open_feature_store

        if not hasattr(store, "iter_shards"):
            store = open_feature_store(store)
        index = cls(**kwargs)
        n = store.n
        if n == 0:
            raise MissingImageError(
                f"Feature store {store.path} holds no feature rows; extract features first."
            )
        wnids, paths = store.wnids, store.paths
        train_sample = None
        if index._spec.needs_training:
            rows = index._sample_rows(n)
            train_sample = _gather_rows(store, rows)

        def chunks() -> Iterator[tuple[np.ndarray, Sequence[str], Sequence[str]]]:
            row = 0
            for shard in store.iter_shards():
                m = shard.features.shape[0]
                yield shard.features, wnids[row : row + m], paths[row : row + m]
                row += m

        return index.add_chunks(chunks(), n_total=n, train_sample=train_sample, progress=progress)

    # -- searching ------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar database rows of each query.

        Parameters
        ----------
        queries : ndarray of shape (n_queries, dim)
            Query embeddings (e.g. embeddings predicted from fMRI).
        k : int
            Neighbours per query (at most ``ntotal``).

        Returns
        -------
        similarities : ndarray of shape (n_queries, k), float32
            Cosine similarity (``metric="cosine"``) or inner product, descending.
        indices : ndarray of shape (n_queries, k), int64
            Database rows; ``-1`` where an approximate index found fewer than ``k``.
        """
        if self.ntotal == 0:
            raise ConfigError("The index is empty; add database vectors before searching.")
        if k < 1:
            raise ConfigError(f"k must be a positive integer, got {k}.")
        k = min(int(k), self.ntotal)
        q = self._prepare(queries, "queries")
        if self.kind == "flat" and self.params_.get("backend", "numpy") == "numpy":
            return self._search_numpy(q, k)
        with _omp_threads(self.threads):
            sims, idx = self._index.search(q, k)
        return sims.astype(np.float32, copy=False), idx.astype(np.int64, copy=False)

    def database_vectors(self) -> np.ndarray:
        """Zero-copy view of a flat index's stored (normalized) vectors, (ntotal, dim).

        Valid while the index lives and is not modified.
        """
        if self.kind != "flat" or self._index is None:
            raise ConfigError("Only a non-empty 'flat' index stores its vectors uncompressed.")
        faiss = _faiss()
        n, d = self.ntotal, self.dim_
        return faiss.rev_swig_ptr(faiss.downcast_index(self._index).get_xb(), n * d).reshape(n, d)

    def _search_numpy(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by blocked matrix products (numpy's BLAS) and partial sorts.

        Same result as ``IndexFlatIP.search``; on our 2-core test machine faiss's bundled
        BLAS ran this GEMM about 4x slower than numpy's.  Memory beyond the index:
        one (n_queries, block) similarity block of ``block_elements`` floats.
        """
        from threadpoolctl import threadpool_limits

        xb = self.database_vectors()
        n, m = xb.shape[0], q.shape[0]
        block = max(1024, int(self.params_.get("block_elements") or 1 << 24) // max(m, 1))
        best_s = np.full((m, k), -np.inf, dtype=np.float32)
        best_i = np.full((m, k), -1, dtype=np.int64)
        rows = np.arange(m)[:, None]
        top_k = _top_k_selector()
        with threadpool_limits(limits=self.threads, user_api="blas"):
            for start in range(0, n, block):
                sims = q @ xb[start : start + block].T  # (m, b)
                part = top_k(sims, min(k, sims.shape[1]))
                cand_s = np.concatenate([best_s, sims[rows, part]], axis=1)
                cand_i = np.concatenate([best_i, part + start], axis=1)
                keep = np.argpartition(cand_s, cand_s.shape[1] - k, axis=1)[:, -k:]
                best_s, best_i = cand_s[rows, keep], cand_i[rows, keep]
        # Descending similarity; ties by ascending row (deterministic).
        order = np.lexsort((best_i, -best_s), axis=1)
        return best_s[rows, order], best_i[rows, order]

    def labels_of(self, indices: np.ndarray) -> np.ndarray:
        """Labels of database rows; ``""`` where ``indices`` is -1. Same shape as input."""
        indices = np.asarray(indices)
        out = self.labels_[np.where(indices >= 0, indices, 0)]
        return np.where(indices >= 0, out, "")

    # -- storage --------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the index to ``directory`` (created); returns its path.

        Files: ``index.faiss`` (``faiss.write_index``), ``labels.npy``, optional
        ``items.npy``, and ``index.json`` (written last: its presence marks a
        complete index; it records the SHA-256 of each other file, checked by
        :meth:`load`).
        """
        faiss = _faiss()
        if self._index is None:
            raise ConfigError("Cannot save an empty index; add database vectors first.")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "index.faiss") as tmp:
            faiss.write_index(self._index, str(tmp))
        save_npy(directory / "labels.npy", self.labels_)
        items = self.items_
        if items is not None:
            save_npy(directory / "items.npy", items)
        else:
            (directory / "items.npy").unlink(missing_ok=True)
        from fmri2image import __version__

        names = ["index.faiss", "labels.npy"] + (["items.npy"] if items is not None else [])
        save_json(
            directory / "index.json",
            {
                "files": {name: file_sha256(directory / name) for name in names},
                "format": INDEX_FORMAT,
                "format_version": INDEX_FORMAT_VERSION,
                "kind": self.kind,
                "metric": self.metric,
                "normalized": self.metric == "cosine",
                "params": {k: v for k, v in self.params_.items() if k != "seed"},
                "seed": self.seed,
                "dim": self.dim_,
                "ntotal": self.ntotal,
                "n_classes": len(self.classes_),
                "has_items": items is not None,
                "versions": {"fmri2image": __version__, "faiss": faiss.__version__},
            },
        )
        return directory

    @classmethod
    def load(
        cls, directory: str | os.PathLike, *, threads: int | None = None, mmap: bool = False
    ) -> FeatureIndex:
        """Read an index written by :meth:`save`.

        Parameters
        ----------
        directory : path-like
        threads : int, optional
            See the constructor.
        mmap : bool
            Memory-map the vectors instead of reading them (flat indexes), for
            databases larger than memory.
        """
        faiss = _faiss()
        directory = Path(directory)
        meta = load_versioned_json(
            directory / "index.json",
            fmt=INDEX_FORMAT,
            max_version=INDEX_FORMAT_VERSION,
            what="a saved retrieval index",
            how_to_create="Build one with FeatureIndex(...).save(directory).",
        )
        _verify_index_files(directory, meta)
        params = {k: v for k, v in meta["params"].items() if v is not None}
        kind_defaults = INDEX_KINDS.get(meta["kind"]).defaults
        params = {k: v for k, v in params.items() if k in kind_defaults}
        index = cls(
            meta["kind"], metric=meta["metric"], params=params, threads=threads,
            seed=int(meta.get("seed", 0)),
        )  # fmt: skip
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index._index = faiss.read_index(str(directory / "index.faiss"), flags)
        except RuntimeError as exc:  # faiss reports damage as RuntimeError
            raise DataFormatError(
                f"{directory / 'index.faiss'} cannot be read by faiss ({exc}); rebuild the "
                "index (delete the folder and run the command again)."
            ) from exc
        index.params_.update(meta["params"])
        index._spec.tune(index._index, index.params_)
        index.dim_ = int(meta["dim"])
        labels = np.load(directory / "labels.npy", allow_pickle=False)
        index._labels = [labels]
        index._items = (
            [np.load(directory / "items.npy", allow_pickle=False)]
            if meta.get("has_items")
            else None
        )
        if index.ntotal != labels.shape[0] or index._index.d != index.dim_:
            raise DataFormatError(
                f"{directory}: index.faiss holds {index.ntotal} vectors of dim "
                f"{index._index.d} but labels.npy/index.json say {labels.shape[0]} / "
                f"{index.dim_}; the files come from different builds. Rebuild the index."
            )
        return index


def _verify_index_files(directory: Path, meta: dict[str, Any]) -> None:
    """Every file of a saved index matches the SHA-256 its index.json records.

    An index with changed bytes would load and return wrong neighbours, so a
    mismatch, a missing file or an index saved without checksums is refused.
    Hashing reads each file once (about 1 GB/s here).
    """
    files = meta.get("files")
    fix = "Delete the folder and run the command again to rebuild the index."
    if not isinstance(files, dict) or "index.faiss" not in files:
        raise DataFormatError(
            f"{directory} holds an index saved without file checksums (an older fmri2image), "
            f"so it cannot be verified. {fix}"
        )
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise DataFormatError(f"{path} is missing from the saved index. {fix}")
        if file_sha256(path) != digest:
            raise DataFormatError(
                f"{path} does not match the SHA-256 recorded in {directory / 'index.json'}: "
                f"the file changed after the index was saved. {fix}"
            )


def _gather_rows(store: FeatureStore, rows: np.ndarray) -> np.ndarray:
    """Rows (sorted, global) of a store as float32, read shard by shard from the memmaps."""
    out = np.empty((len(rows), store.dim), dtype=np.float32)
    start, pos = 0, 0
    for shard in store.iter_shards():
        m = shard.features.shape[0]
        stop = np.searchsorted(rows, start + m)
        if stop > pos:
            out[pos:stop] = shard.features[rows[pos:stop] - start]
            pos = stop
        start += m
    return out
