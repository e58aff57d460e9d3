"""Prediction metrics against brute-force numpy loops and scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import r2_score

from fmri2image.errors import DataFormatError
from fmri2image.evaluation import (
    list_metrics,
    nway_identification,
    prediction_metrics,
    two_way_identification,
)


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    # Non-negative "CNN-like" features with a shared mean profile, like pooled activations.
    profile = rng.uniform(0.5, 2.0, 32)
    Y_true = np.abs(profile + 0.6 * rng.standard_normal((12, 32)))
    Y_pred = Y_true + 0.8 * rng.standard_normal(Y_true.shape)
    Y_train_mean = profile + 0.05 * rng.standard_normal(32)
    return Y_true, Y_pred, Y_train_mean


def brute_corr(a, b):
    return pearsonr(a, b)[0]


def test_identification_equals_brute_force(embeddings):
    Y_true, Y_pred, _ = embeddings
    n = len(Y_true)
    pair, hit, rank = [], [], []
    for i in range(n):
        own = brute_corr(Y_pred[i], Y_true[i])
        others = [brute_corr(Y_pred[i], Y_true[j]) for j in range(n) if j != i]
        pair.append(np.mean([o < own for o in others]))
        hit.append(all(o < own for o in others))
        rank.append(1 + sum(o >= own for o in others))
    np.testing.assert_allclose(two_way_identification(Y_true, Y_pred), pair)
    got_hit, got_rank = nway_identification(Y_true, Y_pred)
    np.testing.assert_array_equal(got_hit, hit)
    np.testing.assert_array_equal(got_rank, rank)


def test_summary_matches_references(embeddings):
    Y_true, Y_pred, m = embeddings
    res = prediction_metrics(Y_true, Y_pred, m)
    s = res.summary
    assert s["r2_uniform"].value == pytest.approx(r2_score(Y_true, Y_pred))
    assert s["r2_variance_weighted"].value == pytest.approx(
        r2_score(Y_true, Y_pred, multioutput="variance_weighted")
    )
    np.testing.assert_allclose(
        res.per_dimension["r2"], r2_score(Y_true, Y_pred, multioutput="raw_values")
    )
    np.testing.assert_allclose(
        res.per_dimension["pearson_r"], [brute_corr(Y_true[:, j], Y_pred[:, j]) for j in range(32)]
    )
    assert s["rmse"].value == pytest.approx(np.sqrt(np.mean((Y_true - Y_pred) ** 2)))
    cos = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(Y_pred, Y_true)]
    np.testing.assert_allclose(res.per_image["cosine"], cos)
    assert s["cosine"].value == pytest.approx(np.mean(cos))
    base_cos = [m @ b / np.linalg.norm(m) / np.linalg.norm(b) for b in Y_true]
    assert s["cosine"].baseline == pytest.approx(np.mean(base_cos))
    assert s["r2_uniform"].baseline == pytest.approx(r2_score(Y_true, np.tile(m, (12, 1))))


def test_chance_levels_and_baselines(embeddings):
    Y_true, Y_pred, m = embeddings
    s = prediction_metrics(Y_true, Y_pred, m).summary
    assert s["pairwise_identification"].chance == 0.5
    assert s["nway_top1"].chance == pytest.approx(1 / 12)
    # A constant prediction ranks the truths identically for every image: exactly chance.
    assert s["pairwise_identification"].baseline == pytest.approx(0.5)
    assert s["nway_top1"].baseline == pytest.approx(1 / 12)
    # Non-negative features: the train-mean baseline cosine is high although it is uninformative.
    assert s["cosine"].baseline > 0.8
    assert s["r2_uniform"].baseline <= 0
    registered = list_metrics("embedding")
    assert set(s) == {info.name for info in registered}  # one summary entry per metric
    for info in registered:
        assert s[info.name].higher_is_better is info.higher_is_better
    assert s["rmse"].higher_is_better is False
    assert s["dimension_correlation"].baseline is None


def test_without_train_mean_no_baseline(embeddings):
    Y_true, Y_pred, _ = embeddings
    res = prediction_metrics(Y_true, Y_pred)
    assert all(r.baseline is None for r in res.summary.values())
    assert "baseline_cosine" not in res.per_image


def test_perfect_prediction(embeddings):
    Y_true, _, m = embeddings
    s = prediction_metrics(Y_true, Y_true.copy(), m).summary
    assert s["pairwise_identification"].value == 1.0
    assert s["nway_top1"].value == 1.0
    assert s["r2_uniform"].value == pytest.approx(1.0)
    assert s["rmse"].value == pytest.approx(0.0)


def test_save_writes_json_and_parquet(embeddings, tmp_path):
    Y_true, Y_pred, m = embeddings
    res = prediction_metrics(Y_true, Y_pred, m, image_ids=[f"n0000{i}" for i in range(12)])
    res.save(tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["n_images"] == 12
    entry = summary["metrics"]["pairwise_identification"]
    assert entry["chance"] == 0.5 and entry["higher_is_better"] is True
    assert entry["value"] == pytest.approx(res.summary["pairwise_identification"].value)
    table = pq.read_table(tmp_path / "out" / "per_image.parquet").to_pydict()
    assert table["image"][3] == "n00003"
    np.testing.assert_allclose(table["cosine"], res.per_image["cosine"])
    dims = pq.read_table(tmp_path / "out" / "per_dimension.parquet")
    assert dims.num_rows == 32
    assert "chance 0.500" in str(res)


def test_bad_inputs(embeddings):
    Y_true, Y_pred, m = embeddings
    with pytest.raises(DataFormatError, match="same shape"):
        prediction_metrics(Y_true, Y_pred[:-1])
    with pytest.raises(DataFormatError, match="length"):
        prediction_metrics(Y_true, Y_pred, m[:-1])
    bad = Y_pred.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        prediction_metrics(Y_true, bad)
