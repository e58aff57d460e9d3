"""THINGS-fMRI behind the dataset seam: the figshare+ table release and KamitaniLab's
BData conversion, written in their exact formats by ``write_things_fixture``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from fmri2image.data import get_dataset
from fmri2image.data.dataset import split_recording
from fmri2image.data.fixtures import fixture_pictures, planted_response
from fmri2image.data.things import (
    FIGSHARE_ARTICLE,
    ROI_COLUMNS,
    ThingsDataset,
    write_things_fixture,
)
from fmri2image.errors import (
    ConfigError,
    DataFormatError,
    Fmri2ImageError,
    MissingDataFileError,
    MissingImageError,
)

pytest.importorskip("tables")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Two subjects, table release, unpacked into betas_csv/ as the archive does."""
    root = tmp_path_factory.mktemp("things-table")
    return write_things_fixture(root, subjects=(1, 2), subfolder="betas_csv")


def _copy(fx, tmp_path):
    import shutil

    shutil.copytree(fx.root, tmp_path / "copy")
    return tmp_path / "copy"


def _union(fx, *names):
    return np.logical_or.reduce([fx.roi_masks[n] for n in names])


# ---------------------------------------------------------------------- reading
def test_subjects_files_and_roi_sizes(table):
    ds = get_dataset("things", table.root)
    assert isinstance(ds, ThingsDataset)
    assert ds.subjects() == (1, 2)
    assert [p.name for p in ds.files(2)] == [
        "sub-02_ResponseData.h5",
        "sub-02_StimulusMetadata.csv",
        "sub-02_VoxelMetadata.csv",
    ]
    assert all(p.parent.name == "betas_csv" for p in ds.files(1))
    rec = ds.load(1, "VC")
    vc = _union(table, *ROI_COLUMNS)
    assert rec.n_voxels == vc.sum() == 120  # a fifth of 150 voxels lie outside
    expected = {k.replace("\n", ""): int(v.sum()) for k, v in table.roi_masks.items()}
    assert rec.roi_sizes == {**expected, "VC": 120}
    assert rec.roi_sizes["glasser-p9-46v"] == 15 and rec.roi_sizes["LO1 (prf)"] == 4
    with pytest.raises(MissingDataFileError, match=r"sub-03_ResponseData\.h5"):
        ds.files(3)


def test_voxels_splits_stimuli_runs_and_groups(table):
    ds = get_dataset("things", table.root)
    rec = ds.load(1, "VC")
    vc = _union(table, *ROI_COLUMNS)
    np.testing.assert_array_equal(rec.voxels, table.voxels[1][:, vc].astype(np.float32))
    assert rec.voxels.dtype == np.float32
    np.testing.assert_array_equal(rec.split, table.trial_split[1])
    assert (rec.split == "train").sum() == 60 and (rec.split == "test").sum() == 120
    train, test = ds.stimuli("train"), ds.stimuli("test")
    assert len(train) == 60 and len(test) == 10
    # Every sample's stimulus row names the image the trial showed.
    stems = np.array([(train if s == "train" else test).stems[i]
                      for s, i in zip(rec.split, rec.stimulus)])  # fmt: skip
    np.testing.assert_array_equal(stems, table.trial_stem[1])
    # No test image is a training image; test concepts are training concepts.
    assert not set(train.stems) & set(test.stems)
    assert set(test.labels) <= set(train.labels)
    # groups: one integer per concept, shared by both splits.
    concept = np.array([s.rsplit("_", 1)[0] for s in table.trial_stem[1]])
    for c in np.unique(concept):
        assert np.unique(rec.groups[concept == c]).size == 1
    assert np.unique(rec.groups).size == 10
    # Runs: 12 sessions x 2 runs, run 1 of session 1 is not run 1 of session 2.
    assert np.unique(rec.runs).size == 24
    sessions = np.repeat(np.arange(12), 15)
    assert not set(rec.runs[sessions == 0]) & set(rec.runs[sessions == 1])


def test_test_repetitions_are_averaged_and_kept_out_of_training(table):
    ds = get_dataset("things", table.root)
    rec = ds.load(2, "V1 + V2")
    split = split_recording(rec, normalization="none")
    assert split.X_train.shape == (60, rec.n_voxels)
    assert split.X_eval.shape == (10, rec.n_voxels)
    assert split.n_repeats.tolist() == [12] * 10
    test_rows = rec.mask("test")
    first = split.eval_rows[0]
    mean = rec.voxels[test_rows & (rec.stimulus == first)].mean(axis=0)
    np.testing.assert_allclose(split.X_eval[0], mean, rtol=1e-5)
    train_stems = {ds.stimuli("train").stems[i] for i in split.train_rows}
    assert not train_stems & set(ds.stimuli("test").stems)


@pytest.mark.parametrize(
    "roi, names",
    [
        ("V1", ["V1"]),
        ("lFFA + rFFA", ["lFFA", "rFFA"]),
        ("lFFA+rFFA", ["lFFA", "rFFA"]),
        ("FFA", ["lFFA", "rFFA"]),
        ("LO1 (prf)", ["LO1 (prf)"]),
        ("LO1(prf) + IT", ["LO1 (prf)", "IT"]),
        ("LO1", ["LO1 (prf)"]),
        ("glasser-p9-46v", ["glasser-p9-\n46v"]),
        ("glasser-p9-\n46v + V1", ["glasser-p9-\n46v", "V1"]),
        ("glasser-*46v", ["glasser-p9-\n46v", "glasser-a9-\n46v"]),
        ("VC", list(ROI_COLUMNS)),
    ],
)
def test_roi_expressions(table, roi, names):
    rec = get_dataset("things", table.root).load(1, roi)
    mask = _union(table, *names)
    assert rec.n_voxels == mask.sum() > 0
    np.testing.assert_array_equal(rec.voxels, table.voxels[1][:, mask].astype(np.float32))


def test_unknown_roi_names_close_matches(table):
    ds = get_dataset("things", table.root)
    with pytest.raises(ConfigError, match=r"'lFAA'.*Did you mean: .*lFFA"):
        ds.load(1, "V1 + lFAA")
    with pytest.raises(ConfigError, match="empty term"):
        ds.load(1, "V1 + ")
    assert ThingsDataset.default_rois == ("VC",) and ThingsDataset.eval_splits == ("test",)


def test_stimulus_files_and_text_labels(table):
    ds = get_dataset("things", table.root)
    stim = ds.stimuli("train")
    assert stim.files[0] == table.root / "images" / "aardvark" / "aardvark_01s.jpg"
    assert all(f.is_file() for f in stim.files)
    assert "ice cream" in stim.labels  # ice_cream, as text
    assert ds.vocabulary_of(stim) == "text"
    assert stim.stems == tuple(sorted(table.train_stems))


# ---------------------------------------------------------------------- the BData conversion
@pytest.mark.parametrize("release", ["bdata", "bdata-split"])
def test_bdata_conversion_equals_the_table_release(table, tmp_path, release):
    fx = write_things_fixture(tmp_path, subjects=(1,), release=release, subfolder="output")
    bdpy = pytest.importorskip("bdpy")
    ds = get_dataset("things", tmp_path)
    ref = get_dataset("things", table.root)
    assert ds.subjects() == (1,)
    b = bdpy.BData(str(fx.files[1][0]))  # bdpy reads what the fixture wrote
    assert b.get_vmap("trial_type")[1] == "train"  # bdpy keeps the codes in use
    for roi in ("VC", "LO1 (prf) + glasser-p9-46v", "FFA"):
        rec, want = ds.load(1, roi), ref.load(1, roi)
        order = np.arange(want.n_samples)
        if release == "bdata-split":  # training file first, then the test file
            order = np.concatenate([np.flatnonzero(want.split == s) for s in ("train", "test")])
        np.testing.assert_array_equal(rec.voxels, want.voxels[order])
        for name in ("split", "stimulus", "groups"):
            np.testing.assert_array_equal(getattr(rec, name), getattr(want, name)[order])
        assert np.unique(rec.runs).size == 24
        assert rec.roi_sizes == want.roi_sizes
    assert ds.stimuli("test").stems == ref.stimuli("test").stems


def test_release_option(table, tmp_path):
    write_things_fixture(tmp_path, release="table", images=False)
    write_things_fixture(tmp_path, release="bdata", images=False)
    assert get_dataset("things", tmp_path).files(1)[0].name == "sub-01_ResponseData.h5"
    assert get_dataset("things", tmp_path, release="bdata").files(1)[0].name == "sub-01.h5"
    with pytest.raises(ConfigError, match="auto, table or bdata"):
        get_dataset("things", tmp_path, release="spm")
    only_bdata = tmp_path / "b"
    write_things_fixture(only_bdata, release="bdata", images=False)
    with pytest.raises(MissingDataFileError, match=r"sub-01_ResponseData\.h5"):
        get_dataset("things", only_bdata, release="table").files(1)


# ---------------------------------------------------------------------- labels
def test_concept_table_gives_wordnet_labels(tmp_path, monkeypatch, caplog):
    from _wordnet_fixture import write_mini_wordnet

    wnids = write_mini_wordnet(tmp_path / "wn")
    monkeypatch.setenv("FMRI2IMAGE_WORDNET_DIR", str(tmp_path / "wn"))
    pics = fixture_pictures(3, 3, seed=0)
    kw = dict(train=pics.take([0, 1, 3, 4, 6, 7]), test=pics.take([2, 5, 8]),
              concepts=("dog", "cat", "car"), n_test_repeats=2)  # fmt: skip
    # Synset names (converted with WordNet) and ids, as the THINGS table mixes them.
    cells = {"dog": "dog.n.01", "cat": wnids["cat"], "car": "car.n.01"}
    write_things_fixture(tmp_path / "a", concept_table=cells, **kw)
    stim = get_dataset("things", tmp_path / "a").stimuli("test")
    assert stim.vocabulary == "wordnet"
    assert stim.labels == (wnids["car"], wnids["cat"], wnids["dog"])  # sorted stems
    # One concept without an id: every label stays text, and the log says which.
    write_things_fixture(tmp_path / "b", concept_table={**cells, "car": ""}, **kw)
    with caplog.at_level(logging.WARNING, logger="fmri2image.data.things"):
        stim = get_dataset("things", tmp_path / "b").stimuli("train")
    assert stim.vocabulary is None and set(stim.labels) == {"dog", "cat", "car"}
    assert "car" in caplog.text and "no WordNet id for 1 of 3" in caplog.text


def test_missing_images_say_where_to_get_them(table, tmp_path):
    root = _copy(table, tmp_path)
    (root / "images" / "dog" / "dog_03s.jpg").unlink()
    with pytest.raises(MissingImageError, match=r"1 of 60 .*dog_03s\.jpg.*osf\.io/jum2f"):
        get_dataset("things", root).stimuli("train")
    import shutil

    shutil.rmtree(root / "images")
    with pytest.raises(MissingImageError, match=r"images.*osf\.io/jum2f.*password"):
        get_dataset("things", root).stimuli("test")


# ---------------------------------------------------------------------- bad files
def _damage(root, name, how):
    path = root / "betas_csv" / name
    if how == "garbage":
        path.write_bytes(b"not an HDF5 file\n" * 10)
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "drop-last-row":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]))
    elif how == "extra-row":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join([*lines, lines[-1]]))
    elif how == "no-stimulus-column":
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(line.replace("stimulus", "stim", 1) for line in lines))
    elif how == "shift-ids":
        import pandas as pd

        df = pd.read_csv(path)
        df["voxel_id"] += 1000
        df.to_csv(path, index=False)
    elif how == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "name, how, message",
    [
        ("sub-01_ResponseData.h5", "garbage", "sub-01_ResponseData.h5 cannot be read"),
        ("sub-01_ResponseData.h5", "truncate", "sub-01_ResponseData.h5 cannot be read"),
        ("sub-01_StimulusMetadata.csv", "drop-last-row",
         r"ResponseData.h5 has 180 trial columns but .*StimulusMetadata.csv lists 179"),
        ("sub-01_StimulusMetadata.csv", "no-stimulus-column",
         "StimulusMetadata.csv lacks the column"),
        ("sub-01_StimulusMetadata.csv", "empty", "StimulusMetadata.csv cannot be read"),
        ("sub-01_VoxelMetadata.csv", "shift-ids", "voxel ids of .*ResponseData.h5 and .*disagree"),
        ("sub-01_VoxelMetadata.csv", "extra-row", "does not have the 151 voxel rows"),
        ("sub-01_VoxelMetadata.csv", "garbage", "VoxelMetadata.csv"),
    ],
)  # fmt: skip
def test_damaged_files_raise_one_clear_error(table, tmp_path, name, how, message):
    root = _copy(table, tmp_path)
    _damage(root, name, how)
    ds = get_dataset("things", root)
    with pytest.raises((DataFormatError, MissingDataFileError)) as info:
        ds.load(1, "VC")
    assert isinstance(info.value, Fmri2ImageError)
    assert __import__("re").search(message, str(info.value), flags=__import__("re").S)


def test_missing_partner_file_is_named(table, tmp_path):
    root = _copy(table, tmp_path)
    (root / "betas_csv" / "sub-01_VoxelMetadata.csv").unlink()
    ds = get_dataset("things", root)
    assert ds.subjects() == (2,)
    with pytest.raises(MissingDataFileError, match=r"sub-01_VoxelMetadata\.csv"):
        ds.load(1, "VC")


def test_damaged_bdata_file(tmp_path):
    write_things_fixture(tmp_path, release="bdata", images=False)
    (tmp_path / "sub-01.h5").write_bytes(b"garbage" * 20)
    with pytest.raises(DataFormatError, match=r"sub-01\.h5 is not an HDF5 file"):
        get_dataset("things", tmp_path).load(1, "VC")


def test_nan_voxels(tmp_path):
    def respond(images, rng):
        out = planted_response(150, seed=0)(images, rng)
        out[:, -1] = np.nan
        return out

    write_things_fixture(tmp_path, respond=respond, images=False, n_test_repeats=2)
    ds = get_dataset("things", tmp_path)
    with pytest.raises(DataFormatError, match=r"1 of 120 voxels .* NaN"):
        ds.load(1, "VC")
    rec = ds.load(1, "VC", drop_nan_voxels=True)
    assert rec.n_voxels == 119 and rec.n_dropped_nan_voxels == 1


# ---------------------------------------------------------------------- downloads
def test_remote_files():
    files = ThingsDataset.remote_files([1, 3])
    assert [f.name for f in files] == [
        "sub-01_ResponseData.h5", "sub-01_StimulusMetadata.csv", "sub-01_VoxelMetadata.csv",
        "sub-03_ResponseData.h5", "sub-03_StimulusMetadata.csv", "sub-03_VoxelMetadata.csv",
    ]  # fmt: skip
    assert files[0].url == f"figshare://{FIGSHARE_ARTICLE}/sub-01_ResponseData.h5"
    assert FIGSHARE_ARTICLE == 20492835 and ThingsDataset.known_subjects == (1, 2, 3)
    with pytest.raises(ConfigError, match="subjects 1, 2, 3, not 4"):
        ThingsDataset.remote_files([4])
    with pytest.raises(ConfigError, match="not published"):
        ThingsDataset.remote_files([1], release="bdata")


# ---------------------------------------------------------------------- end to end
def test_decode_through_the_cli(tmp_path, cli, pool48):
    root = tmp_path / "things"
    write_things_fixture(root, n_test_repeats=4)
    out = tmp_path / "out"
    rc, _, err = cli("decode", "--dataset", "things", "--data", root, "--model", pool48,
                     "--cv", "3", "--out", out)  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "things"
    (block,) = summary["blocks"]
    assert block["roi"] == "VC" and block["info"]["n_train"] == 60
    (row,) = summary["encoders"]
    assert row["pairwise_id"] > 0.8  # the planted brain reads the pictures


def test_responses_are_read_in_voxel_row_chunks(table, monkeypatch):
    """A ROI of the 17 GB real file is read chunk by chunk; the result is the same."""
    import fmri2image.data.things as things

    whole = get_dataset("things", table.root).load(1, "V1 + IT + glasser-p9-46v")
    monkeypatch.setattr(things, "_CHUNK_VALUES", 181 * 7)  # 7 voxel rows per read
    chunked = get_dataset("things", table.root).load(1, "V1 + IT + glasser-p9-46v")
    np.testing.assert_array_equal(chunked.voxels, whole.voxels)
