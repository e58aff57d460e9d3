"""decode --split imagery: imagery trials averaged per category, scored against its test image."""

from __future__ import annotations

import types

import numpy as np
import pytest

from fmri2image.errors import ConfigError
from fmri2image.pipeline.decoding import DecodingConfig, _evaluation_trials


def fake_splits(index):
    rng = np.random.default_rng(0)
    index = np.asarray(index)
    return types.SimpleNamespace(
        X_test=rng.normal(size=(4, 3)),
        test_ids=np.arange(4),
        test_n_repeats=np.array([5, 5, 5, 5]),
        X_imagery=np.arange(len(index) * 3, dtype=float).reshape(len(index), 3),
        imagery_test_index=index,
    )


def test_test_split_is_the_averaged_test_trials():
    s = fake_splits([0, 1])
    X, rows, reps = _evaluation_trials(s, DecodingConfig())
    assert X is s.X_test and list(rows) == [0, 1, 2, 3] and reps == (5,)


def test_imagery_trials_are_averaged_per_category():
    # trials of test rows 2, 0, 2, -1 (no single test image), 0
    s = fake_splits([2, 0, 2, -1, 0])
    X, rows, reps = _evaluation_trials(s, DecodingConfig(split="imagery"))
    assert list(rows) == [0, 2] and reps == (2,)
    np.testing.assert_allclose(X[0], s.X_imagery[[1, 4]].mean(0))
    np.testing.assert_allclose(X[1], s.X_imagery[[0, 2]].mean(0))


def test_imagery_needs_two_categories():
    with pytest.raises(ConfigError, match="--split imagery"):
        _evaluation_trials(fake_splits([1, 1, -1]), DecodingConfig(split="imagery"))
    with pytest.raises(ConfigError, match="--split must be one of test, imagery"):
        DecodingConfig(split="imagine").validate()


@pytest.mark.slow
def test_decode_imagery_on_the_demo(default_demo, tmp_path, capsys):
    from fmri2image import _io
    from fmri2image.cli.main import main

    out = tmp_path / "imagery"
    root = default_demo.root
    rc = main(["decode", "--god", str(root), "--subject", "1", "--roi", "ROI_HVC",
               "--model", "effnet-lite0", "--split", "imagery", "--out", str(out)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "imagined categories (imagery trials)" in printed
    summary = _io.load_json(out / "summary.json")
    assert summary["config"]["split"] == "imagery"
    stems = summary["test_images"]
    assert len(stems) == summary["n_test_images"] >= 2
    test_stems = {p.stem for p in (root / "test").iterdir()}
    assert set(stems) <= test_stems  # scored against the test image of each category
    row = summary["encoders"][0]
    assert row["pairwise_id"] > row["pairwise_id_chance"]  # the demo's imagery carries signal
