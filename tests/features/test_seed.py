"""Seeding a store from an earlier extraction: only shards with new or changed images
are computed; copied rows are the earlier store's, verified before use."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from _fakes import TinyConvEncoder, write_images

from fmri2image.features.extract import extract_features
from fmri2image.features.shards import open_feature_store

KW = dict(batch_size=4, shard_size=4, num_workers=0, progress=False)
LOGGER = "fmri2image.features.shards"


def _extract(paths, out, **kw):
    enc = TinyConvEncoder()
    return extract_features(paths, [enc], out, **{**KW, **kw}), enc


def _rows_by_path(store) -> dict[str, np.ndarray]:
    feats = store.load()
    return {p: feats[r] for r, p in enumerate(store.paths)}


@pytest.fixture
def grown(tmp_path):
    """12 images extracted into ``old``; the list with a 13th inserted at position 5."""
    paths = write_images(tmp_path / "imgs", 13)
    old_list = [p for i, p in enumerate(paths) if i != 5]
    res, _ = _extract(old_list, tmp_path / "old")
    assert res.shards_written == 3
    return paths, tmp_path / "old"


def test_only_the_shard_with_the_new_image_is_computed(grown, tmp_path):
    paths, old = grown
    res, enc = _extract(paths, tmp_path / "new", seed_from=old)
    # New shards: [0-3] old 0-3; [4-7] old 4, the new image, old 5-6; [8-11] old
    # 7-10; [12] old 11.  Only the second holds an image the old store lacks.
    assert enc.calls == [4] and res.n_processed == 4
    assert res.shards_seeded == 3 and res.shards_written == 4
    new_store = open_feature_store(tmp_path / "new" / "tiny-a", verify=True)
    assert new_store.complete and new_store.n == 13
    manifest = json.loads((tmp_path / "new" / "tiny-a" / "manifest.json").read_text())
    assert manifest["seeded"] == {"from": str(old / "tiny-a"), "shards": [0, 2, 3]}
    # Copied rows are the old store's, bit for bit; all rows match a fresh extraction.
    before = _rows_by_path(open_feature_store(old / "tiny-a"))
    after = _rows_by_path(new_store)
    for shard in (0, 2, 3):
        for p in new_store.paths[4 * shard : 4 * shard + 4]:
            np.testing.assert_array_equal(after[p], before[p])
    fresh, _ = _extract(paths, tmp_path / "fresh")
    np.testing.assert_allclose(new_store.load(), fresh["tiny-a"].load(), rtol=1e-5, atol=1e-6)
    assert new_store.paths == fresh["tiny-a"].paths


def test_changed_image_is_embedded_again(grown, tmp_path):
    paths, old = grown
    changed = Path(paths[10])  # new position 10: shard 2
    changed.write_bytes(Path(paths[0]).read_bytes())
    res, enc = _extract(paths, tmp_path / "new", seed_from=old)
    assert enc.calls == [4, 4] and res.shards_seeded == 2
    store = res["tiny-a"]
    fresh, _ = _extract(paths, tmp_path / "fresh")
    np.testing.assert_allclose(store.load(), fresh["tiny-a"].load(), rtol=1e-5, atol=1e-6)


def test_damaged_source_shard_is_not_copied(grown, tmp_path, caplog):
    paths, old = grown
    f = old / "tiny-a" / "shard-00002.npy"  # old images 8-11: new shards 2 and 3
    data = bytearray(f.read_bytes())
    data[-4:] = bytes(b ^ 0xFF for b in data[-4:])
    f.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        res, enc = _extract(paths, tmp_path / "new", seed_from=old)
    assert "does not match its SHA-256" in caplog.text
    assert res.shards_seeded == 1 and enc.calls == [4, 4, 1]
    fresh, _ = _extract(paths, tmp_path / "fresh")
    np.testing.assert_allclose(res["tiny-a"].load(), fresh["tiny-a"].load(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("problem", ["config", "incomplete", "other-root", "missing"])
def test_unusable_source_is_ignored(grown, tmp_path, caplog, problem):
    paths, old = grown
    kw = {}
    if problem == "config":
        kw = {"batch_size": 2}  # another batch size: other numbers in the last bits
    elif problem == "incomplete":
        mpath = old / "tiny-a" / "manifest.json"
        from fmri2image._manifest import manifest_digest

        m = json.loads(mpath.read_text())
        m["complete"] = False
        m["shards"] = m["shards"][:1]
        m["manifest_sha256"] = manifest_digest(m)
        mpath.write_text(json.dumps(m))
    elif problem == "other-root":
        copies = write_images(tmp_path / "elsewhere", 13)
        paths = copies
    else:
        old = tmp_path / "nothing-here"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        res, enc = _extract(paths, tmp_path / "new", seed_from=old, **kw)
    assert res.shards_seeded == 0 and res.n_processed == 13 and sum(enc.calls) == 13
    if problem != "missing":
        assert "not reused" in caplog.text


def test_skipped_images_stay_skipped(tmp_path):
    paths = write_images(tmp_path / "imgs", 9)
    Path(paths[2]).write_text("this is not an image")
    old_list = paths[:8]
    with pytest.warns(UserWarning, match="1 of 8 images could not be decoded"):
        res, _ = _extract(old_list, tmp_path / "old")
    assert [s["index"] for s in res["tiny-a"].skipped] == [2]
    # The warning counts the whole store, the copied shards' skipped image included.
    with pytest.warns(UserWarning, match="1 of 9 images could not be decoded"):
        res, enc = _extract(paths, tmp_path / "new", seed_from=tmp_path / "old")
    # Shards [0-3] and [4-7] are unchanged; only [8] (the new image) is computed.
    assert res.shards_seeded == 2 and enc.calls == [1]
    store = res["tiny-a"]
    assert [(s["index"], s["path"]) for s in store.skipped] == [(2, str(paths[2]))]
    with pytest.warns(UserWarning, match="1 of 9 images could not be decoded"):
        fresh, _ = _extract(paths, tmp_path / "fresh")
    assert store.skipped == fresh["tiny-a"].skipped
    np.testing.assert_allclose(store.load(), fresh["tiny-a"].load(), rtol=1e-5, atol=1e-6)


def test_database_stage_copies_what_an_earlier_run_embedded(tmp_path, monkeypatch):
    """A pipeline run after an image was added to the database folder: the database
    stage has a new key (the images' identity changed) but computes one shard only."""
    from PIL import Image

    from fmri2image import features
    from fmri2image.pipeline.graph import Graph
    from fmri2image.pipeline.preflight import DatabaseSpec
    from fmri2image.pipeline.stages import Components, database_stage, scan_database

    real_extract = features.extract_features
    monkeypatch.setattr(
        features, "extract_features", lambda *a, **k: real_extract(*a, **{**k, "shard_size": 4})
    )
    root, cache = tmp_path / "imagenet", tmp_path / "cache"
    rng = np.random.default_rng(0)

    def add(wnid: str, i: int) -> None:
        (root / wnid).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / wnid / f"{wnid}_{i}.png")

    for w in ("n01440764", "n01443537", "n01484850"):
        for i in range(4):
            add(w, i)
    cache.mkdir()

    def run() -> tuple[TinyConvEncoder, Path]:
        spec = DatabaseSpec("images", str(root), root, name="db")
        scanned = scan_database(spec, cache=cache)
        enc = TinyConvEncoder()
        stage = database_stage(
            "tiny-a", scanned, Components(encoders={"tiny-a": enc}), batch_size=4
        )
        result = Graph([stage]).run(cache, progress=False)
        return enc, result.record(stage.name).folder

    enc, first = run()
    assert enc.calls == [4, 4, 4]
    # Into the second class folder, after its 4 images: list position 8, the first
    # of shard 2; the third folder's images move by one, to shards 2 and 3.
    add("n01443537", 9)
    enc, second = run()
    assert second != first and enc.calls == [4]
    manifest = json.loads((second / "tiny-a" / "manifest.json").read_text())
    assert manifest["seeded"] == {"from": str(first / "tiny-a"), "shards": [0, 1, 3]}
    store = open_feature_store(second / "tiny-a", verify=True)
    assert store.n == 13 and store.complete


@pytest.mark.parametrize("case", ["no-images", "no-folder"])
def test_cli_seed_from_is_checked_before_any_work(tmp_path, capsys, case):
    from fmri2image.cli.main import main

    out = tmp_path / "out"
    argv = ["extract", "--model", "effnet-lite0", "--out", str(out)]
    if case == "no-images":
        argv += ["--prototypes", "--seed-from", str(tmp_path)]
    else:
        write_images(tmp_path / "imgs", 2)
        argv += ["--images", str(tmp_path / "imgs"), "--seed-from", str(tmp_path / "nowhere")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--seed-from" in err and "Traceback" not in err
    assert ("needs --images" if case == "no-images" else "no such folder") in err
    assert not out.exists()  # refused before --out was touched
