"""Cross-validation pieces: folds, training-only statistics, voxel selection, scores.

Everything here is computed from the samples it is given and nothing else: callers
pass the *training part* of a fold (or of the whole data set) to :func:`fit_scaler`
and :func:`select_voxels`, and apply the result to held-out samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmri2image.errors import ConfigError

__all__ = [
    "SCORE_POOLINGS",
    "SCORINGS",
    "PooledScores",
    "Scaler",
    "fit_scaler",
    "fit_transform_scaler",
    "make_folds",
    "score_columns",
    "score_residuals",
    "select_voxels",
]

SCORINGS = ("r2", "correlation")
#: How validation scores of several folds are combined (see :class:`PooledScores`).
SCORE_POOLINGS = ("pooled", "fold-mean")


@dataclass(frozen=True)
class Scaler:
    """Per-column affine map ``(A - mean) / scale`` estimated on training rows.

    Attributes
    ----------
    mean : ndarray of shape (n_columns,)
    scale : ndarray of shape (n_columns,)
        Standard deviation (``ddof=0``, as :class:`sklearn.preprocessing.StandardScaler`),
        1 for constant columns, or all ones when scaling is off (centering only).
    """

    mean: np.ndarray
    scale: np.ndarray

    def transform(self, A: np.ndarray) -> np.ndarray:
        return (A - self.mean) / self.scale

    def inverse_transform(self, A: np.ndarray) -> np.ndarray:
        return A * self.scale + self.mean


def fit_scaler(A: np.ndarray, *, scale: bool) -> Scaler:
    """Column means (and standard deviations when ``scale``) of the training rows ``A``.

    Parameters
    ----------
    A : ndarray of shape (n_samples, n_columns)
        Training rows only.
    scale : bool
        If False, only center (``scale`` is all ones): the intercept is still fitted.
    """
    return fit_transform_scaler(A, scale=scale, transform=False)[0]


def _constant_columns_to_one(std: np.ndarray, mean: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # StandardScaler's convention: a constant column is centered, not divided by ~0.
    return np.where(std < 10 * np.finfo(dtype).eps * np.maximum(np.abs(mean), 1), 1, std)


def fit_transform_scaler(
    A: np.ndarray, *, scale: bool, transform: bool = True, overwrite: bool = False
) -> tuple[Scaler, np.ndarray | None]:
    """:func:`fit_scaler` and ``Scaler.transform(A)`` in fewer passes over ``A``.

    The centered copy that the standard deviation needs is the transform's first
    step; it is scaled in place.  Values are those of ``fit_scaler(A).transform(A)``
    (same operations in the same order).

    Parameters
    ----------
    A : ndarray of shape (n_samples, n_columns)
        Training rows only.
    scale : bool
        As for :func:`fit_scaler`.
    transform : bool, default=True
        Also return the transformed rows; if False the second element is None.
    overwrite : bool, default=False
        Transform ``A`` itself in place (it must be a writable array that the
        caller owns, e.g. a fancy-indexed copy).

    Returns
    -------
    scaler : Scaler
    A_z : ndarray of shape (n_samples, n_columns) or None
    """
    mean = A.mean(axis=0)
    if not (scale or transform):
        return Scaler(mean=mean.astype(A.dtype), scale=np.ones_like(mean, dtype=A.dtype)), None
    centered = np.subtract(A, mean, out=A if overwrite else None)
    if scale:
        # As numpy's std: mean of the squared deviations (divided by n), square root.
        std = np.sqrt(np.square(centered).sum(axis=0) / A.shape[0])
        std = _constant_columns_to_one(std, mean, A.dtype)
    else:
        std = np.ones_like(mean)
    scaler = Scaler(mean=mean.astype(A.dtype), scale=std.astype(A.dtype))
    if not transform:
        return scaler, None
    if scale:
        centered /= scaler.scale
    return scaler, centered


def select_voxels(
    X: np.ndarray, Y: np.ndarray, n_voxels: int, *, n_targets_batch: int | None = None
) -> np.ndarray:
    """Keep the voxels most correlated with the targets, from training rows only.

    Each voxel ``v`` is scored by its mean squared Pearson correlation with the
    targets, ``mean_j r(x_v, y_j)^2`` (the average univariate R²), and the
    ``n_voxels`` best are kept.  One voxel set is shared by all targets so that one
    factorization serves every target (the official GOD code instead selects
    voxels separately for each feature unit and fits one model per unit).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training inputs (never include held-out samples).
    Y : ndarray of shape (n_samples, n_targets)
        Training targets.
    n_voxels : int
        How many voxels to keep (``<= n_features``).
    n_targets_batch : int, optional
        Targets processed at once (memory bound for the (n_features, batch) block).

    Returns
    -------
    indices : ndarray of shape (n_voxels,)
        Selected column indices, ascending.
    """
    Xz = fit_scaler(X, scale=True).transform(X)
    Yz = fit_scaler(Y, scale=True).transform(Y)
    n, n_targets = Y.shape
    batch = n_targets_batch or n_targets
    score = np.zeros(X.shape[1], dtype=np.float64)
    for start in range(0, n_targets, batch):
        r = (Xz.T @ Yz[:, start : start + batch]) / n
        score += np.square(r, dtype=np.float64).sum(axis=1)
    # Stable sort on -score: ties go to the lower index, deterministically.
    keep = np.argsort(-score, kind="stable")[:n_voxels]
    return np.sort(keep)


def make_folds(
    n_samples: int,
    cv: Any,
    groups: np.ndarray | None = None,
    random_state: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/validation index pairs.

    Parameters
    ----------
    n_samples : int
    cv : int or cross-validation splitter
        An int ``k`` gives ``k`` folds: :class:`~sklearn.model_selection.GroupKFold`
        when ``groups`` is given (no group on both sides), else
        :class:`~sklearn.model_selection.KFold` in contiguous blocks (the samples
        of an fMRI session are ordered in time and autocorrelated, so contiguous
        folds are the conservative default) or shuffled with ``random_state``
        when one is given.  Any object with a scikit-learn ``split`` method is
        used as is.
    groups : ndarray of shape (n_samples,), optional
        Group label per sample (e.g. the stimulus category).
    random_state : int, optional
        Seed for shuffled ``KFold``; None keeps contiguous blocks.
    """
    from sklearn.model_selection import GroupKFold, KFold

    if isinstance(cv, (int, np.integer)) and not isinstance(cv, bool):
        if cv < 2:
            raise ConfigError(
                f"cv={cv} is not a valid number of folds; cross-validation needs at "
                "least 2 folds. Use cv=5 (default), cv='loo', or a scikit-learn splitter."
            )
        if cv > n_samples:
            raise ConfigError(
                f"cv={cv} folds is more than the {n_samples} training samples; use fewer folds."
            )
        if groups is not None:
            n_groups = len(np.unique(groups))
            if n_groups < cv:
                raise ConfigError(
                    f"cv={cv} grouped folds need at least {cv} distinct groups, but "
                    f"'groups' has {n_groups}. Use fewer folds or finer groups."
                )
            splitter: Any = GroupKFold(n_splits=int(cv))
        elif random_state is None:
            splitter = KFold(n_splits=int(cv))
        else:
            splitter = KFold(n_splits=int(cv), shuffle=True, random_state=random_state)
    elif hasattr(cv, "split"):
        splitter = cv
    else:
        raise ConfigError(
            f"cv={cv!r} is not understood. Pass a number of folds (e.g. 5), 'loo' for "
            "efficient leave-one-out, or a scikit-learn splitter such as GroupKFold(5)."
        )
    dummy = np.zeros((n_samples, 1))
    folds = [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(dummy, groups=groups)]
    if not folds:
        raise ConfigError(f"the cross-validation splitter {cv!r} produced no folds.")
    return folds


def score_columns(Y_true: np.ndarray, Y_pred: np.ndarray, scoring: str) -> np.ndarray:
    """Score each target column.

    Parameters
    ----------
    Y_true, Y_pred : ndarray of shape (n_samples, n_targets)
    scoring : {"r2", "correlation"}
        ``"r2"``: coefficient of determination ``1 - SS_res / SS_tot`` with
        ``SS_tot`` about the mean of ``Y_true`` (as :func:`sklearn.metrics.r2_score`;
        a constant column scores 1 if predicted exactly, else 0).
        ``"correlation"``: Pearson r (0 where either side is constant).

    Returns
    -------
    scores : ndarray of shape (n_targets,), float64
    """
    Y_true = np.asarray(Y_true, dtype=np.float64)
    Y_pred = np.asarray(Y_pred, dtype=np.float64)
    if scoring == "r2":
        ss_res = np.square(Y_true - Y_pred).sum(axis=0)
        ss_tot = np.square(Y_true - Y_true.mean(axis=0)).sum(axis=0)
        ok = ss_tot > 0
        out = np.where(ss_res == 0, 1.0, 0.0)
        out[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
        return out
    if scoring == "correlation":
        t = Y_true - Y_true.mean(axis=0)
        p = Y_pred - Y_pred.mean(axis=0)
        denom = np.sqrt(np.square(t).sum(axis=0) * np.square(p).sum(axis=0))
        num = (t * p).sum(axis=0)
        out = np.zeros(Y_true.shape[1])
        ok = denom > 0
        out[ok] = num[ok] / denom[ok]
        return out
    raise ConfigError(f"scoring={scoring!r} is not supported; use one of {SCORINGS}.")


def score_residuals(
    Y_true: np.ndarray, resid: np.ndarray, scoring: str, ss_tot: np.ndarray | None = None
) -> np.ndarray:
    """:func:`score_columns` of ``Y_true`` and the predictions ``Y_true - resid``.

    R² needs only the residuals: their squares are summed in float64 without
    converting the residual matrix (nor forming the predictions).

    Parameters
    ----------
    Y_true, resid : ndarray of shape (n_samples, n_targets)
    scoring : {"r2", "correlation"}
    ss_tot : ndarray of shape (n_targets,), optional
        ``sum((Y_true - mean)^2)`` in float64, if already known.

    Returns
    -------
    scores : ndarray of shape (n_targets,), float64
    """
    if scoring != "r2":
        return score_columns(Y_true, Y_true - resid, scoring)
    if ss_tot is None:
        Y64 = np.asarray(Y_true, dtype=np.float64)
        ss_tot = np.square(Y64 - Y64.mean(axis=0)).sum(axis=0)
    ss_res = np.einsum("ij,ij->j", resid, resid, dtype=np.float64)
    ok = ss_tot > 0
    out = np.where(ss_res == 0, 1.0, 0.0)
    out[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
    return out


class PooledScores:
    """Scores of the out-of-fold predictions of all folds taken together.

    Pooled scoring concatenates every validation sample's out-of-fold prediction
    and scores each target once over all of them, as the leave-one-out path and
    ``r2_score(y, cross_val_predict(...))`` do, instead of averaging one score per
    fold.  Each fold standardizes the targets with its own training statistics,
    so predictions of different folds come in different units: they are mapped
    back to original target units (``pred * fold_scale + fold_mean``) before
    they are pooled.  Only sums over validation samples are kept (per alpha and
    target), so memory does not grow with the number of samples.  The sums are
    taken in a fixed *reference frame* ``(y - ref.mean) / ref.scale`` to keep them
    well conditioned; R² and Pearson r are invariant to such a per-target affine
    map, so the scores are those of the original units.

    With ``scoring="r2"`` the score is ``1 - SS_res / SS_tot``, ``SS_tot`` about
    the mean of the pooled validation targets; with ``"correlation"`` it is the
    Pearson r between pooled predictions and pooled targets.  Edge cases follow
    :func:`score_columns` (a constant target scores 1 if predicted exactly, else
    0 for R²; correlation is 0 where either side is constant).

    Parameters
    ----------
    n_alphas, n_targets : int
    ref : Scaler
        Reference frame, mean and scale of shape (n_targets,); normally the
        statistics of all training targets.
    scoring : {"r2", "correlation"}
    """

    def __init__(self, n_alphas: int, n_targets: int, ref: Scaler, scoring: str) -> None:
        if scoring not in SCORINGS:
            raise ConfigError(f"scoring={scoring!r} is not supported; use one of {SCORINGS}.")
        self.scoring = scoring
        self.ref_mean = np.asarray(ref.mean, dtype=np.float64)
        self.ref_scale = np.asarray(ref.scale, dtype=np.float64)
        shape = (n_alphas, n_targets)
        self.n = np.zeros(n_targets)
        self.sy = np.zeros(n_targets)
        self.syy = np.zeros(n_targets)
        self.ss_res = np.zeros(shape)
        self.sp = np.zeros(shape)
        self.spp = np.zeros(shape)
        self.spy = np.zeros(shape)

    def add_fold(
        self,
        sl: slice,
        Y_val: np.ndarray,
        preds: Iterable[np.ndarray] | np.ndarray,
        fold_scaler: Scaler | None = None,
        *,
        alphas: slice = slice(None),
        overwrite: bool = False,
    ) -> None:
        """Add one fold's validation predictions for every alpha, for targets ``sl``.

        Parameters
        ----------
        sl : slice
            Target columns concerned.
        Y_val : ndarray of shape (n_val, n_batch)
            Validation targets in original units.
        preds : iterable of ndarray of shape (n_val, n_batch), or ndarray of shape (n_alphas, n_val, n_batch)
            Predictions for each alpha of the grid (or of the part ``alphas`` of
            it), in order, in the fold's standardized target units (or original
            units if ``fold_scaler`` is None).  A stacked array is scored in its
            own floating type, with the sums accumulated in float64.
        fold_scaler : Scaler, optional
            The fold's target scaler restricted to ``sl``.
        alphas : slice, default=slice(None)
            The rows of the grid that ``preds`` holds (all by default).  The
            validation targets' own sums are added once per fold: with the
            default, or with the slice that starts at the first alpha.
        overwrite : bool, default=False
            A stacked ``preds`` may be overwritten (saves a copy).
        """
        mean, scale = self.ref_mean[sl], self.ref_scale[sl]
        T = (np.asarray(Y_val, dtype=np.float64) - mean) / scale
        if alphas.start in (None, 0):
            self.n[sl] += T.shape[0]
            self.sy[sl] += T.sum(axis=0)
            self.syy[sl] += np.square(T).sum(axis=0)
        if fold_scaler is None:
            shift, gain = -mean / scale, 1.0 / scale
        else:  # fold units -> original units -> reference frame, in one affine map
            f_mean = np.asarray(fold_scaler.mean, dtype=np.float64)
            f_scale = np.asarray(fold_scaler.scale, dtype=np.float64)
            shift, gain = (f_mean - mean) / scale, f_scale / scale
        if isinstance(preds, np.ndarray) and preds.ndim == 3:
            self._add_stack(sl, T, preds, gain, shift, alphas, overwrite)
            return
        for a, pred in zip(range(self.ss_res.shape[0])[alphas], preds, strict=False):
            P = np.asarray(pred, dtype=np.float64) * gain + shift
            if self.scoring == "r2":
                self.ss_res[a, sl] += np.square(T - P).sum(axis=0)
            else:
                self.sp[a, sl] += P.sum(axis=0)
                self.spp[a, sl] += np.square(P).sum(axis=0)
                self.spy[a, sl] += (P * T).sum(axis=0)

    def _add_stack(
        self,
        sl: slice,
        T: np.ndarray,
        P: np.ndarray,
        gain: np.ndarray,
        shift: np.ndarray,
        alphas: slice,
        overwrite: bool,
    ) -> None:
        # In place, in P's type (float32 by default: the predictions' own
        # precision), with float64 accumulation of the sums over samples.
        if not (overwrite and P.flags.writeable and P.dtype.kind == "f"):
            P = np.array(P, dtype=np.result_type(P.dtype, np.float32))
        dt = P.dtype
        rows = range(self.ss_res.shape[0])[alphas]
        rows = slice(rows.start, rows.stop)
        if self.scoring == "r2":
            # (gain P + shift - T)^2 = gain^2 (P - (T - shift) / gain)^2: the
            # targets move into the fold's units (gain > 0), one pass over P fewer.
            P -= ((T - shift) / gain).astype(dt)
            np.square(P, out=P)
            self.ss_res[rows, sl] += np.square(gain) * P.sum(axis=1, dtype=np.float64)
            return
        P *= gain.astype(dt)
        P += shift.astype(dt)
        self.sp[rows, sl] += P.sum(axis=1, dtype=np.float64)
        self.spy[rows, sl] += np.einsum("kij,ij->kj", P, T.astype(dt), dtype=np.float64)
        np.square(P, out=P)
        self.spp[rows, sl] += P.sum(axis=1, dtype=np.float64)

    def scores(self) -> np.ndarray:
        """Pooled score per alpha and target, ndarray of shape (n_alphas, n_targets)."""
        n = np.maximum(self.n, 1.0)
        ss_tot = np.maximum(self.syy - np.square(self.sy) / n, 0.0)
        # Sums of squares below ~1e-12 of the raw second moment are round-off.
        const = ss_tot <= 1e-12 * self.syy
        if self.scoring == "r2":
            out = np.where(self.ss_res == 0, 1.0, 0.0)
            ok = np.broadcast_to(~const, out.shape)
            out[ok] = (1.0 - self.ss_res / np.where(const, 1.0, ss_tot))[ok]
            return out
        cov = self.spy - self.sp * self.sy / n
        var_p = np.maximum(self.spp - np.square(self.sp) / n, 0.0)
        ok = ~const & (var_p > 1e-12 * self.spp)
        out = np.zeros_like(cov)
        out[ok] = (cov / np.sqrt(np.where(ok, var_p * ss_tot, 1.0)))[ok]
        return out
