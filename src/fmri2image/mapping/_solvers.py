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
    Yield the predictions on ``X_eval`` for every alpha of the grid
    (``path_chunks`` yields them stacked, several alphas per matrix product).
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
regularization path, and a different alpha per target costs nothing extra.  The
path of several alphas is one matrix product: the rows ``L diag(1/(s + a))`` of
all alphas are stacked on ``R``, which BLAS runs faster than one small product
per alpha.

The kernel form computes its eigendecomposition only when a path or leave-one-out
needs it.  The final refit of cross-validation needs only ``(K + alpha I)^{-1} Y``
for the few distinct chosen alphas: one Cholesky factorization per distinct alpha
(on ``K`` with the intercept's direction, the constant vector, deflated: see
:meth:`_KernelSpectrum.solve`) costs a fraction of the eigendecomposition.

scikit-learn's :class:`~sklearn.linear_model.Ridge` (one fit per alpha) and
himalaya's :func:`~himalaya.kernel_ridge.solve_kernel_ridge_eigenvalues` are
registered as independent reference implementations under the same interface.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
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
    supports_dual : bool
        Whether ``dual_coef(state, Y, alpha, R=None)`` returns dual coefficients
        ``C`` (weights ``X^T C``), as :class:`EighKernelSolver` does.
    """

    supports_loo: bool = False
    #: Whether :meth:`dual_coef` is available (kernel-form solvers).
    supports_dual: bool = False

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

    def decompose_subset(
        self, state: Any, X: np.ndarray, train: np.ndarray, val: np.ndarray
    ) -> Any:
        """:meth:`decompose` of the rows ``train`` of ``X``, centered on their own mean,
        with the rows ``val`` (centered the same way) as ``X_eval``.

        ``X`` is the matrix ``state`` was decomposed from; a solver may derive the
        result from ``state`` (the kernel solver takes the blocks of its kernel
        matrix) instead of factorizing the rows again.  Used by cross-validation
        whose folds share one standardization (``cv_statistics="train"``).
        """
        del state
        X_tr = X[train]
        mean = X_tr.mean(axis=0)
        X_tr -= mean
        return self.decompose(X_tr, X[val] - mean)

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

    def path_chunks(
        self,
        state: Any,
        Y: np.ndarray,
        alphas: np.ndarray,
        max_elements: int = 1 << 23,
        workspace: dict[str, np.ndarray] | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        """Predictions on ``X_eval`` for consecutive groups of alphas, stacked.

        Parameters
        ----------
        state, Y, alphas
            As for :meth:`path_predict`.
        max_elements : int
            Bound on the size of one stack (memory); at least one alpha per stack.
        workspace : dict, optional
            Buffers a solver may reuse across calls (e.g. the folds of one fit);
            with it, a yielded stack is valid until the next one is requested.

        Yields
        ------
        alpha_slice : slice
            The positions in ``alphas`` of this stack.
        Y_eval : ndarray of shape (n_alphas_in_slice, n_eval, n_targets)
            The predictions; a fresh array the caller may overwrite.
        """
        del workspace
        preds = self.path_predict(state, Y, alphas)
        for a, pred in enumerate(preds):
            yield slice(a, a + 1), np.array(pred)[None]

    def loo_residuals(
        self, state: Any, Y: np.ndarray, alphas: np.ndarray, R: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """Yield the leave-one-out residuals ``Y - Y_loo`` for each alpha (fresh arrays)."""
        raise NotImplementedError(f"{type(self).__name__} has no efficient leave-one-out")

    def loo_predict(self, state: Any, Y: np.ndarray, alphas: np.ndarray) -> Iterator[np.ndarray]:
        """Yield leave-one-out predictions of the training targets for each alpha."""
        for resid in self.loo_residuals(state, Y, alphas):
            yield Y - resid


def _buffer(
    workspace: dict[str, np.ndarray] | None, key: str, shape: tuple[int, ...], dtype: Any
) -> np.ndarray:
    """An uninitialized array of ``shape``, carved from ``workspace[key]`` when given.

    Reusing one buffer across the folds of a fit spares the allocator a fresh
    mapping of tens of megabytes (and the kernel its zeroed pages) per fold.
    """
    size = int(np.prod(shape))
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    buf = workspace.get(key)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = workspace[key] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


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

    def direct_coef(self, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
        """Weights without the eigendecomposition, or None where that is not cheaper."""
        return None

    def loo_terms(
        self, Y: np.ndarray, R: np.ndarray, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """In-sample residuals ``(I - H) Y`` and ``1 - diag(H)`` for one alpha.

        ``H`` includes the unpenalized intercept (``+ 1/n``).  The residuals are a
        fresh array.
        """
        inv = 1.0 / (self.s + alpha)
        L = self.train_left
        resid = Y - (L * inv) @ R
        one_minus_h = 1.0 - 1.0 / Y.shape[0] - (L * self.train_right) @ inv
        return resid, one_minus_h


def _eigh(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric eigendecomposition in the Gram matrix's own precision (overwrites it).

    scipy's LAPACK ``?syevd`` runs float32 in single precision (``numpy.linalg.eigh``
    would silently upcast to float64, ~4x slower).  On GOD-sized data float32 and
    float64 give the same alphas, CV scores within ~2e-6 and predictions within
    ~4e-6 (relative); choose ``dtype="float64"`` for alphas far below ~1e-6 x the
    largest eigenvalue.
    """
    from scipy.linalg import eigh

    # The transpose of a symmetric C-ordered matrix is the same matrix in Fortran
    # order, which LAPACK takes without a copy.
    s, vecs = eigh(gram.T, driver="evd", overwrite_a=True, check_finite=False)
    # Round-off can make the eigenvalues of a PSD Gram matrix slightly negative.
    return np.clip(s, 0.0, None), vecs


#: Beyond this many Cholesky factorizations for one training matrix (distinct alphas,
#: summed over target batches), one eigendecomposition is cheaper (each
#: factorization costs ~1/20 of ``?syevd``).
_MAX_CHOLESKY_FACTORIZATIONS = 16


class _KernelSpectrum(_Spectrum):
    """``K = X X^T``; its eigendecomposition is computed on first use."""

    def __init__(self, X: np.ndarray | None, X_eval: np.ndarray | None) -> None:
        super().__init__(X, X_eval)
        self.gram: np.ndarray | None = None if X is None else X @ X.T
        self.K_eval: np.ndarray | None = None  # X_eval X^T, when given instead of X_eval
        self.n_factorizations = 0

    @classmethod
    def from_kernel(cls, K: np.ndarray, K_eval: np.ndarray) -> _KernelSpectrum:
        """The spectrum of a centered kernel matrix ``K`` (of the training rows) with
        ``K_eval`` (evaluation rows x training rows): enough for the regularization
        path (:meth:`RidgeSolver.path_chunks`), not for primal weights."""
        spectrum = cls(None, None)
        spectrum.gram, spectrum.K_eval = K, K_eval
        return spectrum

    @cached_property
    def _eig(self) -> tuple[np.ndarray, np.ndarray, bool]:
        gram, self.gram = self.gram, None
        assert gram is not None
        n = gram.shape[0]
        s, U = _eigh(gram)
        # Centered X makes the constant vector an eigenvector of X X^T with
        # eigenvalue 0.  That direction belongs to the intercept, which is fitted
        # exactly elsewhere (and enters the LOO hat matrix as 1/n); left in, its
        # round-off eigenvalue (~eps * s.max(), i.e. ~0.1 in float32 on GOD-sized
        # data) would count the intercept twice when alpha is small.
        align = np.abs(U.sum(axis=0)) / np.sqrt(n)
        k0 = int(np.argmax(align))
        complete = bool(
            n > 1 and align[k0] > 0.99 and s[k0] <= np.sqrt(np.finfo(s.dtype).eps) * s.max()
        )
        if complete:
            keep = np.arange(s.size) != k0
            s, U = s[keep], U[:, keep]
        return s, U, complete

    @property
    def s(self) -> np.ndarray:  # type: ignore[override]
        return self._eig[0]

    @property
    def U(self) -> np.ndarray:
        return self._eig[1]

    @property
    def complete(self) -> bool:
        return self._eig[2]

    @cached_property
    def _U_squared(self) -> np.ndarray:
        return np.square(self.U)

    def loo_terms(
        self, Y: np.ndarray, R: np.ndarray, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self.complete:
            return super().loo_terms(Y, R, alpha)
        # U spans exactly the centered subspace, so U U^T = I - 11^T/n and
        # I - H = U diag(alpha / (s + alpha)) U^T on it: both terms are computed
        # without the cancellation of 1 - H_ii ~ alpha / s when alpha is small.
        w = alpha / (self.s + alpha)
        return (self.U * w) @ R, self._U_squared @ w

    def project(self, Y: np.ndarray) -> np.ndarray:
        return self.U.T @ Y

    def weights(self, R_scaled: np.ndarray) -> np.ndarray:
        return self.X.T @ self.dual_weights(R_scaled)

    def dual_weights(self, R_scaled: np.ndarray) -> np.ndarray:
        """Dual coefficients ``C = U R_scaled`` (so that the weights are ``X^T C``)."""
        return self.U @ R_scaled

    @cached_property
    def eval_left(self) -> np.ndarray:
        K_eval = self.K_eval if self.K_eval is not None else self.X_eval @ self.X.T
        return K_eval @ self.U

    @cached_property
    def train_left(self) -> np.ndarray:
        return self.U * self.s

    @property
    def train_right(self) -> np.ndarray:
        return self.U

    def direct_coef(self, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
        C = self.direct_dual(Y, alpha)
        return None if C is None else self.X.T @ C

    def direct_dual(self, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
        """Dual coefficients without the eigendecomposition, or None where that is not cheaper."""
        distinct = np.unique(alpha).size
        if self.gram is None or self.n_factorizations + distinct > _MAX_CHOLESKY_FACTORIZATIONS:
            return None  # the eigendecomposition exists already, or is cheaper now
        return self.solve(Y, alpha)

    def solve(self, Y: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
        """Dual coefficients ``C = (K + alpha_j I)^{-1} y_j`` by Cholesky, per distinct alpha.

        As the eigendecomposition drops the constant eigenvector of a centered
        ``X``, the constant direction is deflated first: with the Householder
        reflection ``Q`` that maps ``1`` to a multiple of ``e_1``, ``Q K Q`` has a
        (numerically) zero first row and column, and the system is solved on the
        remaining ``(n - 1) x (n - 1)`` block, where ``K`` is positive definite
        unless ``X`` has fewer independent rows than samples.  Returns None where a
        factorization fails (a singular ``K + alpha I`` in floating point); the
        caller then uses the eigendecomposition.

        Parameters
        ----------
        Y : ndarray of shape (n_samples, n_targets)
        alpha : ndarray of shape (n_targets,)

        Returns
        -------
        C : ndarray of shape (n_samples, n_targets), or None
        """
        from scipy.linalg import get_lapack_funcs

        K = self.gram
        assert K is not None
        n, dt = K.shape[0], K.dtype
        root_n = np.sqrt(n)
        u = np.full(n, 1.0 / root_n, dtype=dt)
        deflate = n > 1 and float(np.linalg.norm(K @ u)) <= np.sqrt(np.finfo(dt).eps) * float(
            np.trace(K)
        )
        # Targets sorted by alpha, in target-major layout: the rows of ``Bt`` that
        # share an alpha are one contiguous block, whose transpose is the
        # Fortran-ordered right-hand side LAPACK solves in place (no copies per alpha).
        order = np.argsort(alpha, kind="stable")
        Yt = np.asarray(Y.T[order], dtype=np.result_type(dt, Y.dtype))
        if deflate:
            # v = 1 + sqrt(n) e_1 is 1 below its first entry.
            beta = dt.type(1.0 / (n + root_n))  # 2 / (v^T v)
            v = np.ones(n, dtype=dt)
            v[0] += root_n
            QK = K - np.outer(beta * v, v @ K)
            A0 = (QK - np.outer(QK @ v, beta * v))[1:, 1:]
            vY = Yt @ v
            Bt = Yt[:, 1:] - (beta * vY)[:, None]  # rows 1.. of Q Y, transposed
        else:
            A0, Bt = K, Yt
        potrf, potrs = get_lapack_funcs(("potrf", "potrs"), (A0,))
        m = A0.shape[0]
        sorted_alpha = alpha[order]
        values, starts = np.unique(sorted_alpha, return_index=True)
        bounds = [*starts.tolist(), sorted_alpha.size]
        for value, a, b in zip(values, bounds[:-1], bounds[1:], strict=True):
            A = np.array(A0, order="F")
            A[np.diag_indices(m)] += value
            factor, info = potrf(A, lower=True, overwrite_a=True, clean=False)
            self.n_factorizations += 1
            if info != 0:
                return None
            Z, info = potrs(factor, Bt[a:b].T, lower=True, overwrite_b=True)
            if info != 0:
                return None
            if not np.shares_memory(Z, Bt):
                Bt[a:b] = Z.T
        if deflate:
            # C = Q [0; Z], transposed: Q = I - beta v v^T.
            Zsum = Bt.sum(axis=1)
            Ct = np.empty((Bt.shape[0], n), dtype=Bt.dtype)
            Ct[:, 0] = -beta * v[0] * Zsum
            np.subtract(Bt, (beta * Zsum)[:, None], out=Ct[:, 1:])
        else:
            Ct = Bt
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return Ct[inverse].T


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

    def project(self, state: _Spectrum, Y: np.ndarray) -> np.ndarray:
        """``R``, the spectral projection of ``Y`` that the path, LOO and refit share."""
        return state.project(Y)

    def path_predict(
        self, state: _Spectrum, Y: np.ndarray, alphas: np.ndarray
    ) -> Iterator[np.ndarray]:
        L, R = state.eval_left, state.project(Y)
        for alpha in alphas:
            yield (L / (state.s + alpha)) @ R

    def path_chunks(
        self,
        state: _Spectrum,
        Y: np.ndarray,
        alphas: np.ndarray,
        max_elements: int = 1 << 23,
        workspace: dict[str, np.ndarray] | None = None,
    ) -> Iterator[tuple[slice, np.ndarray]]:
        # One product (n_alphas * n_eval, rank) @ (rank, n_targets) per chunk: the
        # same arithmetic as path_predict, at the speed of one large matrix product.
        L, R = state.eval_left, state.project(Y)
        n_eval, rank = L.shape
        n_targets = R.shape[1]
        dtype = np.result_type(L.dtype, R.dtype)
        step = max(1, min(alphas.size, max_elements // max(n_eval * max(rank, n_targets), 1)))
        for a0 in range(0, alphas.size, step):
            chunk = alphas[a0 : a0 + step]
            scaled = _buffer(workspace, "scaled", (chunk.size * n_eval, rank), dtype)
            np.divide(
                L[None],
                state.s[None, None, :] + chunk[:, None, None],
                out=scaled.reshape(chunk.size, n_eval, rank),
            )
            P = _buffer(workspace, "path", (chunk.size * n_eval, n_targets), dtype)
            np.matmul(scaled, R, out=P)
            yield slice(a0, a0 + chunk.size), P.reshape(chunk.size, n_eval, n_targets)

    def coef(
        self, state: _Spectrum, Y: np.ndarray, alpha: np.ndarray, R: np.ndarray | None = None
    ) -> np.ndarray:
        """Weights with one alpha per target (``R``: :meth:`project` of ``Y``, if known)."""
        return self._refit(state, Y, alpha, R, state.direct_coef, state.weights)

    @staticmethod
    def _refit(
        state: _Spectrum,
        Y: np.ndarray,
        alpha: np.ndarray,
        R: np.ndarray | None,
        direct: Callable[[np.ndarray, np.ndarray], np.ndarray | None],
        from_spectrum: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """``direct(Y, alpha)`` where it answers (a solve without the spectrum), else
        ``from_spectrum(R / (s + alpha))``."""
        alpha = np.asarray(alpha)
        if R is None:
            out = direct(Y, alpha)
            if out is not None:
                return out
            R = state.project(Y)
        return from_spectrum(R / (state.s[:, None] + alpha.astype(R.dtype)[None, :]))

    def loo_residuals(
        self, state: _Spectrum, Y: np.ndarray, alphas: np.ndarray, R: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """Exact leave-one-out residuals (generalized cross-validation shortcut).

        For a linear smoother ``Y_hat = H Y`` the leave-one-out residual is
        ``(y_i - y_hat_i) / (1 - H_ii)``.  The intercept is unpenalized and estimated
        from the same samples, so ``H`` gains ``1 1^T / n``: since ``Y`` is centered
        this adds nothing to ``H Y`` but ``1/n`` to every ``H_ii`` (as in
        scikit-learn's ``RidgeCV``).  The residuals are in centered units.
        """
        R = state.project(Y) if R is None else R
        for alpha in alphas:
            resid, one_minus_h = state.loo_terms(Y, R, alpha)
            resid /= one_minus_h[:, None]
            yield resid


class EighKernelSolver(_EighSolver):
    """Kernel (dual) form: eigendecomposition of ``X X^T``; best when n_samples < n_features."""

    _spectrum = _KernelSpectrum
    supports_dual = True

    def dual_coef(
        self,
        state: _KernelSpectrum,
        Y: np.ndarray,
        alpha: np.ndarray,
        R: np.ndarray | None = None,
    ) -> np.ndarray:
        """Dual coefficients ``C`` with one alpha per target: the weights are ``X^T C``
        and the predictions at ``X_new`` are ``(X_new X^T) C``.

        Costs ``n_samples^2 x n_targets`` against the weights' additional
        ``n_features x n_samples x n_targets`` (``R``: :meth:`project` of ``Y``, if
        known).
        """
        return self._refit(state, Y, alpha, R, state.direct_dual, state.dual_weights)

    def decompose_subset(
        self, state: _Spectrum, X: np.ndarray, train: np.ndarray, val: np.ndarray
    ) -> _Spectrum:
        """The fold's kernel blocks taken from ``state``'s kernel matrix of all rows and
        re-centered on the fold's training rows (no product over the features).

        With ``mu`` the mean of the training rows, ``(x_i - mu) . (x_j - mu) = K_ij -
        x_i . mu - mu . x_j + mu . mu``, and ``x_i . mu`` is the mean of row ``i`` of
        ``K`` over the training columns.
        """
        K = getattr(state, "gram", None)
        if K is None:  # already eigendecomposed: factorize the rows instead
            return super().decompose_subset(state, X, train, val)
        K_tr = K[np.ix_(train, train)]
        K_va = K[np.ix_(val, train)]
        col = K_tr.mean(axis=0)  # mu . x_j for the training rows j
        mu_mu = col.mean(dtype=np.float64).astype(K.dtype)
        K_tr -= col[:, None]
        K_tr -= col[None, :]
        K_tr += mu_mu
        K_va -= K_va.mean(axis=1, keepdims=True)
        K_va -= col[None, :]
        K_va += mu_mu
        return _KernelSpectrum.from_kernel(K_tr, K_va)


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

        coef = Ridge(alpha=float(alpha), fit_intercept=False).fit(X, Y).coef_
        # (n_targets, n_features), or (n_features,) for a single-column Y in some
        # scikit-learn versions.
        return np.reshape(coef, (Y.shape[1], X.shape[1])).T

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
