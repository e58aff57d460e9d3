"""Image databases from ImageNet-style folders, class-name resolution, prototype stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _fakes import TinyConvEncoder, write_images

from fmri2image.errors import ConfigError, DataFormatError, MissingImageError
from fmri2image.features.databases import (
    ImageDatabase,
    class_prototype_database,
    load_class_map,
    resolve_class_folders,
    scan_image_folder,
)

TENCH, GOLDFISH, SHARK = "n01440764", "n01443537", "n01484850"
CRANE_BIRD, CRANE_MACHINE = "n02012849", "n03126707"


def make_ilsvrc(root: Path) -> Path:
    """ILSVRC train layout (release root with train/<wnid>/*.JPEG) plus clutter."""
    train = root / "train"
    for k, wnid in enumerate([GOLDFISH, TENCH]):  # created out of order on purpose
        for p in write_images(train / wnid, 3, seed=k, prefix=wnid):
            p.rename(p.with_suffix(".JPEG"))
    (train / TENCH / "README.txt").write_text("not an image")
    (train / TENCH / ".hidden.JPEG").write_bytes(b"")
    (root / "val").mkdir()
    return root


def test_ilsvrc_layout_is_detected_and_ordered(tmp_path):
    root = make_ilsvrc(tmp_path / "ILSVRC")
    db = scan_image_folder(root, progress=False)
    assert db.layout == "wnid" and db.root == root / "train"
    assert db.wnids == (TENCH,) * 3 + (GOLDFISH,) * 3  # n01440764 < n01443537
    assert [Path(p).name for p in db.paths[:3]] == [f"{TENCH}_{i:03d}.JPEG" for i in range(3)]
    assert db.classes == (TENCH, GOLDFISH) and db.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in db.paths)
    assert db.relpaths[0] == f"{TENCH}/{TENCH}_000.JPEG"
    # Same answer when pointed at train/ directly, and the hash is location independent.
    assert scan_image_folder(root / "train", progress=False).hash == db.hash
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    assert scan_image_folder(moved, progress=False).hash == db.hash
    assert db.select([1, 0]).hash != db.hash and len(db.head(4)) == 4


def test_tiny_imagenet_layout(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    for wnid in (SHARK, TENCH):
        write_images(root / "train" / wnid / "images", 2, prefix=wnid)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("0 0 1 1\n")
    db = scan_image_folder(root, progress=False)
    assert db.layout == "wnid-images" and len(db) == 4
    assert db.wnids == (TENCH, TENCH, SHARK, SHARK)
    assert all("/images/" in p for p in db.paths)


def class_name_folder(root: Path, names) -> Path:
    for k, name in enumerate(names):
        write_images(root / name, 2, seed=k)
    return root


def test_class_name_layout_resolves_and_reports(tmp_path):
    root = class_name_folder(tmp_path / "imagenet-256", ["tench", "Goldfish", "great_white_shark"])
    db = scan_image_folder(root, progress=False)
    assert db.layout == "class-name"
    assert db.class_folders == {"Goldfish": GOLDFISH, "great_white_shark": SHARK, "tench": TENCH}
    assert db.wnids == (GOLDFISH,) * 2 + (SHARK,) * 2 + (TENCH,) * 2

    class_name_folder(root, ["crane", "notaclass"])
    with pytest.raises(DataFormatError) as err:
        scan_image_folder(root, progress=False)
    msg = str(err.value)
    assert "'crane' -> n02012849/n03126707" in msg and "'notaclass'" in msg and "--class-map" in msg
    with pytest.warns(UserWarning, match="ambiguous"):
        partial = scan_image_folder(root, unresolved="skip", progress=False)
    assert len(partial) == 6 and "crane" not in partial.class_folders

    cmap = tmp_path / "map.json"
    cmap.write_text(json.dumps({"crane": CRANE_MACHINE, "notaclass": "n03000134"}))
    full = scan_image_folder(root, class_map=cmap, progress=False)
    assert full.class_folders["crane"] == CRANE_MACHINE and len(full) == 10


def test_class_map_csv_and_validation(tmp_path):
    csv_path = tmp_path / "map.csv"
    csv_path.write_text(f"folder,wnid\ncrane,{CRANE_BIRD}\n\n maillot , n03710637\n")
    assert load_class_map(csv_path) == {"crane": CRANE_BIRD, "maillot": "n03710637"}
    res = resolve_class_folders(["crane", "tench", "drake"], load_class_map(csv_path))
    assert res.ok and res.mapping == {"crane": CRANE_BIRD, "tench": TENCH, "drake": "n01847000"}
    with pytest.raises(ConfigError, match="not a WordNet id"):
        resolve_class_folders(["crane"], {"crane": "bird"})
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DataFormatError, match="one JSON object"):
        load_class_map(bad)


def test_flat_folder_labels_from_god_file_names(tmp_path):
    folder = tmp_path / "stimuli"
    write_images(folder, 2, prefix="n01518878")
    write_images(folder, 1, prefix="ILSVRC2012_val")
    db = scan_image_folder(folder, progress=False)
    assert db.layout == "flat" and db.wnids == ("", "n01518878", "n01518878")
    assert db.labels.tolist() == [-1, 0, 0]


def test_from_paths_and_errors(tmp_path):
    paths = write_images(tmp_path / "a", 2, prefix="n01440764")
    db = ImageDatabase.from_paths(paths)
    assert db.wnids == (TENCH, TENCH) and db.root == tmp_path / "a"
    assert db.relpaths == ("n01440764_000.jpg", "n01440764_001.jpg")
    with pytest.raises(ConfigError, match="one WordNet id per image"):
        ImageDatabase.from_paths(paths, wnids=[TENCH])
    with pytest.raises(MissingImageError):
        scan_image_folder(tmp_path / "nope")
    (tmp_path / "empty" / TENCH).mkdir(parents=True)
    with pytest.raises(MissingImageError, match="No image files"):
        scan_image_folder(tmp_path / "empty", progress=False)


def test_class_prototype_store_reads_like_extracted_features(tmp_path):
    from fmri2image.features.shards import open_feature_store

    enc = TinyConvEncoder()
    store = class_prototype_database(enc, tmp_path)
    assert store.path == tmp_path / "tiny-a.prototypes" and store.kind == "prototypes"
    weights, wnids = enc.class_prototypes()
    assert store.n == 5 and store.wnids == tuple(wnids)
    np.testing.assert_array_equal(store.load(), weights)
    again = open_feature_store(store.path)
    shards = list(again.iter_shards())
    assert len(shards) == 1 and shards[0].features.shape == (5, 8)

    class NoHead(TinyConvEncoder):
        def class_prototypes(self):
            return None

    with pytest.raises(ConfigError, match="no classification head"):
        class_prototype_database(NoHead(), tmp_path)
