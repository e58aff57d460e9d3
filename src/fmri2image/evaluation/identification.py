"""Identification and distance scores between two sets of feature vectors.

Pure functions, one argument order everywhere: ``(y_true, y_pred)``, row ``i`` of
each is the same image.  They serve both the embedding-space metrics (predicted vs
true stimulus embeddings, before any image exists) and the image metrics (features of
reconstructions vs features of the seen images, from AlexNet, Inception, CLIP, ...).

* :func:`two_way_identification` — MindEye / Brain-Diffuser's ``two_way_identification``
  (``src/Reconstruction_Metrics.py``): ``r = np.corrcoef(gt, rec)[:N, N:]``,
  ``success = r < np.diag(r)`` column by column, score ``success.sum(0) / (N - 1)``.
  Exhaustive over all pairs (no random sampling); chance 0.5.  Equivalently, for
  reconstruction ``j``: the share of the other ground truths ``i`` whose correlation
  with it is strictly lower than its own ground truth's.
* :func:`nway_identification` — the same correlations, top-1 among all ``n`` images
  (chance ``1/n``); ties count as misses.
* :func:`correlation_distance` — ``scipy.spatial.distance.correlation`` per pair
  (EffNet-B1 and SwAV rows of the papers' tables; lower is better).
* :func:`nway_classifier_top1` — MinD-Vis' n-way top-1 (``code/eval_metrics.py``,
  ``get_n_way_top_k_acc``): a classifier's argmax on the ground truth defines the
  class; per trial ``n_way - 1`` other classes are drawn and the trial is a hit when
  the true class has the highest probability for the reconstruction; chance
  ``1 / n_way``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from fmri2image.errors import DataFormatError

__all__ = [
    "correlation_distance",
    "correlation_matrix",
    "nway_classifier_top1",
    "nway_identification",
    "two_way_identification",
]

#: Above this many values per side, rows are standardized in float32 (AlexNet's
#: ``features.4`` is 184,512 values per image; float64 copies of 1000 images would
#: need 3 GB).  float32 correlations agree with float64 to about 1e-6.
_FLOAT64_LIMIT = 50_000_000


def _features(name: str, A: Any) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim < 2:
        raise DataFormatError(
            f"{name} must have one row per image (n_images, n_features); got shape {A.shape}."
        )
    A = A.reshape(A.shape[0], -1)
    if not np.issubdtype(A.dtype, np.floating) and not np.issubdtype(A.dtype, np.integer):
        raise DataFormatError(f"{name} must be numeric; got dtype {A.dtype}.")
    if not np.all(np.isfinite(A)):
        raise DataFormatError(f"{name} contains NaN or infinite values.")
    return A


def _pair(y_true: Any, y_pred: Any, *, min_images: int = 1) -> tuple[np.ndarray, np.ndarray]:
    T = _features("y_true", y_true)
    P = _features("y_pred", y_pred)
    if T.shape != P.shape:
        raise DataFormatError(
            f"y_true {T.shape} and y_pred {P.shape} must have the same shape (row i of each is "
            "the same image)."
        )
    if T.shape[0] < min_images:
        raise DataFormatError(
            f"Identification needs at least {min_images} images; got {T.shape[0]}."
        )
    return T, P


def _row_standardize(A: np.ndarray) -> np.ndarray:
    """Rows centered and scaled to unit norm (constant rows become 0)."""
    dtype = np.float64 if A.size <= _FLOAT64_LIMIT else np.float32
    out = np.array(A, dtype=dtype, copy=True)
    out -= out.mean(axis=1, keepdims=True, dtype=np.float64).astype(dtype)
    norm = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))[:, None]
    out /= np.where(norm > 0, norm, 1.0).astype(dtype)
    return out


def correlation_matrix(y_true: Any, y_pred: Any) -> np.ndarray:
    """Pearson correlation between every ground truth and every prediction.

    Parameters
    ----------
    y_true : array-like of shape (n_true, ...)
        Features of the ground-truth images (trailing axes are flattened).
    y_pred : array-like of shape (n_pred, ...)
        Features of the predictions, with the same number of values per row.

    Returns
    -------
    r : ndarray of shape (n_true, n_pred), float64
        ``r[i, j] = corr(y_true[i], y_pred[j])``, i.e. ``np.corrcoef(gt, rec)[:N, N:]``
        (0 where a row is constant).
    """
    T = _features("y_true", y_true)
    P = _features("y_pred", y_pred)
    if T.shape[1] != P.shape[1]:
        raise DataFormatError(
            f"y_true has {T.shape[1]} values per row and y_pred {P.shape[1]}; they must be "
            "features of the same network layer."
        )
    return np.asarray(_row_standardize(T) @ _row_standardize(P).T, dtype=np.float64)


def two_way_identification(y_true: Any, y_pred: Any) -> np.ndarray:
    """Two-way identification per image, exhaustive over all pairs (chance 0.5).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_images, ...)
        Ground-truth and predicted features, row-aligned; ``n_images >= 2``.

    Returns
    -------
    score : ndarray of shape (n_images,)
        For prediction ``j``: ``mean_{i != j} [r[i, j] < r[j, j]]`` with
        ``r = correlation_matrix(y_true, y_pred)``; its mean is MindEye's
        ``two_way_identification`` value.
    """
    T, P = _pair(y_true, y_pred, min_images=2)
    r = correlation_matrix(T, P)
    below = (r < np.diag(r)[None, :]).sum(axis=0)  # the diagonal is never below itself
    return below / (r.shape[0] - 1)


def nway_identification(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """n-way identification among the ``n`` images themselves (top-1 chance ``1/n``).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_images, ...)

    Returns
    -------
    hit : ndarray of bool, shape (n_images,)
        The prediction's own ground truth correlates strictly best with it.
    rank : ndarray of int, shape (n_images,)
        1 + the number of other ground truths correlating at least as well (1 = best).
    """
    T, P = _pair(y_true, y_pred, min_images=2)
    r = correlation_matrix(T, P)
    not_below = (r >= np.diag(r)[None, :]).sum(axis=0) - 1  # exclude the diagonal itself
    rank = 1 + not_below
    return rank == 1, rank


def correlation_distance(y_true: Any, y_pred: Any) -> np.ndarray:
    """``1 - Pearson r`` between each prediction and its own ground truth (lower is better).

    Equals ``scipy.spatial.distance.correlation(y_true[i], y_pred[i])`` row by row.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_images, ...)

    Returns
    -------
    distance : ndarray of shape (n_images,), in [0, 2]
    """
    T, P = _pair(y_true, y_pred)
    r = np.einsum("ij,ij->i", _row_standardize(T), _row_standardize(P), dtype=np.float64)
    return 1.0 - r


def nway_classifier_top1(
    p_true: Any,
    p_pred: Any,
    *,
    n_way: int = 50,
    n_trials: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """MinD-Vis n-way top-1 accuracy per image (chance ``1 / n_way``).

    Parameters
    ----------
    p_true : array-like of shape (n_images, n_classes)
        Classifier probabilities (or logits: only the argmax is used) of the ground
        truths; the argmax defines each image's class.
    p_pred : array-like of shape (n_images, n_classes)
        Classifier probabilities of the reconstructions.
    n_way : int, default 50
        Candidates per trial: the true class and ``n_way - 1`` others drawn uniformly
        without replacement from the remaining classes.
    n_trials : int, default 1000
        Trials per image.
    seed : int, default 0
        Seed of the draws (``numpy.random.default_rng``); image ``i`` uses the stream
        ``(seed, i)``, so a score does not depend on which other images are evaluated.

    Returns
    -------
    accuracy : ndarray of shape (n_images,)
        Share of trials in which the true class has strictly the highest probability
        among the ``n_way`` candidates (ties count as misses).
    """
    T, P = _pair(p_true, p_pred)
    n_classes = T.shape[1]
    if not 2 <= n_way <= n_classes:
        raise DataFormatError(
            f"n_way must be between 2 and the number of classes ({n_classes}); got {n_way}."
        )
    if n_trials < 1:
        raise DataFormatError(f"n_trials must be >= 1; got {n_trials}.")
    true_class = T.argmax(axis=1)
    out = np.empty(T.shape[0])
    for i, c in enumerate(true_class):
        others = np.delete(P[i], c)  # probabilities of the n_classes - 1 other classes
        drawn = _nway_draws(seed, i, n_classes, n_way, n_trials)
        out[i] = np.mean(P[i, c] > others[drawn].max(axis=1))
    return out


@functools.lru_cache(maxsize=512)
def _nway_draws(seed: int, i: int, n_classes: int, n_way: int, n_trials: int) -> np.ndarray:
    """The candidate classes of image ``i``'s trials, shape (n_trials, n_way - 1).

    Positions among the ``n_classes - 1`` classes other than the true one: ``n_way - 1``
    distinct ones per trial, the smallest of random keys (a uniform draw without
    replacement, vectorized over trials).  They depend on nothing but the arguments,
    so a run that scores many picture sets draws them once (cached, read-only).
    """
    rng = np.random.default_rng([seed, i])
    keys = rng.random((n_trials, n_classes - 1))
    drawn = np.argpartition(keys, n_way - 2, axis=1)[:, : n_way - 1]
    drawn.flags.writeable = False
    return drawn
