"""Feature-store integrity: checksums, input identity, manifest validation, damaged files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from _fakes import TOY_SPEC as SPEC
from _fakes import TinyConvEncoder, shard_bytes, write_images

from fmri2image._io import file_sha256
from fmri2image._manifest import manifest_digest
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.features import shards as shards_mod
from fmri2image.features.databases import ImageDatabase
from fmri2image.features.shards import FeatureStoreWriter, open_feature_store

KW = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
LOGGER = "fmri2image.features.shards"


def _extract(paths, out, **kw):
    from fmri2image.features.extract import extract_features

    enc = TinyConvEncoder()
    res = extract_features(paths, [enc], out, **{**KW, **kw})
    return res, enc


def _rewrite_manifest(store: Path, edit, *, fix_checksum: bool = True) -> None:
    mpath = store / "manifest.json"
    m = json.loads(mpath.read_text())
    edit(m)
    if fix_checksum:
        m["manifest_sha256"] = manifest_digest(m)
    mpath.write_text(json.dumps(m))


def _toy_store(tmp_path: Path, n: int = 7, shard_size: int = 3) -> Path:
    db = ImageDatabase(paths=tuple(f"/nowhere/img{i}.jpg" for i in range(n)), wnids=("",) * n)
    w = FeatureStoreWriter.create(
        tmp_path / "s", database=db, spec=SPEC, config={}, shard_size=shard_size
    )
    for k in w.pending():
        start, stop = w.shard_range(k)
        w.write_shard(k, np.ones((stop - start, 3)) * k, [])
    assert w.finalize()
    return tmp_path / "s"


# -- 1. shard checksums --------------------------------------------------------------
def test_checksum_is_recorded_while_writing_without_rereading(tmp_path, monkeypatch):
    db = ImageDatabase(paths=("/nowhere/a.jpg", "/nowhere/b.jpg"), wnids=("", ""))
    w = FeatureStoreWriter.create(tmp_path / "s", database=db, spec=SPEC, config={}, shard_size=2)

    def no_reread(path, *a, **k):
        raise AssertionError(f"write_shard re-read {path}")

    monkeypatch.setattr(shards_mod, "file_sha256", no_reread)
    w.write_shard(0, np.arange(6, dtype=np.float32).reshape(2, 3), [])
    monkeypatch.undo()
    entry = w.manifest["shards"][0]
    f = tmp_path / "s" / "shard-00000.npy"
    assert entry["sha256"] == file_sha256(f) and entry["bytes"] == f.stat().st_size
    np.testing.assert_array_equal(np.load(f), np.arange(6).reshape(2, 3))


def _flip_values_same_size(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    f.write_bytes(bytes(data))


def test_changed_shard_of_same_size_is_recomputed_on_resume(tmp_path, caplog):
    paths = write_images(tmp_path / "imgs", 12)
    _extract(paths, tmp_path / "out")
    store = tmp_path / "out" / "tiny-a"
    ref = shard_bytes(store)
    f = store / "shard-00001.npy"
    size = f.stat().st_size
    _flip_values_same_size(f)
    assert f.stat().st_size == size
    # Opening checks sizes only by default; verify=True hashes and catches it.
    open_feature_store(store)
    with pytest.raises(DataFormatError, match=r"shard-00001.npy does not match its SHA-256"):
        open_feature_store(store, verify=True)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        res, enc = _extract(paths, tmp_path / "out")
    assert res.shards_written == 1 and res.shards_reused == 2 and enc.calls == [4]
    assert "shard-00001.npy does not match its SHA-256" in caplog.text
    assert shard_bytes(store) == ref
    open_feature_store(store, verify=True)
    # A complete store with nothing to do is still verified ("nothing to do" is earned).
    _flip_values_same_size(store / "shard-00002.npy")
    res, enc = _extract(paths, tmp_path / "out")
    assert res.shards_written == 1 and enc.calls == [4] and shard_bytes(store) == ref


# -- 2. input identity ---------------------------------------------------------------
def test_resume_on_another_folder_with_the_same_names_is_refused(tmp_path):
    a = write_images(tmp_path / "a" / "imgs", 8, seed=0)
    b = write_images(tmp_path / "b" / "imgs", 8, seed=1)
    assert [p.name for p in a] == [p.name for p in b]
    from fmri2image.features.extract import extract_features

    enc = TinyConvEncoder()

    def crash(batch):
        if enc.calls:
            raise RuntimeError("killed")

    enc.on_embed = crash
    with pytest.raises(RuntimeError, match="killed"):
        extract_features(a, [enc], tmp_path / "out", **KW)
    with pytest.raises(ConfigError) as info:
        _extract(b, tmp_path / "out")
    msg = str(info.value)
    assert str((tmp_path / "a" / "imgs").resolve()) in msg
    assert str((tmp_path / "b" / "imgs").resolve()) in msg and "--overwrite" in msg
    _extract(b, tmp_path / "out", overwrite=True)
    _extract(b, tmp_path / "ref")
    assert shard_bytes(tmp_path / "out" / "tiny-a") == shard_bytes(tmp_path / "ref" / "tiny-a")


def test_changed_image_recomputes_its_shard(tmp_path, caplog):
    paths = write_images(tmp_path / "imgs", 12)
    _extract(paths, tmp_path / "out")
    # Replace image 5 (shard 1) with other pixels.
    other = write_images(tmp_path / "other", 6, seed=7)
    paths[5].write_bytes(other[5].read_bytes())
    os.utime(paths[5], ns=(1, 1))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        res, enc = _extract(paths, tmp_path / "out")
    assert res.shards_written == 1 and enc.calls == [4]
    assert paths[5].name in caplog.text and "recomputing shards [1]" in caplog.text
    _extract(paths, tmp_path / "ref")
    assert shard_bytes(tmp_path / "out" / "tiny-a") == shard_bytes(tmp_path / "ref" / "tiny-a")
    res, enc = _extract(paths, tmp_path / "out")
    assert res.shards_written == 0 and enc.calls == []


# -- 3. manifest validation ----------------------------------------------------------
def _dup_shard(m):
    m["shards"].append(dict(m["shards"][0]))


def _shift_start(m):
    m["shards"][1]["start"] += 1


def _skip_outside(m):
    m["shards"][0]["skipped"] = [{"index": 5, "path": "x", "reason": "r"}]
    m["shards"][0]["rows"] -= 1


def _drop_shard_but_complete(m):
    m["shards"].pop(1)


def _bad_rows(m):
    m["shards"][2]["rows"] = 5


def _bad_n_shards(m):
    m["n_shards"] = 4


@pytest.mark.parametrize(
    "edit, what",
    [
        (_dup_shard, "listed twice"),
        (_shift_start, "covers 4..6, expected 3..6"),
        (_skip_outside, "skipped images outside"),
        (_drop_shard_but_complete, "marked complete but shards \\[1\\]"),
        (_bad_rows, "shard 2 has 5 rows"),
        (_bad_n_shards, "n_shards=4"),
    ],
)
def test_inconsistent_manifest_is_rejected_on_open_and_resume(tmp_path, edit, what):
    store = _toy_store(tmp_path)
    _rewrite_manifest(store, edit)
    for call in (
        lambda: open_feature_store(store, allow_incomplete=True),
        lambda: FeatureStoreWriter.create(
            store,
            database=ImageDatabase(paths=tuple(f"/nowhere/img{i}.jpg" for i in range(7)),
                                   wnids=("",) * 7),
            spec=SPEC,
            config={},
            shard_size=3,
        ),
    ):  # fmt: skip
        with pytest.raises(DataFormatError, match=what) as info:
            call()
        assert str(store) in str(info.value) and "--overwrite" in str(info.value)


def test_manifest_checksum_catches_edits(tmp_path):
    store = _toy_store(tmp_path)
    m = json.loads((store / "manifest.json").read_text())
    assert m["manifest_sha256"] == manifest_digest(m)
    _rewrite_manifest(store, lambda m: m.update(dim=4), fix_checksum=False)
    with pytest.raises(DataFormatError, match="does not match its own checksum"):
        open_feature_store(store)


def test_image_table_must_match_the_manifest(tmp_path):
    store = _toy_store(tmp_path)
    sizes = np.full(6, -1)
    digest = shards_mod._write_image_table(
        store / "images.parquet", ["a"] * 6, [""] * 6, sizes, sizes
    )
    with pytest.raises(DataFormatError, match=r"images.parquet does not match its checksum"):
        open_feature_store(store)
    _rewrite_manifest(store, lambda m: m["images"].update(table_sha256=digest))
    with pytest.raises(DataFormatError, match="has 6 rows, the manifest says 7"):
        open_feature_store(store)


# -- 4. truncated files ----------------------------------------------------------------
def _truncate(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def test_truncated_shard_is_a_data_format_error(tmp_path):
    store = _toy_store(tmp_path)
    opened = open_feature_store(store)
    _truncate(store / "shard-00001.npy")
    with pytest.raises(DataFormatError, match=r"shard-00001.npy has \d+ bytes.*--overwrite"):
        open_feature_store(store)
    # A store opened before the damage: np.load's mmap error becomes a DataFormatError.
    with pytest.raises(DataFormatError, match=r"shard-00001.npy cannot be read.*--overwrite"):
        opened.load()


def test_truncated_manifest_is_a_data_format_error(tmp_path):
    store = _toy_store(tmp_path)
    _truncate(store / "manifest.json")
    with pytest.raises(DataFormatError, match=r"manifest.json is not valid JSON.*--overwrite"):
        open_feature_store(store)
    db = ImageDatabase(paths=tuple(f"/nowhere/img{i}.jpg" for i in range(7)), wnids=("",) * 7)
    with pytest.raises(DataFormatError, match="not valid JSON"):
        FeatureStoreWriter.create(store, database=db, spec=SPEC, config={}, shard_size=3)
    w = FeatureStoreWriter.create(
        store, database=db, spec=SPEC, config={}, shard_size=3, overwrite=True
    )
    assert w.pending() == [0, 1, 2]


def test_truncated_image_table_is_a_data_format_error(tmp_path):
    store = _toy_store(tmp_path)
    opened = open_feature_store(store)
    _truncate(store / "images.parquet")
    with pytest.raises(DataFormatError, match=r"images.parquet does not match.*--overwrite"):
        open_feature_store(store)
    with pytest.raises(DataFormatError, match=r"images.parquet cannot be read.*--overwrite"):
        opened.wnids  # noqa: B018


# -- old manifests ----------------------------------------------------------------------
def _downgrade(m):
    m["format_version"] = 1
    m.pop("manifest_sha256", None)
    for key in ("root_resolved", "stats", "stats_hash", "table_sha256"):
        m["images"].pop(key, None)


def test_old_manifest_is_refused_on_open_and_recomputed_on_resume(tmp_path, caplog):
    paths = write_images(tmp_path / "imgs", 8)
    _extract(paths, tmp_path / "out")
    store = tmp_path / "out" / "tiny-a"
    ref = shard_bytes(store)
    _rewrite_manifest(store, _downgrade, fix_checksum=False)
    with pytest.raises(DataFormatError, match=r"older fmri2image.*--overwrite"):
        open_feature_store(store)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        res, enc = _extract(paths, tmp_path / "out")
    assert "cannot be verified" in caplog.text
    assert res.shards_written == 2 and res.shards_reused == 0 and enc.calls == [4, 4]
    assert shard_bytes(store) == ref
    open_feature_store(store, verify=True)


def test_parallel_hashing_matches_file_sha256(tmp_path):
    files = []
    for i in range(5):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(100_000 + i))
        files.append(f)
    files.append(tmp_path / "missing")
    assert shards_mod._hash_files(files) == [file_sha256(f) for f in files[:-1]] + [None]
