"""How well predicted embeddings match the true ones, before any image is generated.

Every score is reported with what it must be compared with:

* ``chance``: the expected score of a map that carries no information about *which*
  image was seen (identification metrics: 0.5 for pairwise, ``1/n`` for n-way);
* ``baseline``: the score of the trivial map that always predicts the
  training-mean embedding (requires ``Y_train_mean``). CNN features are
  non-negative after pooling, so this baseline already reaches a cosine of ~0.5
  or more; a raw cosine or pattern correlation means nothing without it
  (FIELD.md §4).

Correlations between images are Pearson correlations across embedding dimensions,
``r[i, j] = corr(Y_true[i], Y_pred[j])``, as in MindEye / Brain-Diffuser's
identification tests (:mod:`fmri2image.evaluation.identification`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image._io import atomic_path, save_json
from fmri2image.errors import DataFormatError
from fmri2image.evaluation.base import get_metric, list_metrics
from fmri2image.evaluation.identification import (
    _pair,
    correlation_distance,
    nway_identification,
    two_way_identification,
)
from fmri2image.mapping import score_columns

__all__ = ["MetricResult", "PredictionMetrics", "prediction_metrics"]


@dataclass(frozen=True)
class MetricResult:
    """One summary score beside its references.

    Attributes
    ----------
    value : float
    chance : float or None
        Expected score without image-specific information (None if not defined).
    baseline : float or None
        Score of always predicting the training-mean embedding (None if no
        training mean was given or the metric is undefined for it).
    higher_is_better : bool
    description : str
    """

    value: float
    chance: float | None
    baseline: float | None
    higher_is_better: bool
    description: str


@dataclass(frozen=True)
class PredictionMetrics:
    """Result of :func:`prediction_metrics`.

    Attributes
    ----------
    summary : dict of str to MetricResult
        One entry per ``"embedding"`` metric of the registry
        (:func:`~fmri2image.evaluation.base.list_metrics`).
    per_image : dict of str to ndarray of shape (n_images,)
        Columns ``image`` (index or id), ``cosine``, ``pattern_correlation``,
        ``pairwise_identification``, ``nway_rank`` (1 = own image ranked first),
        ``nway_hit``, ``rmse``, and ``baseline_cosine`` / ``baseline_pattern_correlation``
        when a training mean was given.
    per_dimension : dict of str to ndarray of shape (n_dims,)
        ``r2`` and ``pearson_r`` per embedding dimension.
    n_images, n_dims : int
    """

    summary: dict[str, MetricResult]
    per_image: dict[str, np.ndarray]
    per_dimension: dict[str, np.ndarray]
    n_images: int
    n_dims: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no per-image arrays)."""
        return {
            "n_images": self.n_images,
            "n_dims": self.n_dims,
            "metrics": {
                name: {
                    "value": m.value,
                    "chance": m.chance,
                    "baseline": m.baseline,
                    "higher_is_better": m.higher_is_better,
                    "description": m.description,
                }
                for name, m in self.summary.items()
            },
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``summary.json``, ``per_image.parquet`` and ``per_dimension.parquet``.

        Each file is written atomically.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_json(folder / "summary.json", self.to_dict())
        for name, table in (("per_image", self.per_image), ("per_dimension", self.per_dimension)):
            with atomic_path(folder / f"{name}.parquet") as tmp:
                pq.write_table(pa.table({k: np.asarray(v) for k, v in table.items()}), tmp)
        return folder

    def __str__(self) -> str:
        lines = [f"prediction metrics ({self.n_images} images, {self.n_dims} dims)"]
        for name, m in self.summary.items():
            ref = []
            if m.chance is not None:
                ref.append(f"chance {m.chance:.3f}")
            if m.baseline is not None:
                ref.append(f"train-mean baseline {m.baseline:.3f}")
            arrow = "higher" if m.higher_is_better else "lower"
            lines.append(
                f"  {name:<24} {m.value:8.4f}  ({', '.join(ref) or 'no reference'}; {arrow} is better)"
            )
        return "\n".join(lines)


def _cosine_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    return (A * B).sum(axis=1) / np.where(na * nb > 0, na * nb, 1.0)


def _pattern_r_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return 1.0 - correlation_distance(A, B)


def _r2(Y_true: np.ndarray, Y_pred: np.ndarray) -> tuple[np.ndarray, float, float]:
    per_dim = score_columns(Y_true, Y_pred, "r2")
    ss_tot = np.square(Y_true - Y_true.mean(axis=0)).sum(axis=0)
    weighted = (
        float(np.average(per_dim, weights=ss_tot)) if ss_tot.sum() > 0 else float(per_dim.mean())
    )
    return per_dim, float(per_dim.mean()), weighted


def prediction_metrics(
    Y_true: Any,
    Y_pred: Any,
    Y_train_mean: Any = None,
    *,
    image_ids: Any = None,
) -> PredictionMetrics:
    """Score predicted embeddings against the true ones.

    Parameters
    ----------
    Y_true : array-like of shape (n_images, n_dims)
        True embeddings of the test images (one row per image; average the
        repetitions of an image before scoring).
    Y_pred : array-like of shape (n_images, n_dims)
        Predicted embeddings, row-aligned with ``Y_true``.
    Y_train_mean : array-like of shape (n_dims,), optional
        Mean training embedding; enables the trivial-baseline column (strongly
        recommended: without it no embedding-space score can be interpreted).
    image_ids : sequence of str, optional
        Ids for the ``image`` column of ``per_image`` (default: 0..n-1).

    Returns
    -------
    PredictionMetrics
    """
    T, P = (np.asarray(A, dtype=np.float64) for A in _pair(Y_true, Y_pred, min_images=2))
    n, d = T.shape
    base = None
    if Y_train_mean is not None:
        m = np.asarray(Y_train_mean, dtype=np.float64).ravel()
        if m.shape != (d,) or not np.all(np.isfinite(m)):
            raise DataFormatError(
                f"Y_train_mean must be a finite vector of length {d} (the mean training embedding); "
                f"got shape {np.shape(Y_train_mean)}."
            )
        base = np.broadcast_to(m, T.shape)

    def scores(Pred: np.ndarray) -> dict[str, Any]:
        r2_dim, r2_u, r2_w = _r2(T, Pred)
        cos = _cosine_rows(Pred, T)
        pat = _pattern_r_rows(Pred, T)
        pair = two_way_identification(T, Pred)
        hit, rank = nway_identification(T, Pred)
        return {
            "r2_dim": r2_dim,
            "r2_uniform": r2_u,
            "r2_variance_weighted": r2_w,
            "rmse": float(np.sqrt(np.mean(np.square(T - Pred)))),
            "rmse_img": np.sqrt(np.mean(np.square(T - Pred), axis=1)),
            "cos": cos,
            "pat": pat,
            "pair": pair,
            "hit": hit,
            "rank": rank,
        }

    s = scores(P)
    b = scores(base) if base is not None else None
    pearson_dim = score_columns(T, P, "correlation")
    values = {
        "r2_uniform": (s["r2_uniform"], b and b["r2_uniform"]),
        "r2_variance_weighted": (s["r2_variance_weighted"], b and b["r2_variance_weighted"]),
        "rmse": (s["rmse"], b and b["rmse"]),
        "cosine": (float(s["cos"].mean()), b and float(b["cos"].mean())),
        "pattern_correlation": (float(s["pat"].mean()), b and float(b["pat"].mean())),
        "dimension_correlation": (float(pearson_dim.mean()), None),
        "pairwise_identification": (float(s["pair"].mean()), b and float(b["pair"].mean())),
        "nway_top1": (float(s["hit"].mean()), b and float(b["hit"].mean())),
    }
    for m in list_metrics("embedding"):  # registered ones with a score (a plugin's)
        if m.score is not None and m.name not in values:
            value = float(np.nanmean(m.score(T, P, seed=0)))
            bv = float(np.nanmean(m.score(T, base, seed=0))) if base is not None else None
            values[m.name] = (value, bv)
    summary = {
        name: MetricResult(
            value=float(v),
            chance=get_metric(name).chance_for(n),
            baseline=None if bv is None else float(bv),
            higher_is_better=get_metric(name).higher_is_better,
            description=get_metric(name).description,
        )
        for name, (v, bv) in values.items()
    }
    ids = np.arange(n) if image_ids is None else np.asarray([str(i) for i in image_ids])
    if ids.shape != (n,):
        raise DataFormatError(
            f"image_ids must have {n} entries, one per test image; got {ids.shape}."
        )
    per_image: dict[str, np.ndarray] = {
        "image": ids,
        "cosine": s["cos"],
        "pattern_correlation": s["pat"],
        "pairwise_identification": s["pair"],
        "nway_rank": s["rank"],
        "nway_hit": s["hit"],
        "rmse": s["rmse_img"],
    }
    if b is not None:
        per_image["baseline_cosine"] = b["cos"]
        per_image["baseline_pattern_correlation"] = b["pat"]
    per_dimension = {"r2": s["r2_dim"], "pearson_r": pearson_dim}
    return PredictionMetrics(
        summary=summary, per_image=per_image, per_dimension=per_dimension, n_images=n, n_dims=d
    )
