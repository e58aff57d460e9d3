"""Identification and distance scores against the reference code and hand-computed cases."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.spatial.distance import correlation as scipy_correlation

from fmri2image.errors import DataFormatError
from fmri2image.evaluation import (
    correlation_distance,
    correlation_matrix,
    nway_classifier_top1,
    two_way_identification,
)


def mindeye_two_way(gt, rec):
    """MindEye's ``two_way_identification`` (src/Reconstruction_Metrics.py), per image."""
    n = len(gt)
    r = np.corrcoef(gt.reshape(n, -1), rec.reshape(n, -1))[:n, n:]
    congruents = np.diag(r)
    success = r < congruents
    return success.sum(0) / (n - 1)


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    gt = rng.standard_normal((20, 3, 4, 5))  # trailing axes are flattened, as a conv layer's
    rec = gt + 4.0 * rng.standard_normal(gt.shape)
    return gt, rec


def test_two_way_equals_mindeye_reference(features):
    gt, rec = features
    np.testing.assert_allclose(two_way_identification(gt, rec), mindeye_two_way(gt, rec))
    assert 0.6 < two_way_identification(gt, rec).mean() < 1.0


def test_correlation_matrix_is_corrcoef_block(features):
    gt, rec = features
    n = len(gt)
    ref = np.corrcoef(gt.reshape(n, -1), rec.reshape(n, -1))[:n, n:]
    np.testing.assert_allclose(correlation_matrix(gt, rec), ref, atol=1e-12)


def test_perfect_and_unrelated():
    rng = np.random.default_rng(1)
    gt = rng.standard_normal((50, 64))
    np.testing.assert_array_equal(two_way_identification(gt, gt), np.ones(50))
    unrelated = rng.standard_normal((300, 64))
    score = two_way_identification(rng.standard_normal((300, 64)), unrelated).mean()
    assert score == pytest.approx(0.5, abs=0.03)


def test_two_way_hand_computed_case():
    # Rows are standard basis vectors: corr(e_i, e_j) = -1/2 for i != j.
    gt = np.eye(3)
    rec = np.array(
        [
            [1.0, 0.0, 0.0],  # = gt 0: beats both others -> 1
            [1.0, 0.0, 0.0],  # looks like gt 0: own r = -1/2, gt 0 r = 1, gt 2 ties -> 0
            [1.0, 0.0, 2.0],  # r with gt 2 = 0.866, gt 0 = 0, gt 1 = -0.866 -> 1
        ]
    )
    np.testing.assert_allclose(
        correlation_matrix(gt, rec)[:, 2], [0, -np.sqrt(3) / 2, np.sqrt(3) / 2], atol=1e-12
    )
    np.testing.assert_array_equal(two_way_identification(gt, rec), [1.0, 0.0, 1.0])


def test_correlation_distance_equals_scipy(features):
    gt, rec = features
    ref = [scipy_correlation(g.ravel(), r.ravel()) for g, r in zip(gt, rec)]
    np.testing.assert_allclose(correlation_distance(gt, rec), ref, atol=1e-12)
    np.testing.assert_allclose(correlation_distance(gt, gt), 0.0, atol=1e-12)


def test_large_layers_use_float32_with_the_same_result():
    # Above the float64 limit (AlexNet features.4 at scale) rows are standardized in float32.
    rng = np.random.default_rng(2)
    gt = rng.standard_normal((6, 9_000_000), dtype=np.float32)
    rec = (gt + rng.standard_normal(gt.shape, dtype=np.float32)).astype(np.float32)
    r = correlation_matrix(gt, rec)
    assert np.diag(r) == pytest.approx(1 / np.sqrt(2), abs=1e-3)
    assert np.abs(r - np.diag(np.diag(r))).max() < 0.01


def test_bad_shapes():
    with pytest.raises(DataFormatError, match="same shape"):
        two_way_identification(np.zeros((3, 4)), np.zeros((4, 4)))
    with pytest.raises(DataFormatError, match="at least 2"):
        two_way_identification(np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(DataFormatError, match="NaN"):
        correlation_distance(np.full((2, 2), np.nan), np.ones((2, 2)))


# ------------------------------------------------------------------ MinD-Vis n-way
def _probs(n_classes, order):
    """Probabilities increasing along ``order`` (the last class in order is the top one)."""
    p = np.empty(n_classes)
    p[np.asarray(order)] = np.arange(1, n_classes + 1)
    return p / p.sum()


def test_nway_hand_computed():
    n_classes = 10
    p_true = np.stack([_probs(n_classes, np.roll(np.arange(10), -(i + 1))) for i in range(3)])
    true_class = p_true.argmax(1)
    assert list(true_class) == [0, 1, 2]  # the ground truth's argmax defines the class
    p_pred = np.empty_like(p_true)
    # image 0: true class is the reconstruction's top class -> every trial hits
    p_pred[0] = _probs(n_classes, [1, 2, 3, 4, 5, 6, 7, 8, 9, 0])
    # image 1: true class is the reconstruction's least likely class -> no trial hits
    p_pred[1] = _probs(n_classes, [1, 0, 2, 3, 4, 5, 6, 7, 8, 9])
    # image 2: exactly one class (9) beats the true class 2
    p_pred[2] = _probs(n_classes, [0, 1, 3, 4, 5, 6, 7, 8, 2, 9])
    acc = nway_classifier_top1(p_true, p_pred, n_way=3, n_trials=20_000, seed=0)
    assert acc[0] == 1.0 and acc[1] == 0.0
    # A trial hits iff class 9 is not among the 2 drawn from the 9 other classes.
    expected = comb(8, 2) / comb(9, 2)
    assert acc[2] == pytest.approx(expected, abs=0.01)
    # With every class a candidate the trial is deterministic: hit iff the true class is top.
    full = nway_classifier_top1(p_true, p_pred, n_way=n_classes, n_trials=5)
    np.testing.assert_array_equal(full, [1.0, 0.0, 0.0])


def test_nway_seeded_and_per_image_streams():
    rng = np.random.default_rng(3)
    p_true = rng.dirichlet(np.ones(100), size=6)
    p_pred = rng.dirichlet(np.ones(100), size=6)
    kw = {"n_way": 5, "n_trials": 300}
    a = nway_classifier_top1(p_true, p_pred, seed=7, **kw)
    assert 0 < a.mean() < 1
    np.testing.assert_array_equal(a, nway_classifier_top1(p_true, p_pred, seed=7, **kw))
    # An image's score does not depend on which other images are evaluated with it.
    np.testing.assert_array_equal(
        a[2:4], nway_classifier_top1(p_true[2:4], p_pred[2:4], seed=7, **kw)
    )
    assert not np.array_equal(a, nway_classifier_top1(p_true, p_pred, seed=8, **kw))
    # Unrelated probabilities: about chance, 1/50.
    big_t = rng.dirichlet(np.ones(1000), size=200)
    big_p = rng.dirichlet(np.ones(1000), size=200)
    assert nway_classifier_top1(big_t, big_p, n_trials=200).mean() == pytest.approx(0.02, abs=0.01)


def test_nway_bad_arguments():
    p = np.full((2, 10), 0.1)
    with pytest.raises(DataFormatError, match="n_way"):
        nway_classifier_top1(p, p, n_way=11)
    with pytest.raises(DataFormatError, match="n_trials"):
        nway_classifier_top1(p, p, n_way=5, n_trials=0)
