"""The brain-to-embedding map: cross-validated ridge regression with per-target alphas."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.mapping._cv import (
    SCORE_POOLINGS,
    SCORINGS,
    PooledScores,
    Scaler,
    fit_transform_scaler,
    make_folds,
    score_columns,
    score_residuals,
    select_voxels,
)
from fmri2image.mapping._diagnostics import FitDiagnostics
from fmri2image.mapping._grid import DEFAULT_ALPHAS
from fmri2image.mapping._solvers import SOLVERS, RidgeSolver, resolve_solver_name
from fmri2image.mapping.base import Mapper, check_data

__all__ = ["DEFAULT_ALPHAS", "RidgeMapping", "rescale_predictions_transductive"]

logger = logging.getLogger(__name__)

#: Values of ``RidgeMapping(cv_statistics=...)``.
CV_STATISTICS = ("fold", "train")


class RidgeMapping(RegressorMixin, BaseEstimator, Mapper):
    """Ridge regression from voxels to embeddings, with alpha cross-validated per target.

    For each target ``j`` (embedding dimension), the model is
    ``y_j = x_z @ w_j + b_j`` with ``x_z`` the voxels z-scored with *training*
    statistics and ``w_j`` minimizing ``||y_j - X_z w||^2 + alpha_j ||w||^2``.
    ``alpha_j`` maximizes the cross-validated score of target ``j`` over ``alphas``.
    Every statistic (voxel means/stds, target means/stds, voxel selection) is
    computed from training rows only: inside cross-validation from each fold's
    training part, and for the final fit from all training samples.  Nothing is
    ever estimated from the samples passed to :meth:`predict`.

    Parameters
    ----------
    alphas : array-like of shape (n_alphas,), default=DEFAULT_ALPHAS
        Positive regularization strengths to try (1e-2, 1e-1, ..., 1e10; see
        :data:`DEFAULT_ALPHAS` for why).
    cv : int, "loo" or splitter, default=5
        Number of K-fold folds (grouped by ``groups`` passed to :meth:`fit` when
        given, so that no group, e.g. stimulus category, is on both sides; else
        contiguous blocks, or shuffled when ``random_state`` is set), ``"loo"`` for
        exact efficient leave-one-out (generalized cross-validation, eigendecomposition
        solvers only; standardization then uses all training samples, as
        ``Pipeline(StandardScaler(), RidgeCV())`` does), or a scikit-learn splitter.
        The default, ``cv=5`` with pooled R² and no ``groups``, chose the best
        alphas in our benchmarks, also for test categories absent from training;
        grouped folds over few categories choose too large alphas
        (docs/mapping.md, "Choosing the cross-validation").
    scoring : {"r2", "correlation"}, default="r2"
        Validation score per alpha and target: the coefficient of determination
        or Pearson r between validation targets and their predictions.
    score_pooling : {"pooled", "fold-mean"}, default="pooled"
        How the folds' validation predictions are combined. ``"pooled"``: every
        sample's out-of-fold prediction, mapped back to original target units
        (each fold standardizes with its own training statistics), is scored
        once per target over all samples, as ``r2_score(y,
        cross_val_predict(...))``; pooled R² thus picks the alpha with the least
        out-of-fold squared error, as :class:`sklearn.linear_model.RidgeCV` does
        with leave-one-out. ``"fold-mean"``: one score per validation fold,
        averaged over folds; each fold's R² is taken about *that fold's* mean,
        which with few groups per grouped fold weights folds arbitrarily and
        makes the criterion fragile (docs/mapping.md). ``cv="loo"`` is always
        pooled.
    alpha_per_target : bool, default=True
        Choose one alpha per target; if False, one alpha for all targets
        (maximizing the mean score over targets).
    solver : str, default="auto"
        Name in :data:`~fmri2image.mapping.SOLVERS`: ``"eigh_kernel"`` (dual form,
        for n_samples < n_features), ``"eigh_primal"``, ``"sklearn"``,
        ``"himalaya"``; ``"auto"`` picks the cheaper eigendecomposition.
    standardize_X : bool, default=True
        z-score voxels with training statistics; if False they are only centered.
    cv_statistics : {"fold", "train"}, default="fold"
        Where the voxels' z-scoring comes from inside integer-``cv`` folds.
        ``"fold"``: each fold's training part, so nothing of a validation fold
        reaches its fit.  ``"train"``: all training samples, once, as
        ``Pipeline(StandardScaler(), KernelRidgeCV(cv=5))`` and ``cv="loo"`` do;
        each fold still centers on its own training part (the intercept), and the
        folds share one kernel matrix: about 20 % faster at GOD's size, with the
        same alphas on the benchmark's planted data (bench/bench_mapping.py).  Not
        with ``n_voxels`` (the selection uses the targets, so it stays inside the
        folds); ``cv="loo"`` always uses all training samples.
    standardize_Y : bool, default=True
        z-score targets with training statistics during fitting and map predictions
        back. Ridge is linear in ``Y`` column by column and R² and correlation are
        invariant to per-target affine maps, so this changes neither predictions nor
        the chosen alphas; it conditions the arithmetic and makes ``coef_``
        comparable across targets. Targets are always centered (intercept).
    n_voxels : int, optional
        Keep only the ``n_voxels`` voxels with the highest mean squared correlation
        with the targets (see :func:`~fmri2image.mapping._cv.select_voxels`),
        selected inside each fold from the fold's training part, then from all
        training samples for the final fit. Not available with ``cv="loo"``.
    n_targets_batch : int, optional
        Targets processed at once (bounds memory at ~``n_samples x n_targets_batch``
        per alpha); None processes all targets together.
    dtype : str, default="float32"
        Floating type of all computations, eigendecompositions included. float32
        halves memory and is 2-4x faster; on GOD-sized data it chose the same
        alphas as float64, with CV scores within ~2e-6 and predictions within ~4e-6
        (relative). Use "float64" to match scikit-learn to round-off (~1e-12) or
        with alphas far below 1e-6 x the largest Gram eigenvalue.
    random_state : int, optional
        Seed used to shuffle integer ``cv`` folds; None keeps contiguous folds.

    Attributes
    ----------
    alpha_ : ndarray of shape (n_targets,)
        Chosen alpha per target.
    cv_scores_ : ndarray of shape (n_alphas, n_targets)
        Validation score (``scoring``) of each alpha for each target.
    best_score_ : ndarray of shape (n_targets,)
        ``cv_scores_`` at ``alpha_``.
    diagnostics_ : FitDiagnostics
        The scheme used (folds, groups, scoring), the share of targets at either
        end of the alpha grid and the median alpha; phrase its problems with
        :func:`~fmri2image.mapping.fit_warnings`.
    coef_ : ndarray of shape (n_selected_voxels, n_targets)
        Weights in standardized units (z-scored voxels -> standardized targets).
        Where ``n_samples x (n_selected_voxels + n_targets)`` is below their size
        (e.g. GOD's 1,200 samples, 4,643 voxels, 2,048 targets), the fit keeps the
        dual form instead, as kernel ridge does: ``predict`` uses it (fewer
        operations per row), and ``coef_`` is computed on first access.
    voxel_indices_ : ndarray of shape (n_selected_voxels,)
        Columns of ``X`` used (all columns unless ``n_voxels``).
    x_mean_, x_scale_ : ndarray of shape (n_selected_voxels,)
        Training mean and standard deviation of the used voxels.
    y_mean_, y_scale_ : ndarray of shape (n_targets,)
        Training mean and standard deviation of the targets.
    solver_ : str
        The solver actually used (``"auto"`` resolved).
    n_splits_ : int
        Number of CV folds (``n_samples`` for ``"loo"``).
    n_features_in_ : int
        Number of voxels ``X`` had at fit time.

    Examples
    --------
    >>> import numpy as np
    >>> from fmri2image.mapping import RidgeMapping
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 200))
    >>> Y = X[:, :5] @ rng.standard_normal((5, 4)) + 0.1 * rng.standard_normal((60, 4))
    >>> model = RidgeMapping(cv=5).fit(X, Y)
    >>> model.predict(X[:2]).shape
    (2, 4)
    """

    #: Solvers selectable by name (himalaya's ``ALL_SOLVERS`` idiom).
    ALL_SOLVERS = SOLVERS
    #: Name in :data:`~fmri2image.mapping.MAPPERS` and in saved files.
    format_name = "ridge"

    def __init__(
        self,
        alphas: Any = DEFAULT_ALPHAS,
        *,
        cv: Any = 5,
        scoring: str = "r2",
        score_pooling: str = "pooled",
        alpha_per_target: bool = True,
        solver: str = "auto",
        standardize_X: bool = True,
        cv_statistics: str = "fold",
        standardize_Y: bool = True,
        n_voxels: int | None = None,
        n_targets_batch: int | None = None,
        dtype: str = "float32",
        random_state: int | None = None,
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.scoring = scoring
        self.score_pooling = score_pooling
        self.alpha_per_target = alpha_per_target
        self.solver = solver
        self.standardize_X = standardize_X
        self.cv_statistics = cv_statistics
        self.standardize_Y = standardize_Y
        self.n_voxels = n_voxels
        self.n_targets_batch = n_targets_batch
        self.dtype = dtype
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def check_params(
        self,
        n_samples: int | None = None,
        n_features: int | None = None,
        n_groups: int | None = None,
    ) -> None:
        """Refuse arguments that cannot work (:meth:`Mapper.check_params`): types and
        ranges of every constructor argument, and, given the data's sizes, folds and
        ``n_voxels`` that do not fit them.  Nothing is coerced: ``alpha_per_target="no"``
        is refused, not read as true."""
        self._check_dtype()
        try:
            alphas = np.asarray(self.alphas, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            alphas = np.empty(0)
        if alphas.size == 0 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0):
            raise ConfigError(
                f"alphas must be a non-empty list of positive finite numbers, got {self.alphas!r}. "
                "Use e.g. numpy.logspace(-2, 10, 13)."
            )
        for name in ("alpha_per_target", "standardize_X", "standardize_Y"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{name}={value!r} must be true or false.")
        if self.scoring not in SCORINGS:
            raise ConfigError(f"scoring={self.scoring!r} is not supported; use one of {SCORINGS}.")
        if self.cv_statistics not in CV_STATISTICS:
            raise ConfigError(
                f"cv_statistics={self.cv_statistics!r} is not supported; use one of "
                f"{CV_STATISTICS}: 'fold' z-scores the voxels inside each fold with its "
                "training part, 'train' once with all training samples."
            )
        if self.cv_statistics == "train" and self.n_voxels is not None:
            raise ConfigError(
                "cv_statistics='train' with n_voxels: the voxel selection uses the targets, "
                "so it must stay inside each fold; use cv_statistics='fold' (the default) "
                "with n_voxels."
            )
        if self.score_pooling not in SCORE_POOLINGS:
            raise ConfigError(
                f"score_pooling={self.score_pooling!r} is not supported; use one of "
                f"{SCORE_POOLINGS}: 'pooled' scores all out-of-fold predictions at once, "
                "'fold-mean' averages one score per fold."
            )
        cv = self.cv
        if isinstance(cv, str):
            if cv != "loo":
                raise ConfigError(
                    f"cv={cv!r} is not understood. Pass a number of folds (e.g. 5), 'loo' "
                    "for efficient leave-one-out, or a scikit-learn splitter."
                )
            if self.score_pooling != "pooled":
                raise ConfigError(
                    "cv='loo' leaves out one sample per fold, on which R² and correlation are "
                    "undefined, so its scores are always pooled; use score_pooling='pooled' "
                    "with cv='loo', or an integer cv for 'fold-mean'."
                )
            if self.n_voxels is not None:
                raise ConfigError(
                    "n_voxels with cv='loo' would select voxels with each left-out sample; "
                    "use an integer cv with n_voxels."
                )
        elif isinstance(cv, (int, np.integer)) and not isinstance(cv, (bool, np.bool_)):
            if cv < 2:
                raise ConfigError(
                    f"cv={cv} is not a valid number of folds; cross-validation needs at "
                    "least 2 folds. Use cv=5 (default), cv='loo', or a scikit-learn splitter."
                )
            if n_samples is not None and cv > n_samples:
                raise ConfigError(
                    f"cv={cv} folds is more than the {n_samples} training samples; use fewer folds."
                )
            if n_groups is not None and cv > n_groups:
                raise ConfigError(
                    f"cv={cv} grouped folds need at least {cv} distinct groups, and there "
                    f"are {n_groups}. Use fewer folds or finer groups."
                )
        elif not hasattr(cv, "split"):
            raise ConfigError(
                f"cv={cv!r} is not understood. Pass a number of folds (e.g. 5), 'loo' for "
                "efficient leave-one-out, or a scikit-learn splitter such as GroupKFold(5)."
            )
        if not isinstance(self.solver, str):
            raise ConfigError(
                f"solver={self.solver!r} must be a solver name: auto or one of "
                f"{', '.join(self.ALL_SOLVERS)}."
            )
        if self.solver != "auto" and self.solver not in self.ALL_SOLVERS:
            self.ALL_SOLVERS.get(self.solver)  # raises ConfigError with suggestions
        for name in ("n_voxels", "n_targets_batch"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, np.integer))
                and not isinstance(value, (bool, np.bool_))
                and value > 0
            ):
                raise ConfigError(f"{name}={value!r} must be a positive integer or None.")
        if self.n_voxels is not None and n_features is not None and self.n_voxels > n_features:
            raise ConfigError(
                f"n_voxels={self.n_voxels} exceeds the {n_features} voxels of X; "
                "use a smaller n_voxels or None to keep all voxels."
            )
        rs = self.random_state
        if rs is not None and not (
            isinstance(rs, (int, np.integer, np.random.RandomState))
            and not isinstance(rs, (bool, np.bool_))
        ):
            raise ConfigError(
                f"random_state={rs!r} must be an integer seed or None (None keeps "
                "contiguous folds)."
            )

    def _check_params(self, n_samples: int, n_features: int) -> tuple[np.ndarray, np.dtype]:
        self.check_params(n_samples, n_features)
        return np.asarray(self.alphas, dtype=np.float64).ravel(), self._check_dtype()

    def _check_dtype(self) -> np.dtype:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind != "f":
            raise ConfigError(
                f"dtype={self.dtype!r} is not a floating type; use 'float32' or 'float64'."
            )
        return dtype

    @staticmethod
    def _check_array(A: Any, name: str, dtype: np.dtype) -> np.ndarray:
        """The data as ``dtype`` (:func:`~fmri2image.mapping.base.check_data`)."""
        return check_data(A, name, dtype)

    # --------------------------------------------------------------- fitting
    def fit(self, X: Any, Y: Any, groups: Any = None) -> RidgeMapping:
        """Cross-validate alphas, then refit on all training samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            Training fMRI patterns.
        Y : array-like of shape (n_samples, n_targets) or (n_samples,)
            Training embeddings.
        groups : array-like of shape (n_samples,), optional
            Group label per sample (e.g. stimulus category) for grouped K-fold.

        Returns
        -------
        self : RidgeMapping
        """
        from tqdm.auto import tqdm

        dtype = self._check_dtype()
        X = self._check_array(X, "X", dtype)
        if Y is None:
            raise DataFormatError(
                "RidgeMapping requires y to be passed, but the target y is None: pass the "
                "training embeddings, one row per fMRI sample."
            )
        Y_arr = np.asarray(Y)
        y_1d = Y_arr.ndim == 1
        Y = self._check_array(Y_arr.reshape(-1, 1) if y_1d else Y_arr, "Y", dtype)
        n_samples, n_features = X.shape
        if n_samples < 2:
            raise DataFormatError(
                f"got n_samples={n_samples}; fitting with cross-validation needs at least "
                "2 samples (in practice hundreds)."
            )
        if Y.shape[0] != n_samples:
            raise DataFormatError(
                f"X has {n_samples} samples but Y has {Y.shape[0]}; they must be aligned "
                "row by row (one embedding per fMRI sample)."
            )
        alphas, dtype = self._check_params(n_samples, n_features)
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n_samples,):
                raise DataFormatError(
                    f"groups must have shape ({n_samples},), one label per sample; got {groups.shape}."
                )
        name = resolve_solver_name(self.solver, n_samples, n_features)
        solver: RidgeSolver = self.ALL_SOLVERS.get(name)
        n_targets = Y.shape[1]
        batch = int(self.n_targets_batch or n_targets)
        batches = [slice(s, min(s + batch, n_targets)) for s in range(0, n_targets, batch)]

        loo = self._check_loo(solver, name)
        if loo and groups is not None:
            raise ConfigError(
                "groups cannot be honoured by cv='loo' (it leaves out single samples, so "
                "a group would be on both sides); use an integer cv for grouped K-fold."
            )

        # Statistics and factorization of all training samples: the final fit
        # (and, for cv="loo", the leave-one-out scores too).
        x_scaler, y_scaler, idx, Xz = self._training_stats(X, Y, owned=False)
        Yz = y_scaler.transform(Y)
        state = solver.decompose(Xz)

        n_groups = None if groups is None else int(np.unique(groups).size)
        projections: list[np.ndarray] = []  # cv="loo": R of each batch, reused by the refit
        if loo:
            scores = np.empty((alphas.size, n_targets))
            for sl in batches:
                Yb = Yz[:, sl]
                R = solver.project(state, Yb)
                projections.append(R)
                ss_tot = None
                if self.scoring == "r2":
                    Y64 = Yb.astype(np.float64)
                    ss_tot = np.square(Y64 - Y64.mean(axis=0)).sum(axis=0)
                residuals = solver.loo_residuals(state, Yb, alphas.astype(dtype), R)
                for a, resid in enumerate(residuals):
                    scores[a, sl] = score_residuals(Yb, resid, self.scoring, ss_tot)
            self.n_splits_ = n_samples
        else:
            folds = make_folds(n_samples, self.cv, groups, self.random_state)
            # cv_statistics="train": every fold reuses the all-sample standardization
            # and factorization (the kernel solver takes the blocks of its matrix).
            shared = (state, Xz) if self.cv_statistics == "train" else None
            if self.score_pooling == "pooled":
                # The training targets' own statistics as the (score-invariant)
                # frame of the pooled sums: only a conditioning choice.
                pooled = PooledScores(alphas.size, n_targets, y_scaler, self.scoring)
                workspace: dict[str, np.ndarray] = {}  # the path's buffers, shared by the folds
                for train, val in tqdm(folds, desc="ridge CV folds", leave=False):
                    self._fold_scores(
                        solver, X, Y, train, val, alphas, batches, shared, pooled, workspace
                    )
                scores = pooled.scores()
            else:
                scores = np.zeros((alphas.size, n_targets))
                for train, val in tqdm(folds, desc="ridge CV folds", leave=False):
                    scores += self._fold_scores(solver, X, Y, train, val, alphas, batches, shared)
                scores /= len(folds)
            self.n_splits_ = len(folds)

        self.cv_scores_ = scores
        choice = np.where(np.isnan(scores), -np.inf, scores)
        if self.alpha_per_target:
            best = np.argmax(choice, axis=0)
        else:
            best = np.full(n_targets, np.argmax(choice.mean(axis=1)))
        self.alpha_ = alphas[best]
        self.best_score_ = scores[best, np.arange(n_targets)]
        self.diagnostics_ = self._diagnose(alphas, n_samples, n_groups)
        logger.debug(
            "ridge CV: %s; median alpha %.3g; %.1f%% of targets at the smallest alpha, %.1f%% "
            "at the largest",
            self.diagnostics_.scheme,
            self.diagnostics_.alpha_median,
            100 * self.diagnostics_.share_low,
            100 * self.diagnostics_.share_high,
        )

        # The refit.  Where n_samples < n_voxels, the model may stay in dual form
        # (standardized training rows and dual coefficients, as kernel ridge keeps
        # it): kept where that is smaller than the weights and predicts each new
        # row with fewer operations; ``coef_`` is then computed on first access.
        dual = solver.supports_dual and n_samples * (idx.size + n_targets) < idx.size * n_targets
        refit = solver.dual_coef if dual else solver.coef
        coef = np.empty((n_samples if dual else idx.size, n_targets), dtype=dtype)
        for i, sl in enumerate(batches):
            alpha = self.alpha_[sl].astype(dtype)
            if projections:  # cv="loo": the batch's projection, computed for the scores
                coef[:, sl] = refit(state, Yz[:, sl], alpha, R=projections[i])
            else:
                coef[:, sl] = refit(state, Yz[:, sl], alpha)
        if dual:
            self.__dict__.pop("_coef", None)
            self._dual = (Xz, coef)
        else:
            self.coef_ = coef
        self.voxel_indices_ = idx
        self.x_mean_, self.x_scale_ = x_scaler.mean, x_scaler.scale
        self.y_mean_, self.y_scale_ = y_scaler.mean, y_scaler.scale
        self.solver_ = name
        self.n_features_in_ = n_features
        self.y_1d_ = y_1d
        return self

    def _check_loo(self, solver: RidgeSolver, name: str) -> bool:
        if not isinstance(self.cv, str):
            return False
        if self.cv != "loo":
            raise ConfigError(
                f"cv={self.cv!r} is not understood; the only string allowed is 'loo'."
            )
        if not solver.supports_loo:
            raise ConfigError(
                f"cv='loo' needs an eigendecomposition solver; solver={name!r} has no "
                "efficient leave-one-out. Use solver='auto' or an integer cv."
            )
        if self.n_voxels is not None:
            raise ConfigError(
                "n_voxels with cv='loo' would select voxels using each left-out sample; "
                "use an integer cv (selection inside each fold) or n_voxels=None."
            )
        return True

    def _training_stats(
        self, X: np.ndarray, Y: np.ndarray, *, owned: bool
    ) -> tuple[Scaler, Scaler, np.ndarray, np.ndarray]:
        """Voxel selection and scalers from the given (training) rows only.

        Returns the scalers, the selected voxels and the standardized rows
        ``x_scaler.transform(X[:, idx])``, computed in place of ``X`` if ``owned``
        (the caller's own copy) and all voxels are kept.
        """
        if self.n_voxels is None:
            idx = np.arange(X.shape[1])
            X_sel, overwrite = X, owned
        else:
            idx = select_voxels(X, Y, int(self.n_voxels), n_targets_batch=self.n_targets_batch)
            X_sel, overwrite = X[:, idx], True
        x_scaler, Xz = fit_transform_scaler(X_sel, scale=self.standardize_X, overwrite=overwrite)
        y_scaler, _ = fit_transform_scaler(Y, scale=self.standardize_Y, transform=False)
        assert Xz is not None
        return x_scaler, y_scaler, idx, Xz

    def _fold_scores(
        self,
        solver: RidgeSolver,
        X: np.ndarray,
        Y: np.ndarray,
        train: np.ndarray,
        val: np.ndarray,
        alphas: np.ndarray,
        batches: list[slice],
        shared: tuple[Any, np.ndarray] | None = None,
        pooled: PooledScores | None = None,
        workspace: dict[str, np.ndarray] | None = None,
    ) -> np.ndarray | None:
        """Validation scores of one fold (fold-mean), or add them to ``pooled``.

        ``shared``: the all-sample factorization and standardized voxels
        (``cv_statistics="train"``); otherwise the fold standardizes its own.
        """
        if shared is None:
            x_scaler, y_scaler, idx, X_tr = self._training_stats(X[train], Y[train], owned=True)
            X_va = X[val] if self.n_voxels is None else X[np.ix_(val, idx)]
            np.subtract(X_va, x_scaler.mean, out=X_va)  # x_scaler.transform, in place
            X_va /= x_scaler.scale
            state = solver.decompose(X_tr, X_va)
            Y_tr = y_scaler.transform(Y[train])
        else:
            state = solver.decompose_subset(shared[0], shared[1], train, val)
            y_scaler, Y_tr = fit_transform_scaler(
                Y[train], scale=self.standardize_Y, overwrite=True
            )
        alphas = alphas.astype(Y_tr.dtype)
        if pooled is not None:
            for sl in batches:
                fold_scaler = Scaler(mean=y_scaler.mean[sl], scale=y_scaler.scale[sl])
                Y_val = Y[val, sl]
                for rows, preds in solver.path_chunks(
                    state, Y_tr[:, sl], alphas, workspace=workspace
                ):
                    pooled.add_fold(sl, Y_val, preds, fold_scaler, alphas=rows, overwrite=True)
            return None
        Y_va = y_scaler.transform(Y[val])
        out = np.empty((alphas.size, Y.shape[1]))
        for sl in batches:
            for rows, preds in solver.path_chunks(state, Y_tr[:, sl], alphas):
                for a, pred in zip(range(alphas.size)[rows], preds, strict=True):
                    out[a, sl] = score_columns(Y_va[:, sl], pred, self.scoring)
        return out

    def _cv_kind(self, groups_given: bool) -> str:
        if isinstance(self.cv, str):
            return "loo"
        if isinstance(self.cv, (int, np.integer)):
            if groups_given:
                return "group-kfold"
            return "kfold" if self.random_state is None else "shuffled-kfold"
        return type(self.cv).__name__

    def _diagnose(self, alphas: np.ndarray, n_samples: int, n_groups: int | None) -> FitDiagnostics:
        kind = self._cv_kind(n_groups is not None)
        if kind == "loo":
            how = "exact leave-one-out"
        elif kind in ("kfold", "shuffled-kfold", "group-kfold"):
            how = f"{self.n_splits_}-fold CV" + (" (shuffled)" if kind == "shuffled-kfold" else "")
        else:
            how = f"{kind} CV ({self.n_splits_} folds)"
        if n_groups is not None:
            how += f" grouped by {n_groups} groups"
        pooling = "pooled" if kind == "loo" else self.score_pooling
        per = "alpha per target" if self.alpha_per_target else "one shared alpha"
        lo, hi = float(alphas.min()), float(alphas.max())
        return FitDiagnostics(
            scheme=f"{how}, {pooling} {self.scoring}, {per}",
            cv=kind,
            n_splits=int(self.n_splits_),
            n_groups=n_groups,
            n_samples=int(n_samples),
            n_targets=int(self.alpha_.size),
            scoring=str(self.scoring),
            score_pooling=pooling,
            alpha_per_target=bool(self.alpha_per_target),
            n_alphas=int(alphas.size),
            alpha_low=lo,
            alpha_high=hi,
            share_low=float(np.mean(self.alpha_ == lo)),
            share_high=float(np.mean(self.alpha_ == hi)),
            alpha_median=float(np.median(self.alpha_)),
        )

    # ------------------------------------------------------------ predicting
    def predict(self, X: Any, *, transductive_rescale: bool = False) -> np.ndarray:
        """Predict embeddings, using training statistics only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            fMRI patterns, preprocessed like the training data. Each row's
            prediction depends on that row alone.
        transductive_rescale : bool, default=False
            **Wrong for evaluation; off by default.** Re-standardize the
            predictions with the mean/std of *these* predictions, as the seed code
            did; see :func:`rescale_predictions_transductive`.

        Returns
        -------
        Y_pred : ndarray of shape (n_samples, n_targets) (or (n_samples,) if fitted on 1-D Y)
        """
        check_is_fitted(self, "alpha_")
        dual = self.__dict__.get("_dual")
        weights = self.coef_ if dual is None else dual[1]
        X = self._check_array(X, "X", weights.dtype)
        if X.shape[1] != self.n_features_in_:
            raise DataFormatError(
                f"X has {X.shape[1]} features, but RidgeMapping is expecting "
                f"{self.n_features_in_} features as input: pass the same voxels (ROI, "
                "order) as in training."
            )
        Xz = (X[:, self.voxel_indices_] - self.x_mean_) / self.x_scale_
        if dual is None:
            Y = Xz @ weights
        else:  # (Xz X_fit^T) C: the same predictions as Xz (X_fit^T C)
            X_fit, C = dual
            Y = (Xz @ X_fit.T) @ C
        Y = Y * self.y_scale_ + self.y_mean_
        if transductive_rescale:
            Y = rescale_predictions_transductive(Y, self.y_mean_, self.y_scale_)
        return Y[:, 0] if getattr(self, "y_1d_", False) else Y

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    @property
    def n_targets_(self) -> int:
        check_is_fitted(self, "alpha_")
        return int(self.alpha_.shape[0])

    @property
    def coef_(self) -> np.ndarray:
        """Weights in standardized units, shape (n_selected_voxels, n_targets).

        A fit that kept the dual form computes them here, once (``X_fit^T C``).
        """
        coef = self.__dict__.get("_coef")
        if coef is None and "coef_" in self.__dict__:  # unpickled from an earlier version
            coef = self.__dict__["_coef"] = self.__dict__.pop("coef_")
        if coef is None:
            dual = self.__dict__.get("_dual")
            if dual is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute 'coef_'")
            X_fit, C = dual
            coef = X_fit.T @ C
            self.coef_ = coef
        return coef

    @coef_.setter
    def coef_(self, value: np.ndarray) -> None:
        self.__dict__["_coef"] = value
        self.__dict__.pop("_dual", None)

    # --------------------------------------------------------- serialization
    def _save_params(self) -> dict[str, Any]:
        """Constructor arguments as JSON: ``alphas`` is stored as an array, a splitter as text."""
        return {k: _jsonable_param(k, v) for k, v in self.get_params(deep=False).items()}

    def _save_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted arrays and JSON state (see :meth:`Mapper._save_state`).

        Arrays: ``coef``, ``voxel_indices``, ``x_mean``, ``x_scale``, ``y_mean``,
        ``y_scale``, ``alpha``, ``cv_scores``, ``best_score`` and the grid
        ``alphas``; JSON: ``solver_``, ``n_splits_``, ``n_features_in_``, ``y_1d_``
        and ``diagnostics_`` (:meth:`FitDiagnostics.to_dict`).
        """
        check_is_fitted(self, "alpha_")
        tensors = {key: np.asarray(getattr(self, attr)) for key, attr in _STATE_ARRAYS.items()}
        tensors["alphas"] = np.asarray(self.alphas, dtype=np.float64).ravel()
        fitted = {
            "solver_": self.solver_,
            "n_splits_": int(self.n_splits_),
            "n_features_in_": int(self.n_features_in_),
            "y_1d_": bool(self.y_1d_),
            "diagnostics_": self.diagnostics_.to_dict() if hasattr(self, "diagnostics_") else None,
        }
        return tensors, fitted

    @classmethod
    def _load_state(
        cls,
        params: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        fitted: Mapping[str, Any],
    ) -> RidgeMapping:
        """Rebuild a fitted mapping; ``cv`` saved as a splitter's text is restored as 5.

        Files written before ``score_pooling`` existed load with
        ``score_pooling="fold-mean"`` (what they used); without diagnostics,
        ``diagnostics_`` is not set.
        """
        missing = sorted((set(_STATE_ARRAYS) | {"alphas"}) - set(tensors))
        if missing:
            raise DataFormatError(
                f"the saved RidgeMapping lacks the arrays {missing}; save the mapping again."
            )
        params = dict(params)
        params["alphas"] = tensors["alphas"]
        # Files written before score_pooling existed averaged one score per fold.
        params.setdefault("score_pooling", "pooled" if params.get("cv") == "loo" else "fold-mean")
        if isinstance(params.get("cv"), str) and params["cv"] != "loo":
            params["cv"] = 5
        model = cls(**params)
        for key, attr in _STATE_ARRAYS.items():
            setattr(model, attr, tensors[key])
        fitted = dict(fitted)
        diagnostics = fitted.pop("diagnostics_", None)
        for attr, value in fitted.items():
            setattr(model, attr, value)
        if diagnostics is not None:
            model.diagnostics_ = FitDiagnostics.from_dict(diagnostics)
        coef = model.coef_
        shapes_ok = coef.ndim == 2
        if shapes_ok:
            n_sel, n_targets = coef.shape
            shapes_ok = (
                model.voxel_indices_.shape == (n_sel,)
                and model.x_mean_.shape == model.x_scale_.shape == (n_sel,)
                and model.y_mean_.shape == model.y_scale_.shape == (n_targets,)
                and (n_sel == 0 or int(model.voxel_indices_.max()) < model.n_features_in_)
            )
        if not shapes_ok:
            raise DataFormatError(
                "the saved RidgeMapping holds arrays of inconsistent shapes; save the mapping "
                "again."
            )
        return model


#: Saved array name -> fitted attribute of :class:`RidgeMapping`.
_STATE_ARRAYS = {
    "coef": "coef_",
    "voxel_indices": "voxel_indices_",
    "x_mean": "x_mean_",
    "x_scale": "x_scale_",
    "y_mean": "y_mean_",
    "y_scale": "y_scale_",
    "alpha": "alpha_",
    "cv_scores": "cv_scores_",
    "best_score": "best_score_",
}


def _jsonable_param(name: str, value: Any) -> Any:
    if name == "alphas":
        return None  # stored as an array
    if name == "cv" and not (isinstance(value, (int, str)) and not isinstance(value, bool)):
        return repr(value)  # a splitter object: recorded, restored as the default
    return value.item() if isinstance(value, np.generic) else value


def rescale_predictions_transductive(
    Y_pred: np.ndarray, y_mean: np.ndarray, y_std: np.ndarray
) -> np.ndarray:
    """Re-standardize predictions with statistics of the predictions themselves.

    .. warning::
       This reproduces the seed pipeline's defect (FIELD.md §2, defect 1) and
       exists only so that its published numbers can be reproduced and
       explained. It is *transductive*: each prediction depends on every other
       test sample's prediction (their mean and standard deviation), so results
       change with the test-set composition, one sample cannot be decoded on its
       own, and test information leaks into the reported score. It also undoes
       ridge shrinkage: where the map has learned little, near-constant
       predictions are inflated to full training variance, which turns the
       ``R² ≈ 0`` of an honest no-information map into ``R² ≈ -1`` (on pure
       noise, R² about -0.9 to -1). Never use it for evaluation.

    Parameters
    ----------
    Y_pred : ndarray of shape (n_samples, n_targets)
        Predictions for a batch of test samples.
    y_mean, y_std : ndarray of shape (n_targets,)
        Training target mean and standard deviation, restored after z-scoring.

    Returns
    -------
    Y_rescaled : ndarray of shape (n_samples, n_targets)
        ``(Y_pred - mean(Y_pred)) / std(Y_pred) * y_std + y_mean`` (column-wise,
        statistics over the rows of ``Y_pred``; constant columns map to ``y_mean``).
    """
    warnings.warn(
        "rescale_predictions_transductive uses statistics of the test predictions "
        "(transductive); scores computed on its output are not valid held-out scores.",
        UserWarning,
        stacklevel=2,
    )
    Y_pred = np.asarray(Y_pred)
    mu = Y_pred.mean(axis=0)
    sd = Y_pred.std(axis=0)
    sd = np.where(sd > 0, sd, 1)
    return (Y_pred - mu) / sd * y_std + y_mean
