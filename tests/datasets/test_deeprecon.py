"""Deeprecon behind the dataset seam: both releases written with bdpy's own writer,
read through ``DeepreconDataset`` and through ``fmri2image decode``."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from fmri2image.data import get_dataset, split_recording
from fmri2image.data.deeprecon import (
    DEEPRECON_ROIS,
    DeepreconDataset,
    deeprecon_file_name,
    write_deeprecon_fixture,
)
from fmri2image.data.fixtures import fixture_pictures
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError, MissingImageError

TRAIN = fixture_pictures(6, 3, seed=0)  # 18 training images of 6 categories
TEST = fixture_pictures(4, 1, seed=1)  # 4 test images of 4 other categories


def _write(root, **kw):
    opts = dict(train=TRAIN, test=TEST, n_train_repeats=3, n_test_repeats=4, n_voxels=60)
    return write_deeprecon_fixture(root, **{**opts, **kw})


@pytest.fixture(scope="module", params=["original", "fmriprep"])
def written(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param)
    fx = _write(root, release=request.param, subjects=(1, 2), artificial=True, letters=True,
                imagery=True)  # fmt: skip
    return fx


def test_files_are_the_release_files_and_bdpy_reads_them(written):
    import bdpy

    names = {p.name for p in written.files}
    for s in (1, 2):
        for split in ("train", "test"):
            assert deeprecon_file_name(s, split, written.release) in names
    if written.release == "original":
        assert "sub-01_perceptionNaturalImageTraining_original_VC.h5" in names
        assert "sub-02_imagery_original_VC.h5" in names
    else:
        assert "sub-01_ImageNetTest_fmriprep_volume_native.h5" in names
    train = written.root / deeprecon_file_name(1, "train", written.release)
    bd = bdpy.BData(str(train))
    assert bd.select("ROI_VC").shape[1] == 60
    with h5py.File(train) as fh:
        assert fh["dataset"].dtype == np.float64  # ids survive: float64 storage
        keys = [k.decode() for k in fh["metadata/key"][()]]
    assert "ROI_hV4" in keys and "ROI_V4" not in keys
    if written.release == "fmriprep":
        assert {"Session", "Run", "Block", "Label", "event_type", "stimulus_name",
                "MotionParameter", "voxel_i"} <= set(keys)  # fmt: skip
        labels = bd.get_label("stimulus_name")  # bdpy's own vmap reading
        assert set(labels) - {"n/a"} == set(written.stimuli["train"])
        assert "n/a" in labels  # rest samples are in the file ...
        assert (bd.select("event_type").ravel() == 2).any()  # ... and one-back repeats


def test_subjects_files_and_roi_sizes(written):
    ds = DeepreconDataset(written.root)
    assert ds.subjects() == (1, 2)
    files = ds.files(1)
    assert [p.name for p in files][:2] == [
        deeprecon_file_name(1, "train", written.release),
        deeprecon_file_name(1, "test", written.release),
    ]
    assert len(files) == 5
    rec = ds.load(1, "ROI_VC")
    assert set(rec.roi_sizes) == set(DEEPRECON_ROIS)
    assert rec.roi_sizes["ROI_VC"] == 60 == rec.n_voxels
    assert rec.roi_sizes["ROI_LVC"] == sum(rec.roi_sizes[k] for k in ("ROI_V1", "ROI_V2", "ROI_V3"))
    assert ds.load(1, "ROI_hV4").n_voxels == written.rois["ROI_hV4"].sum()
    assert (
        ds.load(1, "ROI_V1 + ROI_V2").n_voxels == rec.roi_sizes["ROI_V1"] + rec.roi_sizes["ROI_V2"]
    )


def test_splits_single_trials_and_averaged_test(written):
    ds = DeepreconDataset(written.root)
    rec = ds.load(2, "ROI_VC")
    counts = {s: int((rec.split == s).sum()) for s in np.unique(rec.split)}
    # rest and one-back repeats (fmriprep files hold them) are dropped
    assert counts == {"train": 18 * 3, "test": 4 * 4, "artificial": 8 * 3, "letter": 5 * 3,
                      "imagery": 6 * 3}  # fmt: skip
    train = ds.stimuli("train")
    assert train.stems == written.stimuli["train"]
    assert np.bincount(rec.stimulus[rec.mask("train")]).tolist() == [3] * 18  # one row per trial
    sp = split_recording(rec, split="test")
    assert sp.X_train.shape == (54, 60)
    assert sp.X_eval.shape == (4, 60) and sp.n_repeats.tolist() == [4] * 4
    assert sp.eval_rows.tolist() == [0, 1, 2, 3]
    # no test image (or category) among the training samples
    test = ds.stimuli("test")
    assert not set(test.stems) & set(train.stems)
    assert not set(test.labels) & set(train.labels)
    assert set(rec.groups[rec.mask("test")]).isdisjoint(rec.groups[rec.mask("train")])


def test_labels_rows_runs_and_groups(written):
    ds = DeepreconDataset(written.root)
    rec = ds.load(1, "ROI_VC")
    train = ds.stimuli("train")
    assert ds.vocabulary_of(train) == "wordnet"
    assert all(lab == stem.split("_")[0] and len(lab) == 9 for stem, lab in
               zip(train.stems, train.labels))  # fmt: skip
    ids = [int(s[1:9]) * 1_000_000 + int(s.split("_")[1]) for s in train.stems]
    assert ids == sorted(ids)  # sorted by stimulus id, as GOD's id files
    assert all(f.name == f"{s}.JPEG" and f.parent.name == "training" for s, f in
               zip(train.stems, train.files))  # fmt: skip
    m = rec.mask("train")
    # the group of every training sample is the WordNet offset of its image's category
    assert (rec.groups[m] == [int(train.labels[r][1:]) for r in rec.stimulus[m]]).all()
    # runs: unique per file and run (training has 3 runs, test 4, extras 3 each)
    assert len(np.unique(rec.runs)) == 3 + 4 + 3 + 3 + 3
    for s in ("train", "test", "artificial"):
        others = rec.runs[~rec.mask(s)]
        assert set(rec.runs[rec.mask(s)]).isdisjoint(others)


def test_planted_signal_is_in_the_right_rows(written):
    """The voxels of a trial follow its picture: the loader maps each sample to its own
    stimulus (a wrong row would break the planted read-out)."""
    from fmri2image.data.fixtures import _layout

    ds = DeepreconDataset(written.root)
    rec = ds.load(1, "ROI_VC")
    sp = split_recording(rec, split="test", normalization="none")
    train_pics = {s: i for i, s in enumerate(written.stimuli["train"])}
    assert len(train_pics) == len(TRAIN)
    # fit the planted map on training trials, predict the averaged test trials
    names = ds.stimuli("train").stems
    order = [written.stimuli["train"].index(n) for n in names]
    assert order == list(range(len(names)))
    pics_by_stem = _pictures_by_stem(written)
    F = _layout(np.stack([pics_by_stem[ds.stimuli("train").stems[r]] for r in sp.train_rows]))
    W, *_ = np.linalg.lstsq(np.c_[F, np.ones(len(F))], sp.X_train, rcond=None)
    Ft = _layout(np.stack([pics_by_stem[ds.stimuli("test").stems[r]] for r in sp.eval_rows]))
    pred = np.c_[Ft, np.ones(len(Ft))] @ W
    r = np.corrcoef(pred, sp.X_eval)[: len(pred), len(pred) :]
    assert (np.argmax(r, axis=1) == np.arange(len(pred))).all()


def _pictures_by_stem(fx):
    from PIL import Image

    out = {}
    for split, folder in (("train", "training"), ("test", "test")):
        for stem in fx.stimuli[split]:
            with Image.open(fx.root / folder / f"{stem}.JPEG") as im:
                out[stem] = np.asarray(im.convert("RGB"))
    return out


def test_extra_splits_have_their_own_text_stimuli(written):
    ds = DeepreconDataset(written.root)
    assert ds.eval_splits == ("test", "artificial", "letter", "imagery")
    assert ds.stimuli_of("imagery") == "imagery" and ds.stimuli_of("artificial") == "artificial"
    art = ds.stimuli("artificial")
    assert art.vocabulary == "text" and ds.vocabulary_of(art) == "text"
    assert art.stems[0] == "colorExpStim01_red_square" and art.labels[0] == "red square"
    assert all(f.parent.name == "ArtificialImage" and f.suffix == ".tiff" for f in art.files)
    letter = ds.stimuli("letter")
    assert letter.labels == ("A", "C", "E", "I", "N")
    imagery = ds.stimuli("imagery")
    assert len(imagery) == 6 and imagery.vocabulary == "text"
    assert set(imagery.stems) == set(written.stimuli["imagery"])
    assert {f.parent.name for f in imagery.files} == {"test", "ArtificialImage"}
    # One vocabulary for the split: natural targets by their category's name in words.
    from fmri2image.imagenet import prompt_name

    for stem, label in zip(imagery.stems, imagery.labels):
        if stem.startswith("n") and "_" in stem and stem.split("_")[0][1:].isdigit():
            assert label == prompt_name(stem.split("_")[0]) and not label.startswith("n0")
    rec = ds.load(1, "ROI_VC")
    for split, n in (("artificial", 8), ("letter", 5), ("imagery", 6)):
        sp = split_recording(rec, split=split)
        assert sp.X_eval.shape[0] == n and (sp.n_repeats == 3).all()
        assert sp.eval_rows.max() < len(ds.stimuli(split))


def test_numbered_shapes_match_image_names(tmp_path):
    """An original shape file with only ``stimulus_id`` 1..N finds its images by number."""
    fx = _write(tmp_path, artificial=True)
    ds = DeepreconDataset(tmp_path)
    art = ds.stimuli("artificial")
    assert art.stems == fx.stimuli["artificial"]
    rec = ds.load(1, "ROI_V1")
    rows = rec.stimulus[rec.mask("artificial")]
    assert sorted(set(rows.tolist())) == list(range(8))
    # a missing numbered image: one clear error naming the folder
    (tmp_path / "ArtificialImage" / "colorExpStim03_blue_square.tiff").unlink()
    with pytest.raises(MissingImageError, match=r"ArtificialImage.*3"):
        DeepreconDataset(tmp_path).load(1, "ROI_VC")


def test_absent_session_and_missing_images(tmp_path):
    _write(tmp_path)
    ds = DeepreconDataset(tmp_path)
    with pytest.raises(ConfigError, match=r"sub-01_perceptionArtificialImage_original_VC\.h5"):
        ds.stimuli("artificial")
    assert ds.load(1, "ROI_VC").mask("imagery").sum() == 0
    victim = sorted((tmp_path / "test").iterdir())[1]
    victim.unlink()
    with pytest.raises(MissingImageError) as err:
        DeepreconDataset(tmp_path).stimuli("test")
    msg = str(err.value)
    assert victim.stem in msg and str(tmp_path / "test") in msg and "authors" in msg
    shutil.rmtree(tmp_path / "training")
    with pytest.raises(MissingImageError, match="does not exist"):
        DeepreconDataset(tmp_path).stimuli("train")


def test_imagenet_folder_names_are_accepted(tmp_path):
    _write(tmp_path, release="fmriprep")
    (tmp_path / "training").rename(tmp_path / "ImageNetTraining")
    (tmp_path / "test").rename(tmp_path / "ImageNetTest")
    ds = DeepreconDataset(tmp_path, release="fmriprep")
    assert ds.stimuli("train").files[0].parent.name == "ImageNetTraining"
    assert split_recording(ds.load(1, "ROI_VC")).X_eval.shape == (4, 60)


def test_releases_auto_both_and_spm(tmp_path):
    _write(tmp_path, release="original")
    _write(tmp_path, release="fmriprep")
    with pytest.raises(ConfigError, match="--release"):
        DeepreconDataset(tmp_path).files(1)
    assert (
        DeepreconDataset(tmp_path, release="fmriprep")
        .files(1)[0]
        .name.endswith("_fmriprep_volume_native.h5")
    )
    assert "original" in DeepreconDataset(tmp_path, release="original").files(1)[0].name
    with pytest.raises(ConfigError, match="no 'spm' release"):
        DeepreconDataset(tmp_path, release="spm")
    with pytest.raises(ConfigError, match="options: release"):
        get_dataset("deeprecon", tmp_path, roi="x")


def test_bad_roi_suggests_hv4(written):
    ds = DeepreconDataset(written.root)
    with pytest.raises(DataFormatError, match="ROI_hV4") as err:
        ds.load(1, "ROI_V4")
    assert deeprecon_file_name(1, "train", written.release) in str(err.value)


def test_missing_and_damaged_files(tmp_path):
    with pytest.raises(MissingDataFileError, match="does not exist"):
        DeepreconDataset(tmp_path / "nowhere").files(1)
    fx = _write(tmp_path)
    ds = DeepreconDataset(tmp_path)
    with pytest.raises(MissingDataFileError, match="sub-03_perceptionNaturalImageTraining"):
        ds.files(3)
    test_file = tmp_path / deeprecon_file_name(1, "test", "original")
    test_file.unlink()  # a partial download: training only
    with pytest.raises(MissingDataFileError, match="sub-01_perceptionNaturalImageTest"):
        DeepreconDataset(tmp_path).load(1, "ROI_VC")
    _write(tmp_path)  # restore
    data = fx.files[1].read_bytes()
    fx.files[1].write_bytes(data[: len(data) // 3])  # truncated
    with pytest.raises(DataFormatError, match=fx.files[1].name):
        DeepreconDataset(tmp_path).load(1, "ROI_VC")


def test_file_without_stimulus_labels_or_runs(tmp_path):
    from fmri2image.data.bdata import BDataBuilder

    _write(tmp_path)
    path = tmp_path / deeprecon_file_name(1, "test", "original")
    b = BDataBuilder()
    b.add(np.ones((4, 60)), "VoxelData")
    b.add_metadata("ROI_VC", np.ones(60), "", where="VoxelData")
    b.add(np.arange(4.0), "Run")
    b.write(path)
    with pytest.raises(DataFormatError, match=r"neither a 'stimulus_name'.*stimulus_id") as err:
        DeepreconDataset(tmp_path).load(1, "ROI_VC")
    assert path.name in str(err.value)
    b = BDataBuilder()
    b.add(np.ones((4, 60)), "VoxelData")
    b.add_metadata("ROI_VC", np.ones(60), "", where="VoxelData")
    b.add(np.full(4, 1443537.022563), "stimulus_id")
    b.write(path)
    with pytest.raises(DataFormatError, match="no 'Run' column") as err:
        DeepreconDataset(tmp_path).load(1, "ROI_VC")
    assert path.name in str(err.value)


def test_remote_files():
    files = DeepreconDataset.remote_files([1, 3])
    assert [f.name for f in files] == [
        "sub-01_ImageNetTraining_fmriprep_volume_native.h5",
        "sub-01_ImageNetTest_fmriprep_volume_native.h5",
        "sub-03_ImageNetTraining_fmriprep_volume_native.h5",
        "sub-03_ImageNetTest_fmriprep_volume_native.h5",
    ]
    assert files[0].url == "https://ndownloader.figshare.com/files/37838826"
    assert files[0].md5 == "f0aba2065e03a518681ceec65674026b"
    assert files[3].md5 == "b7ee993435fc9b27ca507d988bdc98e9"
    orig = DeepreconDataset.remote_files([2], release="original")
    assert [(f.name, f.url, f.md5) for f in orig] == [
        ("sub-02_perceptionNaturalImageTraining_original_VC.h5",
         "https://ndownloader.figshare.com/files/14830712", None),
        ("sub-02_perceptionNaturalImageTest_original_VC.h5",
         "https://ndownloader.figshare.com/files/14830697", None),
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="1, 2, 3"):
        DeepreconDataset.remote_files([4])
    with pytest.raises(ConfigError, match="spm"):
        DeepreconDataset.remote_files([1], release="spm")


@pytest.mark.parametrize("release", ["original", "fmriprep", "noise"])
def test_decode_through_the_cli_finds_the_planted_signal(release, tmp_path, cli, pool48):
    from fmri2image.data.fixtures import noise_response, planted_response

    root = tmp_path / "data"
    planted = release != "noise"
    respond = planted_response(60, seed=5, noise=0.3) if planted else noise_response(60)
    _write(root, release=release if planted else "original", respond=respond,
           train=fixture_pictures(8, 4, seed=3), test=fixture_pictures(6, 1, seed=4),
           n_train_repeats=2, n_test_repeats=3)  # fmt: skip
    out = tmp_path / "out"
    rc, _, err = cli("decode", "--dataset", "deeprecon", "--data", root, "--model", pool48,
                     "--cv", "3", "--out", out)  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "deeprecon"
    (block,) = summary["blocks"]
    assert block["roi"] == "ROI_VC" and block["info"]["n_train"] == 8 * 4 * 2
    assert len(block["test_images"]) == 6
    (row,) = summary["encoders"]
    if planted:
        assert row["pairwise_id"] > 0.75
    else:  # no signal: chance (0.5), give or take 6 test images' noise
        assert abs(row["pairwise_id"] - 0.5) < 0.3


def test_decode_split_artificial_scores_the_shapes(tmp_path, cli, pool48):
    from fmri2image.data.fixtures import planted_response

    root = tmp_path / "data"
    _write(root, release="fmriprep", artificial=True, n_train_repeats=2, n_test_repeats=2,
           train=fixture_pictures(8, 4, seed=3), respond=planted_response(60, seed=5, noise=0.3))  # fmt: skip
    out = tmp_path / "out"
    rc, _, err = cli("decode", "--dataset", "deeprecon", "--data", root, "--model", pool48,
                     "--cv", "3", "--split", "artificial", "--out", out)  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    (block,) = summary["blocks"]
    assert block["info"]["split"] == "artificial"
    assert block["true_labels"][:2] == ["red square", "green square"]  # text labels
    (row,) = summary["encoders"]
    assert row["pairwise_id"] > 0.75
    (ret,) = row["retrieval"]
    assert ret["wup"] is None  # no WordNet similarity for text labels
