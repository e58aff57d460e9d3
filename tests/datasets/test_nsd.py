"""NSD as MindEye2 distributes it (hub dataset pscotti/mindeyev2), read through the
dataset seam from fixtures written in the release's exact layout."""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from fmri2image.data.dataset import average_rows, get_dataset, split_recording
from fmri2image.data.fixtures import fixture_pictures, noise_response
from fmri2image.data.nsd import (
    BEHAV_COLUMNS,
    SESSIONS,
    NSDDataset,
    read_behav_tar,
    write_nsd_fixture,
)
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError

TRAIN = fixture_pictures(8, 5, seed=3)
TEST = fixture_pictures(8, 1, seed=4)
N_VOXELS = 90
COL = {name: i for i, name in enumerate(BEHAV_COLUMNS)}


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd2")
    fx = write_nsd_fixture(root, subjects=(1, 2), train=TRAIN, test=TEST, n_voxels=N_VOXELS)
    return fx


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd1")
    return write_nsd_fixture(root, train=TRAIN, test=TEST, n_voxels=N_VOXELS, seed=5)


@pytest.fixture
def one(pristine, tmp_path):
    """A copy of a one-subject fixture to damage."""
    root = tmp_path / "nsd"
    shutil.copytree(pristine.root, root)
    return root


def _open(root: Path, **options) -> NSDDataset:
    return get_dataset("nsd", root, **({"sessions": 2} | options))


def _rewrite_tar(path: Path, edit) -> None:
    """Rewrite a webdataset tar, each sample's members passed through ``edit(key,
    members) -> members or None`` (None drops the sample)."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, _, ext = m.name.partition(".")
            samples.setdefault(key, {})[ext] = tar.extractfile(m).read()
    with tarfile.open(path, "w") as tar:
        for key, members in samples.items():
            members = edit(key, members)
            for ext, data in (members or {}).items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _set_behav(path: Path, column: str, value: float, *, which: int = 0) -> None:
    """Set one column of the ``which``-th sample's behav row."""
    order: list[str] = []

    def edit(key, members):
        order.append(key)
        if len(order) - 1 == which:
            row = np.load(io.BytesIO(members["behav.npy"]))
            row[0, COL[column]] = value
            members["behav.npy"] = _npy(row)
        return members

    _rewrite_tar(path, edit)


# ---------------------------------------------------------------------- the release layout
def test_the_fixture_writes_the_release_formats(two_subjects):
    root = two_subjects.root
    with h5py.File(root / "betas_all_subj01_fp32_renorm.hdf5") as f:
        betas = f["betas"][:]
    assert betas.dtype == np.float32 and betas.shape == (5 * 8 + 3 * 8, N_VOXELS)
    with h5py.File(root / "coco_images_224_float16.hdf5") as f:
        images = f["images"]
        assert images.dtype == np.float16 and images.shape[1:] == (3, 32, 32)
        assert images.shape[0] == two_subjects.n_images_73k
        assert 0.0 <= float(np.min(images[:])) and float(np.max(images[:])) <= 1.0
    shared = np.load(root / "shared1000.npy", allow_pickle=False)
    assert (
        shared.dtype == bool and np.flatnonzero(shared).tolist() == two_subjects.test_ids.tolist()
    )
    annots = np.load(root / "COCO_73k_annots_curated.npy", allow_pickle=False)
    assert annots.dtype.kind == "U" and annots.shape == (two_subjects.n_images_73k, 5)
    with tarfile.open(root / "wds/subj01/train/0.tar") as tar:
        names = tar.getnames()
    assert names[:4] == [
        "sample000000000.behav.npy", "sample000000000.future_behav.npy",
        "sample000000000.olds_behav.npy", "sample000000000.past_behav.npy",
    ]  # fmt: skip
    keys, behav = read_behav_tar(root / "wds/subj01/new_test/0.tar")
    assert keys[0] == "sample000000000" and behav.dtype == np.float64 and behav.shape[1] == 17
    assert (behav[:, COL["shared1000"]] == 1).all() and (behav[:, COL["subject"]] == 1).all()
    # Each session z-scored per voxel, as the release.
    sessions = []
    for k in range(2):
        _, b = read_behav_tar(root / f"wds/subj01/train/{k}.tar")
        sessions.append(b)
    allb = np.concatenate([*sessions, behav])
    for s in (1, 2):
        rows = allb[allb[:, COL["session"]] == s, COL["global_trial"]].astype(int)
        np.testing.assert_allclose(betas[rows].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(betas[rows].std(0), 1, atol=1e-4)
    # Every global trial appears exactly once across the tars: a row of the betas.
    assert sorted(allb[:, COL["global_trial"]].astype(int).tolist()) == list(range(len(betas)))


def test_subjects_files_rois_and_split_sizes(two_subjects):
    ds = _open(two_subjects.root)
    assert ds.subjects() == (1, 2)
    files = [p.relative_to(two_subjects.root).as_posix() for p in ds.files(2)]
    assert files == [
        "betas_all_subj02_fp32_renorm.hdf5", "wds/subj02/train/0.tar", "wds/subj02/train/1.tar",
        "wds/subj02/new_test/0.tar", "shared1000.npy", "COCO_73k_annots_curated.npy",
    ]  # fmt: skip
    rec = ds.load(1, "nsdgeneral")
    assert rec.roi == "nsdgeneral" and rec.roi_sizes == {"nsdgeneral": N_VOXELS}
    assert rec.voxels.dtype == np.float32 and rec.n_voxels == N_VOXELS
    assert (rec.split == "train").sum() == len(TRAIN) and (rec.split == "test").sum() == 3 * 8
    assert NSDDataset.default_rois == ("nsdgeneral",) and NSDDataset.eval_splits == ("test",)
    assert NSDDataset.vocabulary == "text" and NSDDataset.known_subjects == tuple(range(1, 9))
    # Training images differ per subject; the stimuli hold every subject's, sorted.
    train, test = ds.stimuli("train"), ds.stimuli("test")
    ids = np.sort(np.concatenate([two_subjects.train_ids[1], two_subjects.train_ids[2]]))
    assert train.stems == tuple(f"nsd73k-{i:05d}" for i in ids)
    assert test.stems == tuple(f"nsd73k-{i:05d}" for i in two_subjects.test_ids)
    assert train.source == two_subjects.root / "coco_images_224_float16.hdf5"


def test_stimulus_rows_show_the_pictures_the_trials_saw(two_subjects):
    ds = _open(two_subjects.root)
    rec = ds.load(2, "nsdgeneral")
    for split, pics, ids in (
        ("train", TRAIN, two_subjects.train_ids[2]),
        ("test", TEST, two_subjects.test_ids),
    ):
        stim = ds.stimuli(split)
        rows = rec.stimulus[rec.split == split]
        # The row's stem is the 73k id the trial saw; that id's picture is what was shown.
        seen_ids = np.array([int(stim.stems[r][7:]) for r in rows])
        assert np.isin(seen_ids, ids).all()
        picture = {int(i): k for k, i in enumerate(ids)}
        got = stim.read(rows[:12][::-1])  # any order, h5py needs increasing ids inside
        want = pics.images[[picture[i] for i in seen_ids[:12][::-1]]]
        assert got.dtype == np.uint8 and got.shape == (12, 32, 32, 3)
        np.testing.assert_array_equal(got, want)  # float16 in [0, 1] keeps 8-bit pixels
    # Runs: session * 100 + run; groups: the image, so repetitions stay together.
    _, b0 = read_behav_tar(two_subjects.root / "wds/subj02/train/0.tar")
    assert set(rec.runs[: len(b0)].tolist()) == {
        int(s) * 100 + int(r) for s, r in b0[:, [COL["session"], COL["run"]]]
    }
    test_stim = ds.stimuli("test")
    t = rec.split == "test"
    stems = np.array(test_stim.stems)[rec.stimulus[t]]
    assert [f"nsd73k-{g:05d}" for g in rec.groups[t]] == stems.tolist()


def test_labels_are_the_first_non_empty_caption(one):
    ds = _open(one)
    test = ds.stimuli("test")
    assert all(label.startswith("a photo of category ") for label in test.labels)
    annots = np.load(one / "COCO_73k_annots_curated.npy").astype("<U80")
    first, second = (int(s[7:]) for s in test.stems[:2])
    annots[first] = ["", "  a tram in the rain  ", "", "", ""]
    annots[second] = ""
    np.save(one / "COCO_73k_annots_curated.npy", annots)
    ds = _open(one)
    with pytest.raises(DataFormatError, match=rf"COCO_73k_annots_curated.npy: image {second}"):
        ds.stimuli("test")
    annots[second] = ["x", "", "", "", ""]
    np.save(one / "COCO_73k_annots_curated.npy", annots)
    assert _open(one).stimuli("test").labels[:2] == ("a tram in the rain", "x")


def test_repetitions_are_averaged_after_prediction(one):
    assert NSDDataset.average == "predictions"
    ds = _open(one)
    rec = ds.load(1, "nsdgeneral")
    pred = split_recording(rec, average="predictions")
    vox = split_recording(rec, average="voxels")
    assert pred.X_eval.shape == (3 * 8, N_VOXELS) and pred.n_repeats.tolist() == [3] * 8
    assert pred.eval_rows.tolist() == list(range(8))
    np.testing.assert_allclose(average_rows(pred.X_eval, pred.eval_index), vox.X_eval, atol=1e-5)
    # An image with a missing repetition is averaged over the trials present.
    dropped: list[str] = []

    def drop_one(key, members):
        image = np.load(io.BytesIO(members["behav.npy"]))[0, COL["cocoidx"]]
        if not dropped and int(image) == int(ds.stimuli("test").stems[5][7:]):
            dropped.append(key)
            return None
        return members

    _rewrite_tar(one / "wds/subj01/new_test/0.tar", drop_one)
    rec = _open(one).load(1, "nsdgeneral")
    pred = split_recording(rec, average="predictions")
    assert pred.n_repeats.tolist() == [3, 3, 3, 3, 3, 2, 3, 3]
    assert np.bincount(pred.eval_index).tolist() == pred.n_repeats.tolist()


def test_no_test_image_is_trained_on(one, caplog):
    ds = _open(one)
    test_id = int(ds.stimuli("test").stems[0][7:])
    _set_behav(one / "wds/subj01/train/1.tar", "cocoidx", test_id, which=2)
    ds = _open(one)
    with caplog.at_level(logging.WARNING, logger="fmri2image.data.nsd"):
        rec = ds.load(1, "nsdgeneral")
    assert "dropped 1 training trials" in caplog.text
    assert (rec.split == "train").sum() == len(TRAIN) - 1
    train, test = ds.stimuli("train"), ds.stimuli("test")
    assert not set(train.stems) & set(test.stems)
    assert not np.isin(rec.groups[rec.split == "train"], rec.groups[rec.split == "test"]).any()


# ---------------------------------------------------------------------- bad and partial files
def test_missing_files_name_the_file_and_the_download(one):
    (one / "wds/subj01/train/1.tar").unlink()
    with pytest.raises(MissingDataFileError, match=r"train/1\.tar does not exist") as exc:
        _open(one).load(1, "nsdgeneral")
    assert "fmri2image download nsd --subjects 1 --dest DIR" in str(exc.value)
    assert _open(one, sessions=1).load(1, "nsdgeneral").n_samples == 3 * 8 + len(
        read_behav_tar(one / "wds/subj01/train/0.tar")[0]
    )
    # The release's count by default: subject 1 has 40 train tars.
    with pytest.raises(MissingDataFileError, match=r"train/1\.tar .* 40 train tars"):
        get_dataset("nsd", one).files(1)
    for name in ("COCO_73k_annots_curated.npy", "coco_images_224_float16.hdf5",
                 "wds/subj01/new_test/0.tar", "betas_all_subj01_fp32_renorm.hdf5"):  # fmt: skip
        (one / name).rename(one / "moved")
        with pytest.raises(MissingDataFileError, match=name.replace(".", r"\.")) as exc:
            ds = _open(one, sessions=1)
            ds.load(1, "nsdgeneral")
            ds.stimuli("test")
        assert "fmri2image download nsd" in str(exc.value)
        (one / "moved").rename(one / name)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("global_trial", 10_000, r"global trial outside the \d+ rows of betas_all_subj01"),
        ("global_trial", -1, r"global trial outside"),
        ("cocoidx", 10**6, r"image id outside 0\.\.\d+"),
        ("cocoidx", 2.5, r"no whole-number image id"),
        ("subject", 2, r"another subject than 1"),
    ],
)
def test_behav_rows_that_point_outside_the_files_are_refused(one, column, value, message):
    _set_behav(one / "wds/subj01/train/1.tar", column, value, which=3)
    with pytest.raises(DataFormatError, match=message) as exc:
        _open(one).load(1, "nsdgeneral")
    assert "train/1.tar" in str(exc.value)


def test_damaged_files_raise_one_clear_error(one):
    tar = one / "wds/subj01/new_test/0.tar"
    good = tar.read_bytes()
    tar.write_bytes(b"not a tar at all" * 40)
    with pytest.raises(DataFormatError, match=r"new_test/0\.tar.*cannot be read"):
        _open(one).load(1, "nsdgeneral")
    tar.write_bytes(good)
    _rewrite_tar(tar, lambda k, m: {**m, "behav.npy": _npy(np.array([{"a": 1}], dtype=object))})
    with pytest.raises(DataFormatError, match=r"new_test/0\.tar"):
        _open(one).load(1, "nsdgeneral")
    _rewrite_tar(tar, lambda k, m: {**m, "behav.npy": _npy(np.zeros((1, 5)))})
    with pytest.raises(DataFormatError, match=r"\(1, 17\) float64"):
        _open(one).load(1, "nsdgeneral")
    _rewrite_tar(tar, lambda k, m: {"other.txt": b"x"})
    with pytest.raises(DataFormatError, match=r"holds no <key>\.behav\.npy"):
        _open(one).load(1, "nsdgeneral")
    tar.write_bytes(good)
    betas = one / "betas_all_subj01_fp32_renorm.hdf5"
    good = betas.read_bytes()
    with h5py.File(betas, "a") as f:
        f.move("betas", "voxels")
    with pytest.raises(DataFormatError, match=r"has no dataset 'betas' \(it has: voxels\)"):
        _open(one).load(1, "nsdgeneral")
    betas.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"cannot be opened as HDF5"):
        _open(one).load(1, "nsdgeneral")
    betas.write_bytes(good)
    np.save(one / "shared1000.npy", np.zeros(7, dtype=bool))
    with pytest.raises(DataFormatError, match=r"shared1000\.npy is bool of shape \(7,\)"):
        _open(one).stimuli("test")
    with h5py.File(one / "coco_images_224_float16.hdf5", "a") as f:
        data = f["images"][:]
        del f["images"]
        f.create_dataset("images", data=data.transpose(0, 2, 3, 1))  # channels last
    with pytest.raises(DataFormatError, match=r"'images' is float16 of shape .*channels first"):
        _open(one).stimuli("test")


def test_nan_voxels_are_refused_unless_dropped(one):
    with h5py.File(one / "betas_all_subj01_fp32_renorm.hdf5", "a") as f:
        f["betas"][4, 7] = np.nan
    with pytest.raises(DataFormatError, match=r"1 of 90 voxel columns .* contain NaN"):
        _open(one).load(1, "nsdgeneral")
    rec = _open(one).load(1, "nsdgeneral", drop_nan_voxels=True)
    assert rec.n_voxels == 89 and rec.n_dropped_nan_voxels == 1
    assert rec.roi_sizes == {"nsdgeneral": 90}


def test_only_nsdgeneral_and_known_options(one):
    with pytest.raises(ConfigError, match=r"nsdgeneral voxels only"):
        _open(one).load(1, "ROI_VC")
    with pytest.raises(ConfigError, match=r"sessions must be a positive"):
        _open(one, sessions=0)
    with pytest.raises(ConfigError, match=r"do\(es\) not apply.*its options: sessions"):
        get_dataset("nsd", one, release="spm")
    with pytest.raises(ConfigError, match=r"train and test stimuli"):
        _open(one).stimuli("imagery")


# ---------------------------------------------------------------------- downloads
def test_remote_files_list_the_hub_paths():
    files = NSDDataset.remote_files([1])
    names = [f.name for f in files]
    assert names[0] == "betas_all_subj01_fp32_renorm.hdf5"
    assert names[1:41] == [f"wds/subj01/train/{k}.tar" for k in range(40)]
    assert names[41:] == [
        "wds/subj01/new_test/0.tar", "coco_images_224_float16.hdf5", "shared1000.npy",
        "COCO_73k_annots_curated.npy",
    ]  # fmt: skip
    assert all(f.url == f"hf://datasets/pscotti/mindeyev2/{f.name}" for f in files)
    assert all(f.md5 is None for f in files)
    both = [f.name for f in NSDDataset.remote_files([3, 8])]
    assert both.count("shared1000.npy") == 1 and len(both) == 3 + 34 + 32
    assert "wds/subj03/train/31.tar" in both and "wds/subj03/train/32.tar" not in both
    assert [f.name for f in NSDDataset.remote_files([2], sessions=1)][:3] == [
        "betas_all_subj02_fp32_renorm.hdf5", "wds/subj02/train/0.tar", "wds/subj02/new_test/0.tar",
    ]  # fmt: skip
    assert SESSIONS == {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
    for bad in (9, 0, "1"):
        with pytest.raises(ConfigError, match=r"subjects: 1, 2, 3, 4, 5, 6, 7, 8"):
            NSDDataset.remote_files([bad])


# ---------------------------------------------------------------------- end to end
@pytest.mark.parametrize("brain", ["planted", "noise"])
def test_decode_runs_end_to_end_from_the_command_line(brain, cli, pool48, tmp_path):
    data = tmp_path / "data"
    respond = None if brain == "planted" else noise_response(N_VOXELS)
    fx = write_nsd_fixture(data, train=fixture_pictures(10, 6, seed=0),
                           test=fixture_pictures(12, 1, seed=1), n_voxels=N_VOXELS,
                           respond=respond)  # fmt: skip
    out = tmp_path / "out"
    rc, _, err = cli("decode", "--dataset", "nsd", "--data", data, "--set",
                     f"data.options={{ sessions = {fx.n_sessions} }}", "--model", pool48,
                     "--cv", "3", "--out", out, "--cache", tmp_path / "cache")  # fmt: skip
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "nsd"
    (block,) = summary["blocks"]
    assert block["roi"] == "nsdgeneral" and block["info"]["n_eval"] == 12
    assert block["info"]["n_eval_repeats"] == [3] and block["info"]["n_train"] == 60
    assert block["true_labels"][0] == "a photo of category 0"
    (row,) = summary["encoders"]
    if brain == "planted":
        assert row["pairwise_id"] > 0.9
    else:
        assert abs(row["pairwise_id"] - 0.5) < 0.25


def test_adding_a_subject_does_not_reuse_stale_stimuli(two_subjects, cli, pool48, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(two_subjects.root, data)
    (data / "betas_all_subj02_fp32_renorm.hdf5").rename(tmp_path / "betas2.hdf5")
    args = ("decode", "--dataset", "nsd", "--data", data, "--set",
            "data.options={ sessions = 2 }", "--model", pool48, "--cv", "3",
            "--cache", tmp_path / "cache")  # fmt: skip
    assert cli(*args, "--out", tmp_path / "out1")[0] == 0
    (tmp_path / "betas2.hdf5").rename(data / "betas_all_subj02_fp32_renorm.hdf5")
    rc, _, err = cli(*args, "--subjects", "2", "--out", tmp_path / "out2")
    assert rc == 0, err
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    assert summary["encoders"][0]["pairwise_id"] > 0.9
