"""fmri2image.data.layout writes GOD-layout folders that our readers and bdpy load.

A planted dataset (voxels = features @ W + noise over arbitrary images) written
with the data-layer writer, read back through the real loaders.
"""

from __future__ import annotations

import numpy as np
import pytest

from fmri2image.data import (
    god_sample_indices,
    load_god_subject,
    load_stimulus_set,
    roi_masks_with_unions,
    write_god_subject,
    write_id_file,
    write_stimulus_set,
)
from fmri2image.errors import ConfigError

TRAIN = [f"n0{1440764 + 7 * c:07d}_{n}" for c in range(4) for n in (12, 1902, 19020)]
TEST = ["n09999999_5", "n09999998_77"]


def _planted(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    images = {name: rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for name in TRAIN + TEST}
    train = write_stimulus_set(tmp_path, "training", {n: images[n] for n in TRAIN})
    test = write_stimulus_set(tmp_path, "test", {n: images[n] for n in TEST})
    # Design: every training image once (2 runs), test images 3 times, imagery twice.
    from fmri2image.data import image_names_to_stimulus_ids

    ids_train = image_names_to_stimulus_ids(list(train.names))
    ids_test = image_names_to_stimulus_ids(list(test.names))
    sid = np.concatenate([ids_train[::-1], np.tile(ids_test, 3), np.floor(ids_test).repeat(2)])
    dt = np.repeat([1, 2, 3], [len(ids_train), 3 * len(ids_test), 2 * len(ids_test)])
    run = np.concatenate([np.repeat([1, 2], 6), np.repeat([3, 4, 5], 2), [6, 6, 7, 7]])
    feats = rng.standard_normal((len(sid), 3))
    W = rng.standard_normal((3, 10))
    voxels = feats @ W + 0.1 * rng.standard_normal((len(sid), 10))
    rois = {"V1": np.arange(10) < 3, "V2": (np.arange(10) >= 3) & (np.arange(10) < 5)}
    rois |= {"V3": np.arange(10) == 5, "LOC": np.arange(10) >= 6}
    rois |= {"FFA": np.arange(10) == 7, "PPA": np.arange(10) == 9}
    path = write_god_subject(
        tmp_path / "Subject4.h5", voxels, data_type=dt, run=run, stimulus_id=sid, rois=rois
    )
    return dict(
        path=path, voxels=voxels, dt=dt, run=run, sid=sid, train=train, test=test, feats=feats, W=W
    )


def test_planted_dataset_reads_back_with_our_loaders_and_bdpy(tmp_path):
    d = _planted(tmp_path)
    path, voxels, dt, run, sid, train, test = (
        d[k] for k in ("path", "voxels", "dt", "run", "sid", "train", "test")
    )
    subj = load_god_subject(tmp_path, 4, roi="ROI_VC")
    np.testing.assert_allclose(subj.voxels, voxels, rtol=1e-6)
    np.testing.assert_array_equal(subj.data_types, dt)
    np.testing.assert_array_equal(subj.runs, run)
    assert subj.roi_sizes["ROI_LVC"] == 6 and subj.roi_sizes["ROI_HVC"] == 4
    assert subj.roi_sizes["ROI_VC"] == 10
    for split, files in (("training", train), ("test", test)):
        stim = load_stimulus_set(tmp_path, split)
        assert stim.image_names == files.names and not stim.missing
    # Id files: header-less, sorted by id, six decimals (19020 stays 19020).
    rows = (tmp_path / "imageID_training.csv").read_text().splitlines()
    assert rows[0] == "1440764.000012,n01440764_12.JPEG"
    assert rows[2] == "1440764.019020,n01440764_19020.JPEG"

    bdpy = pytest.importorskip("bdpy")
    bd = bdpy.BData(str(path))
    np.testing.assert_allclose(bd.select("ROI_VC"), voxels)
    assert bd.select("ROI_LVC").shape[1] == bd.select("ROI_V1 + ROI_V2 + ROI_V3").shape[1] == 6
    image_index = bd.select("image_index").ravel()
    category_index = bd.select("category_index").ravel()
    # image_index: 1-based row of the image in its split's id file; NaN for imagery.
    for t, files in ((1, train), (2, test)):
        names = [files.names[int(i) - 1] for i in image_index[dt == t]]
        from fmri2image.data import stimulus_ids_to_image_names

        assert names == list(stimulus_ids_to_image_names(sid[dt == t]))
    assert np.isnan(image_index[dt == 3]).all()
    # category_index: rank of the category in the split (imagery: the test list).
    assert sorted(set(category_index[dt == 1])) == [1, 2, 3, 4]
    np.testing.assert_array_equal(category_index[dt == 3], [1, 1, 2, 2])
    blocks = bd.select("Block").ravel()
    assert list(blocks[run == 1]) == [1, 2, 3, 4, 5, 6]
    assert {"voxel_x", "voxel_y", "voxel_z"} <= set(bd.metadata.key)
    xyz = np.stack([bd.get_metadata(f"voxel_{a}", where="VoxelData") for a in "xyz"], 1)
    assert len(np.unique(xyz, axis=0)) == 10


def test_planted_signal_is_recoverable(tmp_path):
    """What is planted comes back out: least squares on the loaded voxels finds W."""
    d = _planted(tmp_path, seed=3)
    feats, W = d["feats"], d["W"]
    subj = load_god_subject(tmp_path, 4, roi="ROI_VC")
    W_hat = np.linalg.lstsq(feats, subj.voxels.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(W_hat, W, atol=0.1)


def test_sample_indices_follow_god_conventions():
    sid = np.array([2.000002, 1.000001, 2.000002, 3.000003, 3.0, 3.0])
    dt = np.array([1, 1, 2, 2, 3, 3])
    image_index, category_index = god_sample_indices(sid, dt)
    np.testing.assert_array_equal(image_index[:4], [2, 1, 1, 2])
    assert np.isnan(image_index[4:]).all()
    np.testing.assert_array_equal(category_index, [2, 1, 1, 2, 2, 2])


def test_bad_inputs_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="ImageNet images"):
        write_id_file(tmp_path / "ids.csv", ["cat_1"])
    with pytest.raises(ConfigError, match="same name"):
        write_id_file(tmp_path / "ids.csv", ["n01440764_1", "n01440764_1.JPEG"])
    with pytest.raises(ConfigError, match="split"):
        write_stimulus_set(tmp_path, "val", {})
    with pytest.raises(ConfigError, match="boolean mask"):
        roi_masks_with_unions({"V1": np.ones(3)}, 3)
    ok = dict(data_type=[1, 1], run=[1, 1], stimulus_id=[1.000001, 1.000002])
    with pytest.raises(ConfigError, match="one per row"):
        write_god_subject(tmp_path / "s.h5", np.ones((3, 2)), rois={"V1": [True, True]}, **ok)
    with pytest.raises(ConfigError, match="DataType"):
        write_god_subject(
            tmp_path / "s.h5",
            np.ones((2, 2)),
            rois={"V1": np.array([True, True])},
            **(ok | {"data_type": [1, 4]}),
        )
