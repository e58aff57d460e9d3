"""--split imagery: imagery trials averaged per imagined stimulus, scored against its test
image (the generic split of the dataset seam, and GOD's mapping onto it)."""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.data.dataset import Recording, split_recording
from fmri2image.errors import ConfigError


def recording(imagery_rows):
    """2 training samples, test images 0..3 shown twice, then imagery trials of the
    given test rows (-1: a category without a single test image)."""
    rng = np.random.default_rng(0)
    n_img = len(imagery_rows)
    split = np.array(["train"] * 2 + ["test"] * 8 + ["imagery"] * n_img, dtype=object)
    stimulus = np.array([0, 1, 0, 1, 2, 3, 0, 1, 2, 3, *imagery_rows])
    voxels = rng.normal(size=(len(split), 3)).astype(np.float32)
    voxels[10:] = np.arange(n_img * 3, dtype=np.float32).reshape(n_img, 3)
    return Recording(
        subject=1, roi="ROI_X", voxels=voxels, split=split, stimulus=stimulus,
        runs=np.zeros(len(split), dtype=np.int64), groups=np.zeros(len(split), dtype=np.int64),
    )  # fmt: skip


def test_test_split_is_the_averaged_test_trials():
    rec = recording([0, 1])
    s = split_recording(rec, normalization="none", split="test")
    assert list(s.eval_rows) == [0, 1, 2, 3] and list(s.n_repeats) == [2, 2, 2, 2]
    np.testing.assert_allclose(s.X_eval[0], rec.voxels[[2, 6]].mean(0), rtol=1e-6)
    assert s.X_train.shape == (2, 3) and list(s.train_rows) == [0, 1]


def test_imagery_trials_are_averaged_per_category():
    # trials of test rows 2, 0, 2, -1 (no single test image), 0
    rec = recording([2, 0, 2, -1, 0])
    s = split_recording(rec, normalization="none", split="imagery")
    assert list(s.eval_rows) == [0, 2] and list(s.n_repeats) == [2, 2]
    imagery = rec.voxels[10:]
    np.testing.assert_allclose(s.X_eval[0], imagery[[1, 4]].mean(0))
    np.testing.assert_allclose(s.X_eval[1], imagery[[0, 2]].mean(0))


def test_imagery_needs_two_categories():
    with pytest.raises(ConfigError, match="--split imagery"):
        split_recording(recording([1, 1, -1]), normalization="none", split="imagery")
    from fmri2image.pipeline.config import load_config

    with pytest.raises(ConfigError, match=r"--split \(data.split\) must be one of test, imagery"):
        load_config(None, ["data.split=imagine"]).validate()


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
    assert "imagined stimuli (imagery trials)" in printed
    summary = _io.load_json(out / "summary.json")
    (block,) = summary["blocks"]
    assert block["info"]["split"] == "imagery"
    stems = block["test_images"]
    assert len(stems) == block["info"]["n_eval"] >= 2
    test_stems = {p.stem for p in (root / "test").iterdir()}
    assert set(stems) <= test_stems  # scored against the test image of each category
    row = summary["encoders"][0]
    assert row["pairwise_id"] > row["pairwise_id_chance"]  # the demo's imagery carries signal
