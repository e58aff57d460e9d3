"""Feature-store format: writer/reader round trip, memory mapping, damage and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fakes import TOY_SPEC as SPEC
from _fakes import TinyConvEncoder, shard_bytes, write_images

from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError
from fmri2image.features.databases import ImageDatabase
from fmri2image.features.shards import (
    FeatureStoreWriter,
    open_feature_store,
    store_dirname,
)


def toy_db(n: int) -> ImageDatabase:
    return ImageDatabase(
        paths=tuple(f"/data/img{i}.jpg" for i in range(n)),
        wnids=tuple("n01440764" if i % 2 else "n01443537" for i in range(n)),
        root=None,
    )


def test_writer_reader_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    db = toy_db(7)
    w = FeatureStoreWriter.create(
        tmp_path / "s",
        database=db,
        spec=SPEC,
        config={"batch_size": 2},
        shard_size=3,
        store_dtype="float16",
    )
    assert w.n_shards == 3 and w.pending() == [0, 1, 2]
    x = rng.standard_normal((7, 3)).astype(np.float32)
    # Shards may arrive in any order; image 4 is skipped.
    w.write_shard(2, x[6:7], [])
    w.write_shard(0, x[0:3], [])
    w.write_shard(1, x[[3, 5]], [(4, db.paths[4], "OSError: truncated")])
    assert w.finalize()
    store = open_feature_store(tmp_path / "s")
    assert store.n == 6 and store.dim == 3 and store.dtype == np.float16 and store.n_images == 7
    np.testing.assert_array_equal(store.image_index, [0, 1, 2, 3, 5, 6])
    assert store.wnids == tuple(db.wnids[i] for i in (0, 1, 2, 3, 5, 6))
    assert store.paths[4] == "/data/img5.jpg"
    assert store.skipped == [{"index": 4, "path": "/data/img4.jpg", "reason": "OSError: truncated"}]
    expect = x[[0, 1, 2, 3, 5, 6]].astype(np.float16)
    np.testing.assert_array_equal(store.load(dtype=None), expect)
    assert store.load().dtype == np.float32
    shards = list(store.iter_shards())
    assert [s.k for s in shards] == [0, 1, 2]
    assert isinstance(shards[1].features, np.memmap) and not shards[1].features.flags.writeable
    np.testing.assert_array_equal(shards[1].image_index, [3, 5])
    store.verify()
    assert store.database().paths == db.paths
    with pytest.raises(DataFormatError, match="expected"):
        w.write_shard(0, x[0:2], [])


def test_open_errors(tmp_path):
    with pytest.raises(MissingDataFileError, match="not a feature store"):
        open_feature_store(tmp_path)
    w = FeatureStoreWriter.create(
        tmp_path / "toy", database=toy_db(2), spec=SPEC, config={}, shard_size=2
    )
    with pytest.raises(MissingDataFileError, match="holds the stores toy"):
        open_feature_store(tmp_path)
    with pytest.raises(DataFormatError, match="incomplete"):
        open_feature_store(tmp_path / "toy")
    w.write_shard(0, np.zeros((2, 3)), [])
    w.finalize()
    m = json.loads((tmp_path / "toy" / "manifest.json").read_text())
    m["format_version"] = 99
    (tmp_path / "toy" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DataFormatError, match="upgrade"):
        open_feature_store(tmp_path / "toy")
    with pytest.raises(ConfigError, match="store_dtype"):
        FeatureStoreWriter.create(
            tmp_path / "x",
            database=toy_db(2),
            spec=SPEC,
            config={},
            shard_size=2,
            store_dtype="int8",
        )


def test_damaged_or_missing_shards_are_recomputed(tmp_path):
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 12)
    kw = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
    extract_features(paths, [TinyConvEncoder()], tmp_path / "out", **kw)
    store_dir = tmp_path / "out" / "tiny-a"
    ref = shard_bytes(store_dir)
    (store_dir / "shard-00001.npy").unlink()
    (store_dir / "shard-00002.npy").write_bytes(b"garbage")
    enc = TinyConvEncoder()
    res = extract_features(paths, [enc], tmp_path / "out", **kw)
    assert res.shards_written == 2 and enc.calls == [4, 4]
    assert shard_bytes(store_dir) == ref
    res["tiny-a"].verify()


def test_adding_an_encoder_later_only_runs_that_encoder(tmp_path):
    from fmri2image.features.extract import extract_features

    paths = write_images(tmp_path / "imgs", 6)
    kw = dict(batch_size=3, shard_size=3, num_workers=0, progress=False)
    extract_features(paths, [TinyConvEncoder("tiny-a")], tmp_path / "out", **kw)
    a, b = TinyConvEncoder("tiny-a"), TinyConvEncoder("tiny-b", seed=3)
    res = extract_features(paths, [a, b], tmp_path / "out", **kw)
    assert a.calls == [] and b.calls == [3, 3]
    assert res.shards_reused == 2 and res.shards_written == 2


def test_store_dirname():
    assert store_dirname("effnet-lite0") == "effnet-lite0"
    assert store_dirname("hf:openai/clip-vit-base-patch32") == "hf_openai_clip-vit-base-patch32"
    assert store_dirname("timm:resnet50.a1_in1k") == "timm_resnet50.a1_in1k"
