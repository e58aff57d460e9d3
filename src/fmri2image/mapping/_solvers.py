"""Ridge solvers: the math behind :class:`~fmri2image.mapping.RidgeMapping`.

Every solver works on data that the caller has already centered (and, optionally,
z-scored) with *training* statistics, and solves, for each target ``j``,

.. math::

    w_j(\\alpha) = \\arg\\min_w \\; \\lVert y_j - X w \\rVert_2^2 + \\alpha \\lVert w \\rVert_2^2 .

A solver exposes three operations so that cross-validation can reuse one
factorization of ``X`` for all alphas and all target batches:

``decompose(X, X_eval)``
    Factorize the training matrix once (per CV fold).
``path_predict(state, Y, alphas)``
    Yield the predictions on ``X_eval`` for every alpha of the grid.
``coef(state, Y, alpha)``
    Weights for one alpha *per target* (the final refit).

The project's own eigendecomposition solvers use the spectral form of ridge.  With
``K = X X^T = U diag(s) U^T`` (kernel / dual form, cheaper when
``n_samples < n_features`` as in GOD: ~1200 samples x ~4500 voxels) or
``X^T X = V diag(s) V^T`` (primal form), the solution for every alpha is a
re-weighting of one fixed spectral projection of ``Y``:

.. math::

    \\hat Y_{eval}(\\alpha) = L \\, \\mathrm{diag}\\!\\left(\\frac{1}{s + \\alpha}\\right) R ,

with ``L = X_eval X^T U`` and ``R = U^T Y`` (kernel) or ``L = X_eval V`` and
``R = V^T X^T Y`` (primal).  One eigendecomposition therefore yields the whole
regularization path, and a different alpha per target costs nothing extra.

scikit-learn's :class:`~sklearn.linear_model.Ridge` (one fit per alpha) and
himalaya's :func:`~himalaya.kernel_ridge.solve_kernel_ridge_eigenvalues` are
registered as independent reference implementations under the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import numpy as np

from fmri2image.errors import require
from fmri2image.registry import Registry

__all__ = [
    "SOLVERS",
    "EighKernelSolver",
    "EighPrimalSolver",
    "HimalayaSolver",
    "RidgeSolver",
    "SklearnSolver",
    "resolve_solver_name",
]


class RidgeSolver(abc.ABC):
    """Interface of a ridge solver (intercept-free; inputs are pre-centered).

    Attributes
    ----------
    supports_loo : bool
        Whether :meth:`loo_predict` (efficient leave-one-out) is available.
    """

    supports_loo: bool = False

    @abc.abstractmethod
    def decompose(self, X: np.ndarray, X_eval: np.ndarray | None = None) -> Any:
        """Factorize the training data once.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Centered training inputs.
        X_eval : ndarray of shape (n_eval, n_features), optional
            Inputs (transformed with the same training statistics) at which
            :meth:`path_predict` predicts.

        Returns
        -------
        state : object
            Opaque state reused by the other methods.
        """

    @abc.abstractmethod
    def path_predict(self, state: Any, Y: np.ndarray, alphas: np.ndarray) -> Iterator[np.ndarray]:
        """Yield predictions on ``X_eval`` for each alpha.

        Parameters
        ----------
        state : object
            From :meth:`decompose` (called with ``X_eval``).
        Y : ndarray of shape (n_samples, n_targets)
            Centered training targets.
        alphas : ndarray of shape (n_alphas,)

        Yields
        ------
        Y_eval : ndarray of shape (n_eval, n_targets)
            One array per alpha, in the order of ``alphas``.
        """

    @abc.abstractmethod
    def coef(self, state: Any, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Ridge weights with one alpha per target.

        Parameters
        ----------
        state : object
        Y : ndarray of shape (n_samples, n_targets)
        alpha : ndarray of shape (n_targets,)

        Returns
        -------
        W : ndarray of shape (n_features, n_targets)
        """

    def loo_predict(self, state: Any, Y: np.ndarray, alphas: np.ndarray) -> Iterator[np.ndarray]:
        """Yield leave-one-out predictions of the training targets for each alpha."""
        raise NotImplementedError(f"{type(self).__name__} has no efficient leave-one-out")


class _Spectrum(abc.ABC):
    """Eigendecomposition of the training data, in the shared ``L diag(1/(s+a)) R`` form."""

    def __init__(self, X: np.ndarray, X_eval: np.ndarray | None) -> None:
        self.X = X
        self.X_eval = X_eval

    s: np.ndarray

    @abc.abstractmethod
    def project(self, Y: np.ndarray) -> np.ndarray:
        """``R`` of shape (rank, n_targets)."""

    @abc.abstractmethod
    def weights(self, R_scaled: np.ndarray) -> np.ndarray:
        """Primal weights ``W`` of shape (n_features, n_targets) from ``R / (s + a)``."""

    @property
    @abc.abstractmethod
    def eval_left(self) -> np.ndarray:
        """``L`` for ``X_eval``, shape (n_eval, rank)."""

    @property
    @abc.abstractmethod
    def train_left(self) -> np.ndarray:
        """``L`` for the training samples, shape (n_samples, rank)."""

    @property
    @abc.abstractmethod
    def train_right(self) -> np.ndarray:
        """``M`` with ``diag(H) = sum(L * M / (s + a), axis=1)``, shape (n_samples, rank)."""

    def loo_terms(
        self, Y: np.ndarray, R: np.ndarray, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """In-sample residuals ``(I - H) Y`` and ``1 - diag(H)`` for one alpha.

        ``H`` includes the unpenalized intercept (``+ 1/n``).
        """
        inv = 1.0 / (self.s + alpha)
        L = self.train_left
        resid = Y - (L * inv) @ R
        one_minus_h = 1.0 - 1.0 / Y.shape[0] - (L * self.train_right) @ inv
        return resid, one_minus_h


def _eigh(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric eigendecomposition in the Gram matrix's own precision.

    scipy's LAPACK ``?syevd`` runs float32 in single precision (``numpy.linalg.eigh``
    would silently upcast to float64, ~4x slower).  On GOD-sized data float32 and
    float64 give the same alphas, CV scores within ~2e-6 and predictions within
    ~4e-6 (relative); choose ``dtype="float64"`` for alphas far below ~1e-6 x the
    largest eigenvalue.
    """
    from scipy.linalg import eigh

    s, vecs = eigh(gram, driver="evd", overwrite_a=True, check_finite=False)
    # Round-off can make the eigenvalues of a PSD Gram matrix slightly negative.
    return np.clip(s, 0.0, None), vecs


class _KernelSpectrum(_Spectrum):
    def __init__(self, X: np.ndarray, X_eval: np.ndarray | None) -> None:
        super().__init__(X, X_eval)
        s, U = _eigh(X @ X.T)
        # Centered X makes the constant vector an eigenvector of X X^T with
        # eigenvalue 0.  That direction belongs to the intercept, which is fitted
        # exactly elsewhere (and enters the LOO hat matrix as 1/n); left in, its
        # round-off eigenvalue (~eps * s.max(), i.e. ~0.1 in float32 on GOD-sized
        # data) would count the intercept twice when alpha is small.
        n = X.shape[0]
        align = np.abs(U.sum(axis=0)) / np.sqrt(n)
        k0 = int(np.argmax(align))
        self.complete = (
            n > 1 and align[k0] > 0.99 and s[k0] <= np.sqrt(np.finfo(s.dtype).eps) * s.max()
        )
        if self.complete:
            keep = np.arange(s.size) != k0
            s, U = s[keep], U[:, keep]
        self.s, self.U = s, U

    def loo_terms(
        self, Y: np.ndarray, R: np.ndarray, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.complete:
            return super().loo_terms(Y, R, alpha)
        # U spans exactly the centered subspace, so U U^T = I - 11^T/n and
        # I - H = U diag(alpha / (s + alpha)) U^T on it: both terms are computed
        # without the cancellation of 1 - H_ii ~ alpha / s when alpha is small.
        w = alpha / (self.s + alpha)
        return (self.U * w) @ R, np.square(self.U) @ w

    def project(self, Y: np.ndarray) -> np.ndarray:
        return self.U.T @ Y

    def weights(self, R_scaled: np.ndarray) -> np.ndarray:
        return self.X.T @ (self.U @ R_scaled)

    @cached_property
    def eval_left(self) -> np.ndarray:
        return (self.X_eval @ self.X.T) @ self.U

    @cached_property
    def train_left(self) -> np.ndarray:
        return self.U * self.s

    @property
    def train_right(self) -> np.ndarray:
        return self.U


class _PrimalSpectrum(_Spectrum):
    def __init__(self, X: np.ndarray, X_eval: np.ndarray | None) -> None:
        super().__init__(X, X_eval)
        self.s, self.V = _eigh(X.T @ X)

    def project(self, Y: np.ndarray) -> np.ndarray:
        return self.V.T @ (self.X.T @ Y)

    def weights(self, R_scaled: np.ndarray) -> np.ndarray:
        return self.V @ R_scaled

    @cached_property
    def eval_left(self) -> np.ndarray:
        return self.X_eval @ self.V

    @cached_property
    def train_left(self) -> np.ndarray:
        return self.X @ self.V

    @property
    def train_right(self) -> np.ndarray:
        return self.train_left


class _EighSolver(RidgeSolver):
    supports_loo = True
    _spectrum: type[_Spectrum]

    def decompose(self, X: np.ndarray, X_eval: np.ndarray | None = None) -> _Spectrum:
        return self._spectrum(X, X_eval)

    def path_predict(
        self, state: _Spectrum, Y: np.ndarray, alphas: np.ndarray
    ) -> Iterator[np.ndarray]:
        L, R = state.eval_left, state.project(Y)
        for alpha in alphas:
            yield (L / (state.s + alpha)) @ R

    def coef(self, state: _Spectrum, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        R = state.project(Y)
        return state.weights(R / (state.s[:, None] + np.asarray(alpha, dtype=R.dtype)[None, :]))

    def loo_predict(
        self, state: _Spectrum, Y: np.ndarray, alphas: np.ndarray
    ) -> Iterator[np.ndarray]:
        """Exact leave-one-out predictions (generalized cross-validation shortcut).

        For a linear smoother ``Y_hat = H Y`` the leave-one-out residual is
        ``(y_i - y_hat_i) / (1 - H_ii)``.  The intercept is unpenalized and estimated
        from the same samples, so ``H`` gains ``1 1^T / n``: since ``Y`` is centered
        this adds nothing to ``H Y`` but ``1/n`` to every ``H_ii`` (as in
        scikit-learn's ``RidgeCV``).  The returned predictions are in centered units.
        """
        R = state.project(Y)
        for alpha in alphas:
            resid, one_minus_h = state.loo_terms(Y, R, alpha)
            yield Y - resid / one_minus_h[:, None]


class EighKernelSolver(_EighSolver):
    """Kernel (dual) form: eigendecomposition of ``X X^T``; best when n_samples < n_features."""

    _spectrum = _KernelSpectrum


class EighPrimalSolver(_EighSolver):
    """Primal form: eigendecomposition of ``X^T X``; best when n_samples > n_features."""

    _spectrum = _PrimalSpectrum


class SklearnSolver(RidgeSolver):
    """scikit-learn :class:`~sklearn.linear_model.Ridge`, refit for every alpha (reference)."""

    def decompose(self, X: np.ndarray, X_eval: np.ndarray | None = None) -> Any:
        return X, X_eval

    @staticmethod
    def _fit(X: np.ndarray, Y: np.ndarray, alpha: float) -> np.ndarray:
        from sklearn.linear_model import Ridge

        return Ridge(alpha=float(alpha), fit_intercept=False).fit(X, Y).coef_.T

    def path_predict(self, state: Any, Y: np.ndarray, alphas: np.ndarray) -> Iterator[np.ndarray]:
        X, X_eval = state
        for alpha in alphas:
            yield X_eval @ self._fit(X, Y, alpha)

    def coef(self, state: Any, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        X, _ = state
        W = np.empty((X.shape[1], Y.shape[1]), dtype=X.dtype)
        for value in np.unique(alpha):
            cols = np.flatnonzero(alpha == value)
            W[:, cols] = self._fit(X, Y[:, cols], value)
        return W


class HimalayaSolver(RidgeSolver):
    """himalaya's kernel ridge eigenvalue solver (reference; needs ``fmri2image[himalaya]``).

    Uses :func:`himalaya.kernel_ridge.solve_kernel_ridge_eigenvalues` on the linear
    kernel ``X X^T`` with the numpy backend, inside the same cross-validation,
    standardization and voxel selection as the other solvers.
    """

    @staticmethod
    def _solve(K: np.ndarray, Y: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
        require("himalaya", "himalaya", "solver='himalaya'")
        from himalaya.backend import set_backend
        from himalaya.kernel_ridge import solve_kernel_ridge_eigenvalues

        set_backend("numpy", on_error="raise")
        alpha = np.asarray(alpha, dtype=K.dtype)
        dual = solve_kernel_ridge_eigenvalues(K, Y, alpha=alpha, fit_intercept=False)
        return np.asarray(dual)

    def decompose(self, X: np.ndarray, X_eval: np.ndarray | None = None) -> Any:
        K_eval = None if X_eval is None else X_eval @ X.T
        return X, X @ X.T, K_eval

    def path_predict(self, state: Any, Y: np.ndarray, alphas: np.ndarray) -> Iterator[np.ndarray]:
        _, K, K_eval = state
        for alpha in alphas:
            yield K_eval @ self._solve(K, Y, alpha)

    def coef(self, state: Any, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        X, K, _ = state
        return X.T @ self._solve(K, Y, alpha)


#: Registry of ridge solvers; ``RidgeMapping(solver=name)`` picks ``SOLVERS.get(name)``.
SOLVERS: Registry[RidgeSolver] = Registry("ridge solver")
SOLVERS.register("eigh_kernel", EighKernelSolver())
SOLVERS.register("eigh_primal", EighPrimalSolver())
SOLVERS.register("sklearn", SklearnSolver())
SOLVERS.register("himalaya", HimalayaSolver())


def resolve_solver_name(solver: str, n_samples: int, n_features: int) -> str:
    """Map ``"auto"`` to the cheaper eigendecomposition for the data's shape."""
    if solver != "auto":
        return solver
    return "eigh_kernel" if n_samples <= n_features else "eigh_primal"
