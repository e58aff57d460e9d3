"""RidgeMapping against scikit-learn, brute-force CV, planted signal and leakage checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _mapping_data import planted
from sklearn.base import clone
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.evaluation import two_way_identification
from fmri2image.mapping import SOLVERS, RidgeMapping, rescale_predictions_transductive
from fmri2image.mapping import _ridge as ridge_module

ALPHAS = np.logspace(-2, 6, 9)
EIGH = ["eigh_kernel", "eigh_primal"]
ALL = [*EIGH, "sklearn", "himalaya"]
# float64 predictions agree with scikit-learn to round-off (observed ~1e-14).
RTOL64, ATOL64 = 1e-8, 1e-8


def sk_reference(alpha: float, standardize: bool):
    ridge = Ridge(alpha=alpha)
    return make_pipeline(StandardScaler(), ridge) if standardize else ridge


# ------------------------------------------------------------ fixed alpha = sklearn
@pytest.mark.parametrize("solver", ALL)
@pytest.mark.parametrize("data", ["wide", "tall"])
@pytest.mark.parametrize("standardize", [True, False])
def test_fixed_alpha_equals_sklearn_ridge(solver, data, standardize, request):
    X, Y, _ = request.getfixturevalue(data)
    X_test = X[:7] * 1.3 - 0.5
    model = RidgeMapping(
        alphas=[3.0], cv=3, solver=solver, standardize_X=standardize, dtype="float64"
    ).fit(X, Y)
    ref = sk_reference(3.0, standardize).fit(X, Y)
    np.testing.assert_allclose(model.predict(X_test), ref.predict(X_test), rtol=RTOL64, atol=ATOL64)
    assert model.solver_ == solver


@pytest.mark.parametrize("data", ["wide", "tall"])
def test_auto_solver_picks_cheaper_form(data, request):
    X, Y, _ = request.getfixturevalue(data)
    model = RidgeMapping(alphas=[1.0], cv=2).fit(X, Y)
    assert model.solver_ == ("eigh_kernel" if X.shape[0] <= X.shape[1] else "eigh_primal")


def test_per_target_alpha_equals_separate_sklearn_fits(wide):
    X, Y, _ = wide
    model = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64").fit(X, Y)
    assert len(np.unique(model.alpha_)) > 1  # the test is only meaningful if alphas differ
    for j, alpha in enumerate(model.alpha_):
        ref = sk_reference(alpha, True).fit(X, Y[:, j])
        np.testing.assert_allclose(model.predict(X)[:, j], ref.predict(X), rtol=RTOL64, atol=ATOL64)


def test_float32_default_close_to_sklearn(wide):
    X, Y, _ = wide
    model = RidgeMapping(alphas=[10.0], cv=2).fit(X, Y)
    assert model.coef_.dtype == np.float32
    ref = sk_reference(10.0, True).fit(X, Y)
    scale = np.abs(Y).max()
    # float32 round-off: relative error ~1e-6 of the target scale; 1e-4 leaves margin.
    np.testing.assert_allclose(model.predict(X), ref.predict(X), atol=1e-4 * scale)


def test_standardize_Y_does_not_change_predictions(wide):
    X, Y, _ = wide
    a = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64", standardize_Y=True).fit(X, Y)
    b = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64", standardize_Y=False).fit(X, Y)
    np.testing.assert_array_equal(a.alpha_, b.alpha_)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.y_scale_, Y.std(axis=0))
    np.testing.assert_array_equal(b.y_scale_, np.ones(Y.shape[1]))


def test_target_batches_give_identical_results(wide):
    X, Y, _ = wide
    full = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64").fit(X, Y)
    batched = RidgeMapping(alphas=ALPHAS, cv=4, dtype="float64", n_targets_batch=1).fit(X, Y)
    np.testing.assert_allclose(batched.cv_scores_, full.cv_scores_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(batched.predict(X), full.predict(X), rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------- dual-form models
def _dual_data():
    # n_samples * (n_voxels + n_targets) < n_voxels * n_targets: the fit keeps the
    # dual form, as at GOD's size (1,200 x (4,643 + 2,048) < 4,643 x 2,048).
    X, Y, _ = planted(40, 300, 200, seed=3)
    return X, Y


@pytest.mark.parametrize("cv", [4, "loo"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dual_form_fit_predicts_like_the_weights(cv, dtype):
    X, Y = _dual_data()
    X_new = X[:9] * 1.1 + 0.3
    model = RidgeMapping(alphas=ALPHAS, cv=cv, dtype=dtype).fit(X, Y)
    assert "_dual" in vars(model) and "_coef" not in vars(model)
    # float32 predictions: round-off of ~1e-6 of the target scale; 1e-4 leaves margin.
    scale = float(np.abs(Y).max())
    tol = dict(rtol=1e-8, atol=1e-8 * scale) if dtype == "float64" else dict(atol=1e-4 * scale)
    before = dict(vars(model))
    pred = model.predict(X_new)
    assert pred.dtype == np.dtype(dtype)
    # predict reads the dual form and leaves the model as it was.
    assert vars(model).keys() == before.keys()
    # Each target: scikit-learn's Ridge at the chosen alpha.
    assert np.unique(model.alpha_).size > 2
    for j in range(0, 200, 13):
        ref = sk_reference(float(model.alpha_[j]), True).fit(X, Y[:, j])
        np.testing.assert_allclose(pred[:, j], ref.predict(X_new), **tol)
    if dtype == "float64":  # the weight form fits the same (the primal solver, in float64)
        primal = RidgeMapping(alphas=ALPHAS, cv=cv, dtype=dtype, solver="eigh_primal").fit(X, Y)
        assert "_dual" not in vars(primal)
        np.testing.assert_array_equal(model.alpha_, primal.alpha_)
        np.testing.assert_allclose(pred, primal.predict(X_new), **tol)
    coef = model.coef_  # computed once, on first access; the dual form is dropped
    assert coef.shape == (300, 200) and coef.dtype == np.dtype(dtype)
    assert "_dual" not in vars(model) and model.coef_ is coef
    if dtype == "float64":
        np.testing.assert_allclose(coef, primal.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(model.predict(X_new), pred, **tol)


def test_dual_form_is_kept_only_where_smaller():
    X, Y = _dual_data()
    assert "_dual" in vars(RidgeMapping(alphas=[1.0], cv=2).fit(X, Y))
    # Few targets: the weights (300 x 5) are smaller than 40 x (300 + 5).
    assert "_dual" not in vars(RidgeMapping(alphas=[1.0], cv=2).fit(X, Y[:, :5]))
    # A refit in the other form replaces the previous state entirely.
    model = RidgeMapping(alphas=[1.0], cv=2).fit(X, Y)
    model.fit(X, Y[:, :5])
    assert "_dual" not in vars(model) and model.coef_.shape == (300, 5)
    model.fit(X, Y)
    assert "_coef" not in vars(model) and model.coef_.shape == (300, 200)


def test_model_pickled_by_an_earlier_version_keeps_its_weights():
    import pickle

    X, Y = _dual_data()
    model = RidgeMapping(alphas=[1.0], cv=2).fit(X, Y[:, :5])
    pred = model.predict(X[:3])
    state = pickle.loads(pickle.dumps(model)).__dict__
    state["coef_"] = state.pop("_coef")  # earlier versions kept the weights as coef_
    old = RidgeMapping.__new__(RidgeMapping)
    old.__dict__.update(state)
    np.testing.assert_array_equal(old.predict(X[:3]), pred)
    np.testing.assert_array_equal(old.coef_, model.coef_)


def test_unfitted_model_has_no_coef():
    from sklearn.exceptions import NotFittedError

    model = RidgeMapping()
    assert not hasattr(model, "coef_")
    with pytest.raises(NotFittedError):
        model.predict(np.zeros((2, 3)))


# --------------------------------------------------------- CV = brute-force loops
def pearson_columns(Y_true, Y_pred):
    from scipy.stats import pearsonr

    return np.array([pearsonr(Y_true[:, j], Y_pred[:, j])[0] for j in range(Y_true.shape[1])])


def brute_force_cv(
    X, Y, alphas, folds, n_voxels=None, pooling="fold-mean", scoring="r2", standardize=True
):
    """Explicit loops over folds and alphas with scikit-learn ``Ridge``; score per target.

    ``"fold-mean"``: one score per validation fold, averaged.  ``"pooled"``: each
    sample's out-of-fold prediction (original units, as scikit-learn returns it)
    is collected, then every target is scored once over all samples.
    """
    score = (
        (lambda t, p: r2_score(t, p, multioutput="raw_values"))
        if scoring == "r2"
        else pearson_columns
    )
    fold_mean = np.zeros((len(alphas), Y.shape[1]))
    oof = np.full((len(alphas), *Y.shape), np.nan)
    for train, val in folds:
        cols = np.arange(X.shape[1])
        if n_voxels is not None:
            r = np.corrcoef(X[train].T, Y[train].T)[: X.shape[1], X.shape[1] :]
            cols = np.sort(np.argsort(-np.mean(r**2, axis=1), kind="stable")[:n_voxels])
        for a, alpha in enumerate(alphas):
            ref = sk_reference(alpha, standardize).fit(X[np.ix_(train, cols)], Y[train])
            pred = ref.predict(X[np.ix_(val, cols)])
            fold_mean[a] += score(Y[val], pred)
            oof[a, val] = pred
    if pooling == "fold-mean":
        scores = fold_mean / len(folds)
    else:
        assert not np.isnan(oof).any()  # the folds cover every sample once
        scores = np.array([score(Y, oof[a]) for a in range(len(alphas))])
    return scores, alphas[np.argmax(scores, axis=0)]


POOLINGS = ["pooled", "fold-mean"]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("solver", ALL)
def test_cv_statistics_train_equals_brute_force_with_one_standardization(solver, pooling):
    """cv_statistics="train": the voxels z-scored once with all training samples (as
    Pipeline(StandardScaler(), KernelRidgeCV()) does), each fold's ridge centered on
    its own training part (scikit-learn's Ridge with its intercept)."""
    X, Y, _ = planted(48, 60, 6, noise=2.0, seed=3)
    X = X * np.linspace(0.5, 3.0, X.shape[1]) + 1.5  # scales and offsets to undo
    folds = list(KFold(4).split(X))
    model = RidgeMapping(
        alphas=ALPHAS, cv=4, solver=solver, score_pooling=pooling, dtype="float64",
        cv_statistics="train",
    ).fit(X, Y)  # fmt: skip
    Xs = StandardScaler().fit_transform(X)
    scores, best = brute_force_cv(Xs, Y, ALPHAS, folds, pooling=pooling, standardize=False)
    np.testing.assert_allclose(model.cv_scores_, scores, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(model.alpha_, best)
    # Only the choice of alphas differs from per-fold statistics: with the same
    # alpha, a target's final fit (all training samples) is the same.
    fold = RidgeMapping(alphas=ALPHAS, cv=4, solver=solver, dtype="float64").fit(X, Y)
    assert not np.allclose(fold.cv_scores_, model.cv_scores_)
    same = fold.alpha_ == model.alpha_
    assert same.any()
    np.testing.assert_allclose(model.coef_[:, same], fold.coef_[:, same], rtol=1e-8, atol=1e-10)


def test_cv_statistics_train_is_faster_path_of_the_kernel_solver(monkeypatch):
    """The kernel solver takes each fold's blocks from the kernel matrix of all rows:
    no product over the voxels per fold."""
    from fmri2image.mapping import _solvers

    X, Y, _ = planted(40, 80, 4, noise=1.0, seed=1)
    products = []
    real = _solvers._KernelSpectrum.__init__

    def counting(self, X_, X_eval):
        products.append(X_ is not None)
        real(self, X_, X_eval)

    monkeypatch.setattr(_solvers._KernelSpectrum, "__init__", counting)
    RidgeMapping(alphas=ALPHAS, cv=4, solver="eigh_kernel", cv_statistics="train").fit(X, Y)
    assert products.count(True) == 1  # the all-sample kernel; folds: from_kernel
    products.clear()
    RidgeMapping(alphas=ALPHAS, cv=4, solver="eigh_kernel").fit(X, Y)
    assert products.count(True) == 5  # one per fold and the final fit


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("solver", EIGH)
def test_cv_alphas_equal_brute_force(solver, pooling):
    X, Y, _ = planted(48, 60, 6, noise=2.0, seed=3)
    folds = list(KFold(4).split(X))
    model = RidgeMapping(
        alphas=ALPHAS, cv=4, solver=solver, score_pooling=pooling, dtype="float64"
    ).fit(X, Y)
    scores, best = brute_force_cv(X, Y, ALPHAS, folds, pooling=pooling)
    np.testing.assert_allclose(model.cv_scores_, scores, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(model.alpha_, best)
    assert model.n_splits_ == 4


@pytest.mark.parametrize("scoring", ["r2", "correlation"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_grouped_cv_equals_brute_force_group_kfold(pooling, scoring):
    X, Y, _ = planted(48, 60, 5, noise=2.0, seed=4)
    groups = np.repeat(np.arange(12), 4)  # e.g. 12 categories x 4 images
    model = RidgeMapping(
        alphas=ALPHAS, cv=3, scoring=scoring, score_pooling=pooling, dtype="float64"
    ).fit(X, Y, groups=groups)
    folds = list(GroupKFold(3).split(X, groups=groups))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
    scores, best = brute_force_cv(X, Y, ALPHAS, folds, pooling=pooling, scoring=scoring)
    np.testing.assert_allclose(model.cv_scores_, scores, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(model.alpha_, best)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_voxel_selection_cv_equals_brute_force(pooling):
    X, Y, _ = planted(48, 80, 4, noise=1.0, seed=5)
    model = RidgeMapping(
        alphas=ALPHAS, cv=4, n_voxels=20, score_pooling=pooling, dtype="float64"
    ).fit(X, Y)
    folds = list(KFold(4).split(X))
    scores, best = brute_force_cv(X, Y, ALPHAS, folds, n_voxels=20, pooling=pooling)
    np.testing.assert_allclose(model.cv_scores_, scores, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(model.alpha_, best)
    # The planted informative voxels 0..4 are among the selected ones.
    assert set(range(5)) <= set(model.voxel_indices_.tolist())
    assert model.coef_.shape == (20, 4)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_single_alpha_for_all_targets(pooling):
    X, Y, _ = planted(48, 60, 6, noise=2.0, seed=3)
    model = RidgeMapping(
        alphas=ALPHAS, cv=4, alpha_per_target=False, score_pooling=pooling, dtype="float64"
    ).fit(X, Y)
    scores, _ = brute_force_cv(X, Y, ALPHAS, list(KFold(4).split(X)), pooling=pooling)
    assert np.all(model.alpha_ == ALPHAS[np.argmax(scores.mean(axis=1))])


@pytest.mark.parametrize("data", ["wide", "tall"])
def test_loo_equals_sklearn_ridgecv(data, request):
    X, Y, _ = request.getfixturevalue(data)
    model = RidgeMapping(alphas=ALPHAS, cv="loo", dtype="float64").fit(X, Y)
    ref = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS, alpha_per_target=True)).fit(X, Y)
    np.testing.assert_array_equal(model.alpha_, ref[-1].alpha_)
    np.testing.assert_allclose(model.predict(X), ref.predict(X), rtol=RTOL64, atol=ATOL64)


def test_loo_predictions_equal_explicit_refits():
    X, Y, _ = planted(20, 30, 2, seed=6)
    Xz = StandardScaler().fit_transform(X)  # cv="loo" standardizes with all training rows
    model = RidgeMapping(alphas=[5.0], cv="loo", dtype="float64").fit(X, Y)
    expected = np.empty_like(Y)
    for i in range(len(Y)):
        keep = np.arange(len(Y)) != i
        expected[i] = Ridge(5.0).fit(Xz[keep], Y[keep]).predict(Xz[i : i + 1])[0]
    r2 = r2_score(Y, expected, multioutput="raw_values")
    np.testing.assert_allclose(model.cv_scores_[0], r2, rtol=1e-9)


# ------------------------------------------------------------ planted signal / null
def test_planted_signal_identified_and_shuffled_labels_at_chance():
    X, Y, _ = planted(160, 100, 8, noise=0.5, seed=7)
    X_tr, Y_tr, X_te, Y_te = X[:100], Y[:100], X[100:], Y[100:]
    model = RidgeMapping(cv=5).fit(X_tr, Y_tr)
    assert two_way_identification(Y_te, model.predict(X_te)).mean() > 0.9

    perm = np.random.default_rng(0).permutation(len(Y_tr))
    null = RidgeMapping(cv=5).fit(X_tr, Y_tr[perm])
    acc = two_way_identification(Y_te, null.predict(X_te)).mean()
    assert abs(acc - 0.5) < 0.1


# ---------------------------------------------------------- no statistic touches test
def fitted_state(model: RidgeMapping) -> dict[str, np.ndarray]:
    keys = [
        "coef_",
        "alpha_",
        "cv_scores_",
        "x_mean_",
        "x_scale_",
        "y_mean_",
        "y_scale_",
        "voxel_indices_",
    ]
    return {k: np.array(getattr(model, k), copy=True) for k in keys}


def test_predict_uses_no_test_statistics(wide):
    X, Y, _ = wide
    model = RidgeMapping(alphas=ALPHAS, cv=4, n_voxels=50).fit(X, Y)
    before = fitted_state(model)
    rng = np.random.default_rng(0)
    X_test = rng.standard_normal((10, X.shape[1]))
    clean = model.predict(X_test)
    poisoned = X_test.copy()
    poisoned[::2] = rng.uniform(-1e6, 1e6, poisoned[::2].shape)  # garbage in half the rows
    out = model.predict(poisoned)
    np.testing.assert_array_equal(out[1::2], clean[1::2])  # other rows unaffected
    for i in range(len(X_test)):  # each row's prediction depends on that row alone
        np.testing.assert_allclose(
            model.predict(X_test[i : i + 1])[0], clean[i], rtol=1e-5, atol=1e-5
        )
    after = fitted_state(model)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_fit_statistics_come_from_training_rows_only(wide, monkeypatch):
    """Every scaler and voxel selection sees exactly one fold's training rows (or all)."""
    X, Y, _ = wide
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real_select = ridge_module.select_voxels

    def spy_select(Xs, Ys, n_voxels, **kw):
        keep = real_select(Xs, Ys, n_voxels, **kw)
        seen.append((np.array(Ys, copy=True), keep))
        return keep

    monkeypatch.setattr(ridge_module, "select_voxels", spy_select)
    params = {"alphas": ALPHAS, "cv": 4, "n_voxels": 30, "dtype": "float64"}
    model = RidgeMapping(**params).fit(X, Y)
    folds = list(KFold(4).split(X))
    assert len(seen) == len(folds) + 1
    np.testing.assert_array_equal(seen[0][0], Y)  # the final fit: all training rows
    for (train, _), (Ys, _) in zip(folds, seen[1:]):
        np.testing.assert_array_equal(Ys, Y[train])
    np.testing.assert_allclose(model.x_mean_, X[:, model.voxel_indices_].mean(axis=0))
    np.testing.assert_allclose(model.y_mean_, Y.mean(axis=0))

    # Garbage in fold 0's validation rows: fold 0's voxel selection is unchanged
    # (those rows are validation there), only its validation scores move.
    clean = [keep for _, keep in seen]
    seen.clear()
    X_bad = X.copy()
    X_bad[folds[0][1]] = 1e6
    poisoned = RidgeMapping(**params).fit(X_bad, Y)
    np.testing.assert_array_equal(seen[1][1], clean[1])
    assert not np.allclose(poisoned.cv_scores_, model.cv_scores_)


def test_refit_is_deterministic_and_independent_of_later_predictions(wide):
    X, Y, _ = wide
    a = RidgeMapping(alphas=ALPHAS, cv=4).fit(X, Y)
    a.predict(np.full((3, X.shape[1]), 1e6))
    b = RidgeMapping(alphas=ALPHAS, cv=4).fit(X, Y)
    for k, v in fitted_state(a).items():
        np.testing.assert_array_equal(v, fitted_state(b)[k], err_msg=k)


# ------------------------------------------------------------------ transductive
def test_transductive_rescale_is_off_by_default_and_warns(wide):
    X, Y, _ = wide
    model = RidgeMapping(alphas=ALPHAS, cv=4).fit(X, Y)
    X_test = X[:10] + 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default path must not warn
        default = model.predict(X_test)
    np.testing.assert_array_equal(default, model.predict(X_test, transductive_rescale=False))
    with pytest.warns(UserWarning, match="transductive"):
        rescaled = model.predict(X_test, transductive_rescale=True)
    np.testing.assert_allclose(rescaled.std(axis=0), model.y_scale_, rtol=1e-4)
    assert not np.allclose(rescaled, default)


def test_transductive_rescale_ruins_r2_on_noise():
    """FIELD.md §4: on no-information data, honest R² ≈ 0, the seed's rescale ≈ -1."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((150, 80))
    Y = rng.standard_normal((150, 6)) + 3.0
    model = RidgeMapping(cv=5).fit(X[:100], Y[:100])
    honest = r2_score(Y[100:], model.predict(X[100:]))
    with pytest.warns(UserWarning):
        seed_style = rescale_predictions_transductive(
            model.predict(X[100:]), model.y_mean_, model.y_scale_
        )
    assert honest > -0.1
    assert r2_score(Y[100:], seed_style) < -0.6


# ------------------------------------------------------ estimator contract, errors
def test_sklearn_contract(wide):
    X, Y, _ = wide
    model = RidgeMapping(alphas=[1.0, 10.0], cv=3, solver="eigh_kernel")
    assert model.get_params()["solver"] == "eigh_kernel"
    assert not hasattr(model, "coef_")
    assert model.fit(X, Y) is model
    twin = clone(model)
    assert not hasattr(twin, "coef_") and twin.get_params()["cv"] == 3
    assert model.predict(X).shape == Y.shape
    assert model.fit(X, Y[:, 0]).predict(X).shape == (len(X),)
    assert isinstance(model.score(X, Y[:, 0]), float)


def test_registry_holds_all_solvers():
    assert set(ALL) <= set(SOLVERS.names())
    assert RidgeMapping.ALL_SOLVERS is SOLVERS


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alphas": [-1.0]}, "positive"),
        ({"alphas": []}, "positive"),
        ({"cv": 1}, "at least 2"),
        ({"cv": "kfold"}, "loo"),
        ({"cv": "loo", "solver": "sklearn"}, "eigendecomposition"),
        ({"cv": "loo", "n_voxels": 3}, "n_voxels"),
        ({"n_voxels": 10_000}, "exceeds"),
        ({"solver": "eigh_kernal"}, "Did you mean"),
        ({"scoring": "mse"}, "scoring"),
        ({"dtype": "int32"}, "floating"),
        ({"cv_statistics": "all"}, "cv_statistics"),
        ({"cv_statistics": "train", "n_voxels": 3}, "inside each fold"),
    ],
)
def test_bad_parameters_raise_config_error(wide, kwargs, match):
    X, Y, _ = wide
    with pytest.raises(ConfigError, match=match):
        RidgeMapping(**kwargs).fit(X, Y)


def test_bad_data_raise_data_format_error(wide):
    X, Y, _ = wide
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        RidgeMapping().fit(X_nan, Y)
    with pytest.raises(DataFormatError, match="samples"):
        RidgeMapping().fit(X, Y[:-1])
    with pytest.raises(ConfigError, match="groups"):
        RidgeMapping(cv=5).fit(X, Y, groups=np.repeat([0, 1], len(X) // 2))
    with pytest.raises(ConfigError, match="groups"):
        RidgeMapping(cv="loo").fit(X, Y, groups=np.arange(len(X)))
    model = RidgeMapping(alphas=[1.0], cv=2).fit(X, Y)
    with pytest.raises(DataFormatError, match="features"):
        model.predict(X[:, :-1])


@pytest.mark.parametrize("pooling", POOLINGS)
def test_correlation_scoring_matches_brute_force(pooling):
    X, Y, _ = planted(40, 50, 3, noise=2.0, seed=9)
    model = RidgeMapping(
        alphas=ALPHAS, cv=4, scoring="correlation", score_pooling=pooling, dtype="float64"
    ).fit(X, Y)
    expected, _ = brute_force_cv(
        X, Y, ALPHAS, list(KFold(4).split(X)), pooling=pooling, scoring="correlation"
    )
    np.testing.assert_allclose(model.cv_scores_, expected, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------- numerical details
def test_kernel_drops_only_the_intercept_direction():
    from fmri2image.mapping._solvers import EighKernelSolver

    X, _, _ = planted(30, 80, 2, seed=10)
    centered = EighKernelSolver().decompose(X - X.mean(axis=0))
    assert centered.s.size == 29 and centered.complete
    np.testing.assert_allclose(centered.U.sum(axis=0), 0, atol=1e-8)  # all orthogonal to 1
    raw = EighKernelSolver().decompose(X + 5.0)  # uncentered: the constant direction is large
    assert raw.s.size == 30 and not raw.complete


def test_float32_loo_is_stable_near_interpolation():
    """With alpha far below the spectrum, 1 - H_ii ~ alpha / s: no cancellation in float32."""
    X, Y, _ = planted(40, 400, 3, noise=0.1, seed=11)
    alphas = np.logspace(-2, 4, 7)
    f32 = RidgeMapping(alphas, cv="loo", dtype="float32").fit(X, Y)
    f64 = RidgeMapping(alphas, cv="loo", dtype="float64").fit(X, Y)
    np.testing.assert_allclose(f32.cv_scores_, f64.cv_scores_, atol=1e-4)  # generic formula: ~1e-2
    ref = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True)).fit(X, Y)
    np.testing.assert_array_equal(f64.alpha_, ref[-1].alpha_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_passes_sklearn_estimator_checks():
    from sklearn.utils.estimator_checks import check_estimator

    # float64: scikit-learn's checks require float64 predictions (our default is float32).
    check_estimator(RidgeMapping(alphas=[0.1, 1.0, 10.0], cv=3, dtype="float64"))


def test_default_alpha_grid():
    from fmri2image.mapping import DEFAULT_ALPHAS

    np.testing.assert_allclose(DEFAULT_ALPHAS, np.logspace(-2, 10, 13))
    assert "alphas" not in repr(RidgeMapping())  # immutable default, clean repr


def test_import_is_light():
    import subprocess
    import sys

    code = (
        "import sys, fmri2image.mapping; "
        "print(sorted(m for m in ('sklearn', 'torch', 'faiss', 'himalaya', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
