"""The fast paths of the ridge solvers equal the plain computations they replace.

Stacked alpha paths, in-place pooled scoring, scoring from residuals, the one-pass
scaler and the Cholesky refit (with the intercept's direction deflated) are each
checked against the straightforward formula on tiny planted data.
"""

from __future__ import annotations

import numpy as np
import pytest
from _mapping_data import planted

from fmri2image.mapping import RidgeMapping
from fmri2image.mapping._cv import (
    PooledScores,
    Scaler,
    fit_scaler,
    fit_transform_scaler,
    score_columns,
    score_residuals,
)
from fmri2image.mapping._solvers import EighKernelSolver, EighPrimalSolver, SklearnSolver

ALPHAS = np.logspace(-2, 6, 9)


def centered(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(axis=0)) / X.std(axis=0)


# ----------------------------------------------------------- stacked alpha path
@pytest.mark.parametrize("solver", [EighKernelSolver(), EighPrimalSolver(), SklearnSolver()])
@pytest.mark.parametrize("max_elements", [1, 300, 1 << 23])
def test_path_chunks_equal_path_predict(solver, max_elements):
    X, Y, _ = planted(36, 50, 3, seed=20)
    Xz = centered(X)
    state = solver.decompose(Xz[:28], Xz[28:])
    Yc = Y[:28] - Y[:28].mean(axis=0)
    expected = np.stack(list(solver.path_predict(state, Yc, ALPHAS)))
    got = np.empty_like(expected)
    covered = []
    for rows, stack in solver.path_chunks(state, Yc, ALPHAS, max_elements=max_elements):
        got[rows] = stack
        covered.extend(range(ALPHAS.size)[rows])
    assert covered == list(range(ALPHAS.size))  # every alpha once, in order
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- pooled scoring
@pytest.mark.parametrize("scoring", ["r2", "correlation"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stacked_pooled_scores_equal_per_alpha_scores(scoring, dtype):
    rng = np.random.default_rng(21)
    n_alphas, n_targets = 5, 4
    Y = rng.standard_normal((30, n_targets)) * 3 + 2
    ref = fit_scaler(Y, scale=True)
    plain = PooledScores(n_alphas, n_targets, ref, scoring)
    stacked = PooledScores(n_alphas, n_targets, ref, scoring)
    for val in (np.arange(0, 12), np.arange(12, 30)):
        preds = rng.standard_normal((n_alphas, val.size, n_targets))
        fold = Scaler(mean=rng.standard_normal(n_targets), scale=rng.uniform(0.5, 2, n_targets))
        plain.add_fold(slice(None), Y[val], list(preds), fold)
        # Two chunks of alphas, overwritten in place.
        for rows in (slice(0, 2), slice(2, n_alphas)):
            chunk = preds[rows].astype(dtype)
            stacked.add_fold(slice(None), Y[val], chunk, fold, alphas=rows, overwrite=True)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(stacked.scores(), plain.scores(), rtol=tol, atol=tol)
    np.testing.assert_array_equal(stacked.n, plain.n)  # target sums added once per fold


def test_score_residuals_equal_score_columns():
    rng = np.random.default_rng(22)
    Y = rng.standard_normal((25, 4))
    Y[:, 3] = 1.5  # constant target: R² 0 unless predicted exactly
    resid = 0.3 * rng.standard_normal((25, 4))
    for scoring in ("r2", "correlation"):
        np.testing.assert_allclose(
            score_residuals(Y, resid, scoring), score_columns(Y, Y - resid, scoring), rtol=1e-12
        )
    exact = np.zeros_like(resid)
    np.testing.assert_array_equal(score_residuals(Y, exact, "r2"), [1, 1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [True, False])
def test_fit_transform_scaler_equals_fit_then_transform(dtype, scale):
    X, _, _ = planted(40, 30, 1, seed=23)
    X = X.astype(dtype)
    X[:, 4] = 7.0  # constant voxel: centered, not divided by ~0
    scaler = fit_scaler(X, scale=scale)
    got, Xz = fit_transform_scaler(X, scale=scale)
    np.testing.assert_array_equal(got.mean, scaler.mean)
    np.testing.assert_array_equal(got.scale, scaler.scale)
    np.testing.assert_array_equal(Xz, scaler.transform(X))
    own = X.copy()
    _, Xz_inplace = fit_transform_scaler(own, scale=scale, overwrite=True)
    assert Xz_inplace is own
    np.testing.assert_array_equal(own, scaler.transform(X))


# ------------------------------------------------------------- Cholesky refit
def spectral_coef(state, Y, alpha):
    """The eigendecomposition refit (forces the spectrum first)."""
    _ = state.s
    return EighKernelSolver().coef(state, Y, alpha)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cholesky_refit_equals_spectral_refit(dtype):
    X, Y, _ = planted(40, 120, 6, seed=24)
    Xz, Yc = centered(X).astype(dtype), (Y - Y.mean(axis=0)).astype(dtype)
    alpha = np.array([1e-2, 1.0, 1.0, 1e3, 1e6, 1e-2], dtype=dtype)  # 4 distinct values
    solver = EighKernelSolver()
    fresh = solver.decompose(Xz)
    direct = solver.coef(fresh, Yc, alpha)
    assert fresh.gram is not None  # solved by Cholesky: no eigendecomposition was needed
    expected = spectral_coef(solver.decompose(Xz), Yc, alpha)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(direct, expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_cholesky_refit_without_deflation_for_uncentered_inputs():
    X, Y, _ = planted(30, 80, 2, seed=25)
    solver = EighKernelSolver()
    alpha = np.array([0.5, 50.0])
    direct = solver.coef(solver.decompose(X + 5.0), Y, alpha)
    expected = spectral_coef(solver.decompose(X + 5.0), Y, alpha)
    np.testing.assert_allclose(direct, expected, rtol=1e-9, atol=1e-12)


def test_failed_factorization_falls_back_to_the_eigendecomposition():
    X, Y, _ = planted(20, 40, 2, seed=26)
    Xz, Yc = centered(X), Y - Y.mean(axis=0)
    solver = EighKernelSolver()
    state = solver.decompose(Xz)
    alpha = np.array([-1e4, 1.0])  # K - 1e4 I is negative definite: Cholesky must fail
    assert state.solve(Yc, alpha) is None
    np.testing.assert_allclose(
        solver.coef(state, Yc, alpha),
        spectral_coef(solver.decompose(Xz), Yc, alpha),
        rtol=1e-9,
        atol=1e-12,
    )


def test_cv_refit_equals_refit_on_all_rows_with_chosen_alphas():
    """The Cholesky refit of ``fit`` gives scikit-learn's Ridge with the chosen alphas."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, Y, _ = planted(48, 90, 4, noise=1.0, seed=27)
    model = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64").fit(X, Y)
    for j in range(Y.shape[1]):
        ref = make_pipeline(StandardScaler(), Ridge(alpha=model.alpha_[j])).fit(X, Y[:, j])
        np.testing.assert_allclose(model.predict(X)[:, j], ref.predict(X), rtol=1e-8, atol=1e-8)


def test_many_target_batches_switch_to_one_eigendecomposition():
    """Refits batch by batch stop factorizing once an eigendecomposition is cheaper."""
    from fmri2image.mapping._solvers import _MAX_CHOLESKY_FACTORIZATIONS

    X = planted(30, 60, 1, seed=28)[0]
    Xz = centered(X)
    rng = np.random.default_rng(28)
    Yc = rng.standard_normal((30, _MAX_CHOLESKY_FACTORIZATIONS + 4))
    Yc -= Yc.mean(axis=0)
    alpha = np.logspace(-1, 3, Yc.shape[1])  # a different alpha per target
    solver = EighKernelSolver()
    state = solver.decompose(Xz)
    batched = np.column_stack(
        [solver.coef(state, Yc[:, [j]], alpha[[j]]) for j in range(Yc.shape[1])]
    )
    assert state.n_factorizations == _MAX_CHOLESKY_FACTORIZATIONS
    assert state.gram is None  # the later batches used the eigendecomposition
    expected = spectral_coef(solver.decompose(Xz), Yc, alpha)
    np.testing.assert_allclose(batched, expected, rtol=1e-9, atol=1e-12)
