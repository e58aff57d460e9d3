"""decode's stage cache is reused only when verified: a changed artifact is recomputed,
never used."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _planted import write_planted_god

from fmri2image import _io
from fmri2image.cli.main import main


def decode(god, out):
    return main(["-q", "decode", "--god", str(god), "--subject", "1", "--model", "effnet-lite0",
                 "--database", "prototypes", "--out", str(out)])  # fmt: skip


def prediction(out):
    return np.load(
        out / "maps" / "s1-ROI_VC" / "effnet-lite0" / "ridge" / "predicted_test_embeddings.npy"
    )


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    root = tmp_path_factory.mktemp("god")
    write_planted_god(root, n_train_categories=8, n_test_categories=4, n_voxels=40)
    return root


def test_changed_stimulus_cache_is_recomputed_not_reused(god, tmp_path, caplog):
    out = tmp_path / "results"
    assert decode(god, out) == 0
    first = prediction(out)
    summary = _io.load_json(out / "summary.json")
    # Change the values of a cached shard, keeping its size (the case that was reused).
    (shard,) = sorted(
        (out / "cache").glob("features_effnet-lite0/*/train/effnet-lite0/shard-*.npy")
    )
    arr = np.load(shard)
    np.save(shard, arr[::-1].copy())
    with caplog.at_level("WARNING"):
        assert decode(god, out) == 0
    assert "recomputing stage features/effnet-lite0" in caplog.text
    assert f"{shard.name} changed after it was written" in caplog.text
    np.testing.assert_array_equal(prediction(out), first)  # recomputed: the same result
    again = _io.load_json(out / "summary.json")
    for key in ("pairwise_id", "nway_top1", "r2", "cosine"):
        assert again["encoders"][0][key] == summary["encoders"][0][key], key


def test_moved_dataset_rebuilds_the_cache(god, tmp_path):
    out = tmp_path / "results"
    assert decode(god, out) == 0
    first = prediction(out)
    moved = tmp_path / "god-moved"
    shutil.copytree(god, moved)
    assert decode(moved, out) == 0  # another image root: rebuilt, not refused, not mixed
    np.testing.assert_allclose(prediction(out), first, rtol=1e-5, atol=1e-6)
