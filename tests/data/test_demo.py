"""The demo dataset: GOD layout, bdpy compatibility, determinism, real signal, CLI."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from fmri2image.data.demo import (
    CATALOGUE,
    ROI_FRACTIONS,
    DemoDatasetInfo,
    available_categories,
    write_demo_dataset,
)
from fmri2image.errors import ConfigError

ROI_KEYS = [f"ROI_{r}" for r in ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")]
SMALL = dict(
    n_train_categories=2,
    images_per_category=2,
    n_test_categories=2,
    n_test_repeats=2,
    n_imagery_repeats=1,
    n_voxels=42,
    progress=False,
)
ID_ROW = re.compile(r"^(\d+)\.(\d{6}),(n\d{8})_(\d+)\.JPEG$")


@pytest.fixture(scope="module")
def encoder():
    from fmri2image.features import get_encoder

    return get_encoder("effnet-lite0")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, encoder) -> DemoDatasetInfo:
    """The default-size demo dataset, two subjects."""
    out = tmp_path_factory.mktemp("demo") / "god"
    return write_demo_dataset(out, n_subjects=2, encoder=encoder, progress=False)


def _read_ids(path: Path) -> list[tuple[int, int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        m = ID_ROW.match(line)
        assert m, f"bad id row {line!r}"
        category, frac, wnid, number = m.groups()
        assert wnid == f"n{int(category):08d}" and int(frac) == int(number)
        rows.append((int(category), int(number), f"{wnid}_{number}"))
    return rows


def test_catalogue_wnids_are_imagenet21k_synsets():
    from fmri2image.imagenet import lemmas

    assert len({(c.wnid) for c in CATALOGUE}) == len(CATALOGUE)
    for cat in CATALOGUE:
        assert lemmas(cat.wnid), f"{cat.wnid} is not an ImageNet-21k synset"
    # Every photo ships with the installed scikit-image / scikit-learn wheels.
    assert len(available_categories()) == len(CATALOGUE)
    assert sum(ROI_FRACTIONS.values()) == pytest.approx(1.0)


def test_layout_and_id_files(demo):
    root = demo.root
    assert sorted(p.name for p in root.iterdir()) == [
        "Subject1.h5",
        "Subject2.h5",
        "demo_dataset.json",
        "imageID_test.csv",
        "imageID_training.csv",
        "test",
        "training",
    ]
    train = _read_ids(root / "imageID_training.csv")
    test = _read_ids(root / "imageID_test.csv")
    assert len(train) == demo.n_train_images == 10 * 8
    assert len(test) == demo.n_test_images == 6
    assert train == sorted(train) and test == sorted(test)  # sorted by stimulus id
    assert {f"{n}.JPEG" for *_, n in train} == {p.name for p in (root / "training").iterdir()}
    assert {f"{n}.JPEG" for *_, n in test} == {p.name for p in (root / "test").iterdir()}
    train_cats = {c for c, *_ in train}
    test_cats = {c for c, *_ in test}
    assert not train_cats & test_cats  # disjoint, as in GOD
    assert sorted(f"n{c:08d}" for c in train_cats) == list(demo.train_wnids)
    assert sorted(f"n{c:08d}" for c in test_cats) == list(demo.test_wnids)
    counts = np.unique([c for c, *_ in train], return_counts=True)[1]
    assert (counts == 8).all()
    # Categories cut from the same photo stay on one side of the split.
    photo = {c.wnid: c.file for c in CATALOGUE}
    assert not {photo[w] for w in demo.train_wnids} & {photo[w] for w in demo.test_wnids}

    from PIL import Image

    with Image.open(next((root / "test").iterdir())) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) == 256


def test_loads_in_bdpy_with_god_keys(demo):
    bdpy = pytest.importorskip("bdpy")
    bd = bdpy.BData(str(demo.subject_files[0]))
    keys = set(bd.metadata.key)
    expected = {"VoxelData", "DataType", "Run", "Block", "stimulus_id", "image_index"}
    expected |= {"category_index", "voxel_x", "voxel_y", "voxel_z", *ROI_KEYS}
    assert expected <= keys

    sizes = {k: bd.select(k).shape[1] for k in ROI_KEYS}
    assert sizes == demo.roi_sizes
    assert sizes["ROI_VC"] == demo.n_voxels == 500
    assert sizes["ROI_LVC"] == sum(sizes[f"ROI_V{i}"] for i in (1, 2, 3))
    assert sizes["ROI_HVC"] == sizes["ROI_LOC"] + sizes["ROI_FFA"] + sizes["ROI_PPA"]
    assert bd.select("ROI_V1 + ROI_V2 + ROI_V3").shape[1] == sizes["ROI_LVC"]

    dt = bd.select("DataType").ravel()
    assert [(dt == k).sum() for k in (1, 2, 3)] == [80, 6 * 5, 6 * 2]
    assert demo.n_samples == {"training": 80, "test": 30, "imagery": 12, "total": 122}

    xyz = np.stack([bd.get_metadata(f"voxel_{a}", where="VoxelData") for a in "xyz"], 1)
    assert xyz.shape == (500, 3) and len(np.unique(xyz, axis=0)) == 500


def test_sample_labels_follow_god_conventions(demo):
    from fmri2image.data.bdata import read_bdata
    from fmri2image.data.ids import stimulus_id_keys

    bd = read_bdata(demo.subject_files[0])
    dt = bd.get("DataType").astype(int)
    run, block = bd.get("Run").astype(int), bd.get("Block").astype(int)
    sid, img_idx, cat_idx = bd.get("stimulus_id"), bd.get("image_index"), bd.get("category_index")
    train = _read_ids(demo.training_id_file)
    test = _read_ids(demo.test_id_file)
    train_keys = [c * 1_000_000 + n for c, n, _ in train]
    test_keys = [c * 1_000_000 + n for c, n, _ in test]

    # Training: every image once; image_index is its 1-based row in the id file.
    k = stimulus_id_keys(sid[dt == 1])
    assert sorted(k) == train_keys
    assert (np.array(train_keys)[img_idx[dt == 1].astype(int) - 1] == k).all()
    # Test: every image n_test_repeats times, once per run.
    k = stimulus_id_keys(sid[dt == 2])
    uniq, reps = np.unique(k, return_counts=True)
    assert list(uniq) == test_keys and (reps == 5).all()
    for r in np.unique(run[dt == 2]):
        assert sorted(k[run[dt == 2] == r]) == test_keys
    assert (np.array(test_keys)[img_idx[dt == 2].astype(int) - 1] == k).all()
    # Imagery: category ids only (integer part), no image index.
    k = stimulus_id_keys(sid[dt == 3])
    assert (k % 1_000_000 == 0).all()
    assert set(k // 1_000_000) == {c for c, *_ in test}
    assert np.isnan(img_idx[dt == 3]).all()
    # category_index: 1-based in the sorted category list of the split.
    for t, wnids in ((1, demo.train_wnids), (2, demo.test_wnids), (3, demo.test_wnids)):
        cats = stimulus_id_keys(sid[dt == t]) // 1_000_000
        assert (
            np.array([int(w[1:]) for w in wnids])[cat_idx[dt == t].astype(int) - 1] == cats
        ).all()
    # Runs: one data type each, numbered uniquely; blocks 1..n within a run.
    for r in np.unique(run):
        m = run == r
        assert len(np.unique(dt[m])) == 1
        assert sorted(block[m]) == list(range(1, m.sum() + 1))


def test_fmri2image_reader_matches_bdpy(demo):
    bdpy = pytest.importorskip("bdpy")
    from fmri2image.data import load_god_subject, load_stimulus_set

    subj = load_god_subject(demo.root, 2, roi="ROI_HVC")
    ref = bdpy.BData(str(demo.root / "Subject2.h5"))
    np.testing.assert_allclose(subj.voxels, ref.select("ROI_HVC"), rtol=1e-6)
    assert subj.n_voxels == demo.roi_sizes["ROI_HVC"]
    for split, n in (("training", 80), ("test", 6)):
        stim = load_stimulus_set(demo.root, split)
        assert len(stim) == n and not stim.missing
        assert all(p is not None and p.is_file() for p in stim.paths)
    # Subjects share stimuli and design but have their own voxel model and noise.
    s1 = load_god_subject(demo.root, 1, roi="ROI_HVC")
    np.testing.assert_array_equal(s1.stimulus_ids, subj.stimulus_ids)
    assert not np.allclose(s1.voxels, subj.voxels)


def _zscore_by_run(x: np.ndarray, runs: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64).copy()
    for r in np.unique(runs):
        m = runs == r
        x[m] = (x[m] - x[m].mean(0)) / x[m].std(0)
    return x


def _pairwise_identification(pred: np.ndarray, true: np.ndarray, mean: np.ndarray) -> float:
    n = len(pred)
    r = np.corrcoef(pred - mean, true - mean)[:n, n:]
    return float(np.mean([(r[i, i] > np.delete(r[i], i)).mean() for i in range(n)]))


@pytest.mark.slow
def test_hvc_signal_decodes_features_of_unseen_test_images(demo, encoder):
    """Ridge from training HVC voxels to EfficientNet features identifies held-out test
    images (whose categories are absent from training); shuffled training labels do not."""
    from sklearn.linear_model import Ridge

    from fmri2image.data import load_god_subject, load_stimulus_set
    from fmri2image.features import embed_images

    subj = load_god_subject(demo.root, 1, roi="ROI_HVC")
    x = _zscore_by_run(subj.voxels, subj.run_groups)
    train_set = load_stimulus_set(demo.root, "training")
    test_set = load_stimulus_set(demo.root, "test")
    tr, te = subj.mask(1), subj.mask(2)
    f_train = embed_images(encoder, train_set.paths, progress=False).astype(np.float64)
    f_test = embed_images(encoder, test_set.paths, progress=False).astype(np.float64)
    y_train = f_train[train_set.index_of(subj.stimulus_ids[tr])]
    # Average the repeated test trials per image, as in the GOD analyses.
    te_rows = test_set.index_of(subj.stimulus_ids[te])
    x_test = np.stack([x[te][te_rows == i].mean(0) for i in range(len(test_set))])

    mean = y_train.mean(0)
    model = Ridge(alpha=10.0).fit(x[tr], y_train)
    acc = _pairwise_identification(model.predict(x_test), f_test, mean)
    rng = np.random.default_rng(0)
    shuffled = [
        _pairwise_identification(
            Ridge(alpha=10.0).fit(x[tr], y_train[rng.permutation(len(y_train))]).predict(x_test),
            f_test,
            mean,
        )
        for _ in range(20)
    ]
    assert acc >= 0.8, acc
    assert 0.4 <= np.mean(shuffled) <= 0.6, shuffled


def test_imagery_carries_category_signal_in_hvc_not_v1(demo):
    """Imagery drives the high-level ROIs only (see the encoding model)."""
    from fmri2image.data import load_god_subject

    def same_category_correlation(subject: int, roi: str) -> float:
        subj = load_god_subject(demo.root, subject, roi=roi)
        x = _zscore_by_run(subj.voxels, subj.run_groups)
        cats = subj.categories
        test_cats = np.unique(cats[subj.mask(2)])
        perception = np.stack([x[subj.mask(2) & (cats == c)].mean(0) for c in test_cats])
        imagery = np.stack([x[subj.mask(3) & (cats == c)].mean(0) for c in test_cats])
        n = len(test_cats)
        return float(np.corrcoef(imagery, perception)[:n, n:].diagonal().mean())

    for subject in (1, 2):
        assert same_category_correlation(subject, "ROI_HVC") > 0.3
        # Pure noise: mean of 6 correlations over 100 voxels, standard error ~0.04.
        assert abs(same_category_correlation(subject, "ROI_V1")) < 0.2


def test_same_seed_same_bytes_other_seed_differs(tmp_path, encoder):
    a = write_demo_dataset(tmp_path / "a", seed=3, encoder=encoder, **SMALL)
    b = write_demo_dataset(tmp_path / "b", seed=3, encoder=encoder, **SMALL)
    c = write_demo_dataset(tmp_path / "c", seed=4, encoder=encoder, **SMALL)
    assert a.n_samples == {"training": 4, "test": 4, "imagery": 2, "total": 10}

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".h5"
        }

    def arrays(path: Path) -> dict[str, np.ndarray]:
        with h5py.File(path, "r") as fh:
            return {k: fh[k][()] for k in ("dataset", "metadata/key", "metadata/value")}

    assert files(a.root) == files(b.root)
    arr_a, arr_b = arrays(a.subject_files[0]), arrays(b.subject_files[0])
    for key in arr_a:
        np.testing.assert_array_equal(arr_a[key], arr_b[key])
    assert files(a.root) != files(c.root)
    assert not np.array_equal(arr_a["dataset"], arrays(c.subject_files[0])["dataset"])


def test_too_many_categories_is_explained(tmp_path):
    with pytest.raises(ConfigError, match="photos installed"):
        write_demo_dataset(tmp_path / "x", n_train_categories=len(CATALOGUE), progress=False)
    with pytest.raises(ConfigError, match="test categories"):
        write_demo_dataset(tmp_path / "x", n_test_categories=len(CATALOGUE), progress=False)
    with pytest.raises(ConfigError, match="snr"):
        write_demo_dataset(tmp_path / "x", snr=0, progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_writes_refuses_non_empty_and_forces(tmp_path, capsys):
    from fmri2image.cli.main import main

    out = tmp_path / "demo"
    small = ["--n-train-categories", "2", "--images-per-category", "1"]
    small += ["--n-test-categories", "2", "--n-test-repeats", "1", "--n-voxels", "30"]
    assert main(["-q", "make-demo-data", str(out), *small]) == 0
    printed = capsys.readouterr().out
    assert "Subject1.h5" in printed and "SNR 0.5" in printed and "took" in printed
    (out / "notes.txt").write_text("mine")

    assert main(["-q", "make-demo-data", str(out), *small, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err

    old = sorted(p.name for p in (out / "training").iterdir())
    assert main(["-q", "make-demo-data", str(out), *small, "--seed", "1", "--force"]) == 0
    new = sorted(p.name for p in (out / "training").iterdir())
    assert new != old and len(new) == 2  # stale images of the first run are gone
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the demo's stay
