"""The demo dataset: GOD layout, bdpy compatibility, database, manifest, determinism."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from fmri2image.demo import (
    CATALOGUE,
    ROI_FRACTIONS,
    DemoDatasetInfo,
    available_categories,
    read_demo_manifest,
    write_demo_dataset,
)
from fmri2image.errors import ConfigError, MissingDataFileError

ROI_KEYS = [f"ROI_{r}" for r in ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")]
SMALL = dict(
    n_train_categories=2,
    images_per_category=2,
    n_test_categories=2,
    n_test_repeats=2,
    n_imagery_repeats=1,
    n_voxels=42,
    database_images_per_category=1,
    photo_roots={},
    progress=False,
)
ID_ROW = re.compile(r"^(\d+)\.(\d{6}),(n\d{8})_(\d+)\.JPEG$")


def _read_ids(path: Path) -> list[tuple[int, int, str]]:
    rows = []
    for line in path.read_text().splitlines():
        m = ID_ROW.match(line)
        assert m, f"bad id row {line!r}"
        category, frac, wnid, number = m.groups()
        assert wnid == f"n{int(category):08d}" and int(frac) == int(number)
        rows.append((int(category), int(number), f"{wnid}_{number}"))
    return rows


def test_layout_and_id_files(tiny_demo):
    root = tiny_demo.root
    assert sorted(p.name for p in root.iterdir()) == [
        "Subject1.h5",
        "Subject2.h5",
        "database",
        "demo_dataset.json",
        "imageID_test.csv",
        "imageID_training.csv",
        "test",
        "training",
    ]
    train = _read_ids(root / "imageID_training.csv")
    test = _read_ids(root / "imageID_test.csv")
    assert len(train) == tiny_demo.n_train_images == 13 * 8
    assert len(test) == tiny_demo.n_test_images == 6
    assert train == sorted(train) and test == sorted(test)  # sorted by stimulus id
    assert {f"{n}.JPEG" for *_, n in train} == {p.name for p in (root / "training").iterdir()}
    assert {f"{n}.JPEG" for *_, n in test} == {p.name for p in (root / "test").iterdir()}
    train_cats = {c for c, *_ in train}
    test_cats = {c for c, *_ in test}
    assert not train_cats & test_cats  # disjoint, as in GOD
    assert sorted(f"n{c:08d}" for c in train_cats) == list(tiny_demo.train_wnids)
    assert sorted(f"n{c:08d}" for c in test_cats) == list(tiny_demo.test_wnids)
    counts = np.unique([c for c, *_ in train], return_counts=True)[1]
    assert (counts == 8).all()

    from PIL import Image

    with Image.open(next((root / "test").iterdir())) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and max(im.size) == 256


def test_no_photo_is_seen_in_training_and_test(tiny_demo, full_demo):
    for info in (tiny_demo, full_demo):
        m = read_demo_manifest(info.root)
        photos = {"training": set(), "test": set()}
        for c in m["categories"]:
            if c["split"] in photos:
                photos[c["split"]] |= {r["source"] for r in c["regions"]}
        assert photos["training"] and photos["test"]
        assert not photos["training"] & photos["test"]


def test_loads_in_bdpy_with_god_keys(tiny_demo):
    bdpy = pytest.importorskip("bdpy")
    bd = bdpy.BData(str(tiny_demo.subject_files[0]))
    keys = set(bd.metadata.key)
    expected = {"VoxelData", "DataType", "Run", "Block", "stimulus_id", "image_index"}
    expected |= {"category_index", "voxel_x", "voxel_y", "voxel_z", *ROI_KEYS}
    assert expected <= keys

    sizes = {k: bd.select(k).shape[1] for k in ROI_KEYS}
    assert sizes == tiny_demo.roi_sizes
    assert sizes["ROI_VC"] == tiny_demo.n_voxels == 1500
    assert sizes["ROI_LVC"] == sum(sizes[f"ROI_V{i}"] for i in (1, 2, 3))
    assert sizes["ROI_HVC"] == sizes["ROI_LOC"] + sizes["ROI_FFA"] + sizes["ROI_PPA"]
    assert bd.select("ROI_V1 + ROI_V2 + ROI_V3").shape[1] == sizes["ROI_LVC"]
    assert sum(ROI_FRACTIONS.values()) == pytest.approx(1.0)

    dt = bd.select("DataType").ravel()
    assert [(dt == k).sum() for k in (1, 2, 3)] == [104, 6 * 5, 6 * 2]
    assert tiny_demo.n_samples == {"training": 104, "test": 30, "imagery": 12, "total": 146}

    xyz = np.stack([bd.get_metadata(f"voxel_{a}", where="VoxelData") for a in "xyz"], 1)
    assert xyz.shape == (1500, 3) and len(np.unique(xyz, axis=0)) == 1500


def test_sample_labels_follow_god_conventions(tiny_demo):
    from fmri2image.data.bdata import read_bdata
    from fmri2image.data.ids import stimulus_id_keys

    bd = read_bdata(tiny_demo.subject_files[0])
    dt = bd.get("DataType").astype(int)
    run, block = bd.get("Run").astype(int), bd.get("Block").astype(int)
    sid, img_idx, cat_idx = bd.get("stimulus_id"), bd.get("image_index"), bd.get("category_index")
    train = _read_ids(tiny_demo.training_id_file)
    test = _read_ids(tiny_demo.test_id_file)
    train_keys = [c * 1_000_000 + n for c, n, _ in train]
    test_keys = [c * 1_000_000 + n for c, n, _ in test]

    # Training: every image once; image_index is its 1-based row in the id file.
    k = stimulus_id_keys(sid[dt == 1])
    assert sorted(k) == train_keys
    assert (np.array(train_keys)[img_idx[dt == 1].astype(int) - 1] == k).all()
    # Training run r shows one image of every category.
    for r in np.unique(run[dt == 1]):
        cats = stimulus_id_keys(sid[(dt == 1) & (run == r)]) // 1_000_000
        assert sorted(cats) == sorted({c for c, *_ in train})
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
    for t, wnids in (
        (1, tiny_demo.train_wnids),
        (2, tiny_demo.test_wnids),
        (3, tiny_demo.test_wnids),
    ):
        cats = stimulus_id_keys(sid[dt == t]) // 1_000_000
        assert (
            np.array([int(w[1:]) for w in wnids])[cat_idx[dt == t].astype(int) - 1] == cats
        ).all()
    # Runs: one data type each, numbered uniquely; blocks 1..n within a run.
    for r in np.unique(run):
        m = run == r
        assert len(np.unique(dt[m])) == 1
        assert sorted(block[m]) == list(range(1, m.sum() + 1))


def test_fmri2image_reader_matches_bdpy(tiny_demo):
    bdpy = pytest.importorskip("bdpy")
    from fmri2image.data import load_god_subject, load_stimulus_set

    subj = load_god_subject(tiny_demo.root, 2, roi="ROI_HVC")
    ref = bdpy.BData(str(tiny_demo.root / "Subject2.h5"))
    np.testing.assert_allclose(subj.voxels, ref.select("ROI_HVC"), rtol=1e-6)
    assert subj.n_voxels == tiny_demo.roi_sizes["ROI_HVC"]
    for split, n in (("training", 104), ("test", 6)):
        stim = load_stimulus_set(tiny_demo.root, split)
        assert len(stim) == n and not stim.missing
        assert all(p is not None and p.is_file() for p in stim.paths)
    # Subjects share stimuli and design but have their own voxel model and noise.
    s1 = load_god_subject(tiny_demo.root, 1, roi="ROI_HVC")
    np.testing.assert_array_equal(s1.stimulus_ids, subj.stimulus_ids)
    assert not np.allclose(s1.voxels, subj.voxels)


def test_database_is_an_imagenet_style_folder(tiny_demo, full_demo):
    from fmri2image.features import scan_image_folder

    for info in (tiny_demo, full_demo):
        db = scan_image_folder(info.database_dir, layout="wnid", progress=False)
        every = {*info.train_wnids, *info.test_wnids, *info.distractor_wnids}
        assert set(db.classes) == every
        assert len(db) == info.n_database_images == 4 * len(every)
        assert info.n_database_classes == len(every)
        assert scan_image_folder(info.database_dir, progress=False).layout == "wnid"  # auto
        # Other crops than the stimuli: no name and no pixel content in common.
        stimuli = {p.name: p.read_bytes() for p in info.root.glob("t*/*.JPEG")}
        for path in db.paths:
            assert Path(path).name not in stimuli
        assert not {Path(p).read_bytes() for p in db.paths} & set(stimuli.values())
    assert full_demo.distractor_wnids == ("n12822115",)  # forget-me-not: LadyBird.jpg
    assert len(available_categories({})) == tiny_demo.n_database_classes == 19
    assert full_demo.n_database_classes == 65


def test_category_counts_with_and_without_debian_photos(tiny_demo, full_demo):
    assert (len(tiny_demo.train_wnids), len(tiny_demo.test_wnids)) == (13, 6)
    assert (len(full_demo.train_wnids), len(full_demo.test_wnids)) == (54, 10)
    assert full_demo.n_train_images == 54 * 8 and full_demo.n_samples["test"] == 10 * 5
    assert all(s.startswith(("skimage:", "sklearn:")) for s in tiny_demo.photo_sources)
    assert len(full_demo.photo_sources) == len({r.source for c in CATALOGUE for r in c.regions})
    m = read_demo_manifest(full_demo.root)
    packages = {p["package"] for p in m["photos"]}
    assert packages == {"skimage", "sklearn", "darknet", "opencv-doc", "mate-backgrounds"}
    assert all(len(p["sha256"]) == 64 and Path(p["path"]).is_file() for p in m["photos"])


def test_manifest_round_trip_and_matching(tiny_demo, tiny_encoder):
    m = read_demo_manifest(tiny_demo.root)
    assert m["format"] == "fmri2image-demo-dataset"
    assert m["parameters"] == tiny_demo.parameters
    assert m["parameters"]["n_test_categories"] == 6  # default resolved on this machine
    loaded = DemoDatasetInfo.load(tiny_demo.root)
    assert loaded == tiny_demo
    same = dict(n_subjects=2, encoder=tiny_encoder, photo_roots={})
    assert loaded.matches(**same)
    assert loaded.matches(**same, n_test_categories=6, n_voxels=1500)  # the defaults
    assert loaded.differences(**(same | {"seed": 1})) == {"seed": (0, 1)}
    diff = loaded.differences(n_subjects=2, encoder=tiny_encoder)  # all photos instead
    if len(available_categories()) > 19:
        assert {"n_train_categories", "test_wnids", "photo_sources"} <= set(diff)
    assert "encoder" in loaded.differences(n_subjects=2, photo_roots={})  # effnet-lite0
    with pytest.raises(MissingDataFileError, match="make-demo-data"):
        DemoDatasetInfo.load(tiny_demo.training_dir)
    text = tiny_demo.summary()
    assert "13 training, 6 test" in text and "76 images of 19 classes" in text


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_encoder):
    a = write_demo_dataset(tmp_path / "a", seed=3, encoder=tiny_encoder, **SMALL)
    b = write_demo_dataset(tmp_path / "b", seed=3, encoder=tiny_encoder, **SMALL)
    c = write_demo_dataset(tmp_path / "c", seed=4, encoder=tiny_encoder, **SMALL)
    assert a.n_samples == {"training": 4, "test": 4, "imagery": 2, "total": 10}
    assert a.n_database_images == 19

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix not in (".h5", ".json")
        }

    def arrays(path: Path) -> dict[str, np.ndarray]:
        with h5py.File(path, "r") as fh:
            return {k: fh[k][()] for k in ("dataset", "metadata/key", "metadata/value")}

    assert files(a.root) == files(b.root)
    arr_a, arr_b = arrays(a.subject_files[0]), arrays(b.subject_files[0])
    for key in arr_a:
        np.testing.assert_array_equal(arr_a[key], arr_b[key])
    ma, mb = read_demo_manifest(a.root), read_demo_manifest(b.root)
    for key in ("parameters", "categories", "photos", "roi_sizes", "database"):
        assert ma[key] == mb[key]
    assert files(a.root) != files(c.root)
    assert not np.array_equal(arr_a["dataset"], arrays(c.subject_files[0])["dataset"])


def test_a_categorys_images_do_not_depend_on_the_other_categories(tiny_demo, full_demo):
    """Each category draws from its own stream: adding photos changes nothing else."""

    def regions(info):
        m = read_demo_manifest(info.root)
        return {c["wnid"]: (c["split"], c["regions"]) for c in m["categories"]}

    pip, full = regions(tiny_demo), regions(full_demo)
    same = {w for w in pip if w in full and pip[w] == full[w]}
    assert len(same) == 16  # all but grass (one more photo), space rocket and motorcycle
    for split in ("test", "training"):
        a = {p.name: p.read_bytes() for p in (tiny_demo.root / split).iterdir()}
        b = {p.name: p.read_bytes() for p in (full_demo.root / split).iterdir()}
        mine = {n for n in a if n.split("_")[0] in same}
        assert mine and all(a[n] == b[n] for n in mine)


def test_bad_parameters_raise_config_errors_in_flag_words(tmp_path):
    cases = {
        "--n-test-categories": dict(n_test_categories=19),
        "--n-train-categories": dict(n_train_categories=14),
        "--snr": dict(snr=0),
        "--n-voxels": dict(n_voxels=5),
        "--database-images": dict(database_images_per_category=-1),
        "--images-per-category": dict(images_per_category=0),
        "--subjects": dict(n_subjects=1.5),
        "--drift": dict(drift=float("nan")),
    }
    for flag, kwargs in cases.items():
        with pytest.raises(ConfigError, match=re.escape(flag)):
            write_demo_dataset(tmp_path / "x", photo_roots={}, progress=False, **kwargs)
    assert not (tmp_path / "x").exists()  # validated before anything is written


def test_overwrite_replaces_only_the_demo_files(tmp_path, tiny_encoder):
    out = tmp_path / "demo"
    write_demo_dataset(out, seed=1, encoder=tiny_encoder, **SMALL)
    old = sorted(p.name for p in (out / "training").iterdir())
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        write_demo_dataset(out, encoder=tiny_encoder, **SMALL)
    small = SMALL | {"database_images_per_category": 0}
    second = write_demo_dataset(out, seed=2, encoder=tiny_encoder, overwrite=True, **small)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "database").exists() and second.database_dir is None
    names = sorted(p.name for p in (out / "training").iterdir())
    assert len(names) == 4 and names != old  # stale images of the first write are gone
