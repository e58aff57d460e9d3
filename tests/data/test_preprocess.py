"""Normalization and splits: references, grouping, and no test-data leakage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from fmri2image.data.god import load_god_subject
from fmri2image.data.ids import stimulus_id_keys
from fmri2image.data.preprocess import make_splits, zscore_by_run
from fmri2image.errors import ConfigError, DataFormatError


@pytest.fixture
def subject(fake_god):
    return load_god_subject(fake_god.root, 3)


def test_zscore_by_run_matches_sklearn():
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(30, 6)).astype(np.float32)
    X[:, 2] = 7.0  # constant voxel
    runs = np.repeat([5, 1, 9], 10)[rng.permutation(30)]
    Z = zscore_by_run(X, runs)
    assert Z.dtype == np.float32
    for r in (1, 5, 9):
        ref = StandardScaler().fit_transform(X[runs == r].astype(np.float64))
        np.testing.assert_allclose(Z[runs == r], ref, rtol=1e-5, atol=1e-5)
    assert (Z[:, 2] == 0).all()
    assert zscore_by_run(np.arange(8).reshape(4, 2), [0, 0, 1, 1]).dtype == np.float64
    with pytest.raises(ConfigError):
        zscore_by_run(X, runs[:-1])


def test_run_normalization_uses_run_groups(subject):
    splits = make_splits(subject, normalization="run")
    Z = zscore_by_run(subject.voxels, subject.run_groups)
    np.testing.assert_array_equal(splits.X_train, Z[subject.data_types == 1])
    # Within each training run every voxel has mean 0 and std 1.
    for r in np.unique(splits.train_runs):
        block = splits.X_train[splits.train_runs == r].astype(np.float64)
        np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(0), 1, atol=1e-4)
    assert splits.normalization.mode == "run" and splits.normalization.mean is None


def test_train_normalization_statistics(subject):
    splits = make_splits(subject, normalization="train", n_val_categories=2)
    fit = subject.voxels[(subject.data_types == 1) & ~np.isin(subject.stimulus_ids, splits.val_ids)]
    np.testing.assert_allclose(splits.normalization.mean, fit.astype(np.float64).mean(0))
    np.testing.assert_allclose(splits.normalization.std, fit.astype(np.float64).std(0))
    np.testing.assert_allclose(splits.X_train.mean(0), 0, atol=1e-5)
    raw_test = subject.voxels[subject.data_types == 2]
    np.testing.assert_allclose(
        splits.X_test_trials,
        (raw_test - splits.normalization.mean) / splits.normalization.std,
        rtol=1e-5,
        atol=1e-5,
    )


@pytest.mark.parametrize("mode", ["train", "run", "none"])
def test_test_data_cannot_leak(subject, mode):
    """Poisoned test/imagery samples leave train/val outputs and statistics unchanged."""
    clean = make_splits(subject, normalization=mode, n_val_categories=2, seed=3)
    poisoned_vox = subject.voxels.copy()
    poisoned_vox[subject.data_types >= 2] = 1e6 * np.random.default_rng(1).normal(
        size=poisoned_vox[subject.data_types >= 2].shape
    )
    poisoned = dataclasses.replace(subject, voxels=poisoned_vox)
    dirty = make_splits(poisoned, normalization=mode, n_val_categories=2, seed=3)
    for name in ("X_train", "X_val", "train_ids", "val_ids"):
        np.testing.assert_array_equal(getattr(dirty, name), getattr(clean, name))
    if mode == "train":
        np.testing.assert_array_equal(dirty.normalization.mean, clean.normalization.mean)
        np.testing.assert_array_equal(dirty.normalization.std, clean.normalization.std)
    assert not np.allclose(dirty.X_test, clean.X_test)


def test_validation_is_grouped_by_category(subject):
    splits = make_splits(subject, n_val_categories=2, seed=0)
    train_cats = set(stimulus_id_keys(splits.train_ids) // 1_000_000)
    val_cats = set(stimulus_id_keys(splits.val_ids) // 1_000_000)
    assert len(val_cats) == 2 and len(train_cats) == 4 and not train_cats & val_cats
    assert len(splits.train_ids) + len(splits.val_ids) == 12
    assert set(splits.val_wnids) == {f"n{c:08d}" for c in val_cats}
    again = make_splits(subject, n_val_categories=2, seed=0)
    np.testing.assert_array_equal(again.val_ids, splits.val_ids)
    draws = {tuple(make_splits(subject, n_val_categories=2, seed=s).val_ids) for s in range(6)}
    assert len(draws) > 1  # the seed matters
    by_fraction = make_splits(subject, val_fraction=0.5)
    assert len(set(stimulus_id_keys(by_fraction.val_ids) // 1_000_000)) == 3
    assert make_splits(subject).X_val.shape == (0, subject.n_voxels)


def test_test_images_are_averaged(subject):
    splits = make_splits(subject, normalization="none")
    keys = stimulus_id_keys(subject.stimulus_ids)
    test = subject.data_types == 2
    assert np.all(np.diff(stimulus_id_keys(splits.test_ids)) > 0)  # deterministic order
    assert splits.test_n_repeats.tolist() == [4, 4, 4]
    for i, k in enumerate(stimulus_id_keys(splits.test_ids)):
        expected = subject.voxels[test & (keys == k)].astype(np.float64).mean(0)
        np.testing.assert_allclose(splits.X_test[i], expected, rtol=1e-6)
    np.testing.assert_array_equal(
        stimulus_id_keys(splits.test_ids[splits.test_trial_index]), keys[test]
    )
    assert splits.test_wnids.tolist() == ["n01443537", "n02139199", "n03716966"]


def test_imagery_maps_to_test_category(subject):
    splits = make_splits(subject)
    assert splits.X_imagery.shape == (6, subject.n_voxels)
    assert (splits.imagery_test_index >= 0).all()
    np.testing.assert_array_equal(
        stimulus_id_keys(splits.test_ids[splits.imagery_test_index]) // 1_000_000,
        splits.imagery_categories,
    )
    assert splits.imagery_wnids.tolist() == [f"n{c:08d}" for c in splits.imagery_categories]


def test_splits_are_read_only_and_typed(subject):
    splits = make_splits(subject)
    assert splits.X_train.dtype == splits.X_test.dtype == np.float32
    with pytest.raises(ValueError, match="read-only"):
        splits.X_train[0, 0] = 0.0
    assert "n_test_images=3" in repr(splits)


def test_make_splits_errors(subject):
    with pytest.raises(ConfigError, match="normalization"):
        make_splits(subject, normalization="global")
    with pytest.raises(ConfigError, match="not both"):
        make_splits(subject, n_val_categories=1, val_fraction=0.1)
    with pytest.raises(ConfigError, match="between 0 and 5"):
        make_splits(subject, n_val_categories=6)
    only_train = subject.data_types == 1
    sub = dataclasses.replace(
        subject,
        voxels=subject.voxels[only_train],
        stimulus_ids=subject.stimulus_ids[only_train],
        wnids=subject.wnids[only_train],
        runs=subject.runs[only_train],
        data_types=subject.data_types[only_train],
        sample_source=subject.sample_source[only_train],
    )
    with pytest.raises(DataFormatError, match="no test"):
        make_splits(sub)
