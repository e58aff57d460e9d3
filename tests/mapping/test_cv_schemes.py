"""Cross-validation schemes: pooled scoring details and the default's acceptance check.

The acceptance data come from the same generator as ``bench/bench_cv.py``
(:func:`fmri2image.mapping._simulate.simulate_god_like`), at a size that fits in
a few seconds: 40 training categories × 8 images, 20 test images.
"""

from __future__ import annotations

import numpy as np
import pytest
from _mapping_data import planted
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fmri2image.errors import ConfigError
from fmri2image.evaluation import two_way_identification
from fmri2image.mapping import DEFAULT_ALPHAS, RidgeMapping, fit_warnings
from fmri2image.mapping._cv import make_folds
from fmri2image.mapping._simulate import simulate_god_like

ALPHAS = np.logspace(-2, 6, 9)
SMALL_GOD = dict(n_train_categories=40, images_per_category=8, n_test_categories=20)
SMALL_GOD.update(n_dims=256, n_voxels=1000, snr=0.02)


# ------------------------------------------------------------- pooled scoring
def test_pooled_scores_are_in_original_units():
    """Each fold standardizes Y with its own statistics; pooling must undo that."""
    X, Y, _ = planted(48, 60, 5, noise=2.0, seed=12)
    Y = Y * np.array([1.0, 10.0, 0.1, 100.0, 3.0])  # unequal target scales
    kw = dict(alphas=ALPHAS, cv=4, dtype="float64")
    a = RidgeMapping(standardize_Y=True, **kw).fit(X, Y)
    b = RidgeMapping(standardize_Y=False, **kw).fit(X, Y)
    np.testing.assert_allclose(a.cv_scores_, b.cv_scores_, rtol=1e-9, atol=1e-12)
    # Scoring fold-standardized predictions against globally standardized truth
    # (the mistake pooling must avoid) would give other numbers.
    Yz = (Y - Y.mean(0)) / Y.std(0)
    wrong = np.empty_like(a.cv_scores_)
    oof = np.empty((len(ALPHAS), *Y.shape))
    for train, val in make_folds(len(X), 4):
        mu, sd = Y[train].mean(0), Y[train].std(0)
        for k, alpha in enumerate(ALPHAS):
            ridge = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
            oof[k, val] = ridge.fit(X[train], (Y[train] - mu) / sd).predict(X[val])
    for k in range(len(ALPHAS)):
        wrong[k] = r2_score(Yz, oof[k], multioutput="raw_values")
    assert not np.allclose(a.cv_scores_, wrong, atol=1e-3)


def test_pooled_scores_with_overlapping_splitter_equal_concatenated_predictions():
    """A splitter that validates some samples several times and others never."""
    X, Y, _ = planted(40, 50, 3, noise=2.0, seed=13)
    cv = ShuffleSplit(n_splits=3, test_size=0.3, random_state=0)
    folds = list(cv.split(X))
    model = RidgeMapping(alphas=ALPHAS, cv=cv, dtype="float64").fit(X, Y)
    for k, alpha in enumerate(ALPHAS):
        truth, preds = [], []
        for train, val in folds:
            ref = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(X[train], Y[train])
            truth.append(Y[val])
            preds.append(ref.predict(X[val]))
        expected = r2_score(np.vstack(truth), np.vstack(preds), multioutput="raw_values")
        np.testing.assert_allclose(model.cv_scores_[k], expected, rtol=1e-8, atol=1e-10)


def test_pooled_scores_of_constant_target():
    X, Y, _ = planted(40, 50, 2, seed=14)
    Y[:, 1] = 3.0
    for scoring, expected in (("r2", 1.0), ("correlation", 0.0)):
        model = RidgeMapping(alphas=ALPHAS, cv=4, scoring=scoring, dtype="float64").fit(X, Y)
        np.testing.assert_array_equal(model.cv_scores_[:, 1], expected)  # as score_columns
        assert np.all(np.isfinite(model.cv_scores_))
        np.testing.assert_allclose(model.predict(X)[:, 1], 3.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"score_pooling": "mean"}, "score_pooling='mean' is not supported"),
        ({"cv": "loo", "score_pooling": "fold-mean"}, "always pooled"),
    ],
)
def test_bad_pooling_raises_config_error(kwargs, match):
    X, Y, _ = planted(30, 40, 2, seed=15)
    with pytest.raises(ConfigError, match=match):
        RidgeMapping(**kwargs).fit(X, Y)


def test_loo_is_the_pooled_limit_of_kfold():
    """Pooled K-fold with K = n folds (standardizing inside folds) is close to exact LOO."""
    X, Y, _ = planted(30, 60, 3, noise=1.0, seed=16)
    kfold = RidgeMapping(alphas=ALPHAS, cv=30, standardize_X=False, dtype="float64").fit(X, Y)
    loo = RidgeMapping(alphas=ALPHAS, cv="loo", standardize_X=False, dtype="float64").fit(X, Y)
    # Without X scaling the only difference is the training-fold target mean: none.
    np.testing.assert_allclose(kfold.cv_scores_, loo.cv_scores_, rtol=1e-8, atol=1e-10)


# ------------------------------------------------- acceptance: default vs RidgeCV
def _identification(model, X_train, Y_train, X_test, Y_test, groups=None) -> float:
    if isinstance(model, RidgeMapping):
        model.fit(X_train, Y_train, groups=groups)
    else:
        model.fit(X_train, Y_train)
    return float(two_way_identification(Y_test, model.predict(X_test)).mean())


def _ridgecv_reference():
    return make_pipeline(
        StandardScaler(), RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS), alpha_per_target=True)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_default_scheme_matches_ridgecv_on_unseen_categories(seed):
    d = simulate_god_like(seed=seed, **SMALL_GOD)
    default = RidgeMapping()  # the recommended use passes no groups (docs/mapping.md)
    ours = _identification(default, d.X_train, d.Y_train, d.X_test, d.Y_test)
    ref = _identification(_ridgecv_reference(), d.X_train, d.Y_train, d.X_test, d.Y_test)
    assert ours > 0.8  # the planted signal is there (chance 0.5)
    assert ours >= ref - 0.05
    assert default.diagnostics_.share_high <= 0.1
    assert set(d.test_groups).isdisjoint(d.groups)


def test_ungrouped_scheme_matches_ridgecv_when_test_categories_were_seen():
    d = simulate_god_like(seed=2, test_from_training=True, **SMALL_GOD)
    assert set(d.test_groups) <= set(d.groups)
    ours = _identification(RidgeMapping(), d.X_train, d.Y_train, d.X_test, d.Y_test)
    ref = _identification(_ridgecv_reference(), d.X_train, d.Y_train, d.X_test, d.Y_test)
    assert ours > 0.8
    assert ours >= ref - 0.05


def test_default_shrinks_to_the_mean_without_signal():
    """No X-Y link (rows permuted), n_samples > n_voxels: R² stays at the baseline."""
    kw = {**SMALL_GOD, "n_voxels": 100}
    d = simulate_god_like(seed=3, **kw)
    X = np.random.default_rng(0).permutation(d.X_train)
    model = RidgeMapping().fit(X, d.Y_train)
    pred = model.predict(d.X_test)
    base = np.broadcast_to(d.Y_train.mean(axis=0), d.Y_test.shape)
    r2 = r2_score(d.Y_test, pred, multioutput="variance_weighted")
    r2_base = r2_score(d.Y_test, base, multioutput="variance_weighted")
    assert r2 >= r2_base - 0.02
    # Many targets at the top of the grid, and fit_warnings says so.
    assert any("largest alpha" in m for m in fit_warnings(model))


def test_generator_design():
    d = simulate_god_like(seed=4, **SMALL_GOD)
    n_train = 40 * 8
    assert d.X_train.shape == (n_train, 1000) and d.Y_train.shape == (n_train, 256)
    assert d.X_test.shape == (20, 1000) and d.Y_test.shape == (20, 256)
    assert d.X_train.dtype == np.float32 and np.all(d.Y_train >= 0)  # CNN-like features
    # Run r shows image r of every category once, in temporal order.
    assert np.array_equal(d.runs, np.repeat(np.arange(8), 40))
    for r in range(8):
        assert sorted(d.groups[d.runs == r]) == list(range(40))
    # Deterministic given the seed.
    again = simulate_god_like(seed=4, **SMALL_GOD)
    np.testing.assert_array_equal(again.X_train, d.X_train)
    with pytest.raises(ConfigError, match="n_test_categories"):
        simulate_god_like(n_train_categories=5, n_test_categories=6, test_from_training=True)
