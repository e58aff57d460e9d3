"""Warm runs that trust a file's stat() only after a full check: verified fingerprints
of artifacts (fmri2image._manifest) and of image-folder scans (stages.scan_database).

The speed-up must lose no safety: a one-byte change after a fast-verified run is
refused, also with its modification time set back; a damaged or foreign fingerprint
is ignored, never trusted."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fmri2image import _io, _manifest
from fmri2image.errors import ConfigError
from fmri2image.pipeline.graph import MANIFEST, Graph, Stage, reusable

#: Longer than a coarse file-system clock tick (1-10 ms): files written before it are
#: not "racy" for a fingerprint written after it.
TICK = 0.05


def _stage(name, fn, *, inputs=(), config=None):
    """A stage writing ``value.npy`` = fn(*input values) and a small ``meta.json``."""

    def run(ctx):
        np.save(ctx.folder / "value.npy", fn(*(ctx.inputs[i] for i in inputs)))
        (ctx.folder / "meta.json").write_text(json.dumps({"name": name}))

    return Stage(name, run, lambda folder: np.load(folder / "value.npy"),
                 config=config or {"v": 1}, inputs=tuple(inputs))  # fmt: skip


def graph():
    return Graph([
        _stage("data", lambda: np.arange(64.0)),
        _stage("features", lambda x: x * 2, inputs=("data",)),
        _stage("mapping", lambda f: f + 1, inputs=("features",)),
    ])  # fmt: skip


@pytest.fixture
def hashes(monkeypatch):
    """Counts the files hashed (every check goes through ``_io.file_sha256``)."""
    calls: list[str] = []
    real = _io.file_sha256

    def counting(path, *args, **kwargs):
        calls.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(_io, "file_sha256", counting)
    return calls


def warm(cache):
    """A computed graph whose fingerprints are settled (not racy)."""
    result = graph().run(cache, progress=False)
    time.sleep(TICK)
    assert all(p is None for p in graph().problems(cache).values())
    return result


def corrupt_one_byte(path, *, restore_mtime):
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(st.st_size - 1)
        last = fh.read(1)
        fh.seek(st.st_size - 1)
        fh.write(bytes([last[0] ^ 0xFF]))
    if restore_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    assert os.stat(path).st_size == st.st_size


# ---------------------------------------------------------------- artifacts
def test_fast_check_trusts_an_untouched_artifact_without_hashing(tmp_path, hashes):
    cache = tmp_path / "cache"
    warm(cache)
    hashes.clear()
    problems = graph().problems(cache)
    assert problems == {"data": None, "features": None, "mapping": None}
    assert hashes == []
    res = graph().run(cache, progress=False)  # a warm run reads no artifact file to verify
    assert all(r.reused for r in res.records)
    assert not [h for h in hashes if h.endswith((".npy", ".json"))]
    # The fingerprint lies apart: the artifact folder holds what the stage wrote, the
    # stage's folder its artifacts only.
    folder = res.record("features").folder
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, "meta.json", "value.npy"]
    assert list(folder.parent.iterdir()) == [folder]
    assert (cache / ".fingerprints" / folder.parent.name / f"{folder.name}.json").is_file()


def test_full_check_hashes_every_file(tmp_path, hashes):
    cache = tmp_path / "cache"
    warm(cache)
    hashes.clear()
    assert all(p is None for p in graph().problems(cache, verify="full").values())
    assert len(hashes) == 3 * 2  # value.npy and meta.json of each stage
    hashes.clear()
    graph().run(cache, progress=False, verify="full")
    assert len(hashes) == 3 * 2


@pytest.mark.parametrize("restore_mtime", [False, True], ids=["edited", "mtime-restored"])
def test_one_byte_changed_after_a_fast_verified_run_is_refused(tmp_path, caplog, restore_mtime):
    """The issue's required test: the next run still refuses a changed cached file."""
    cache = tmp_path / "cache"
    warm(cache)
    res = graph().run(cache, progress=False)  # fast-verified: everything reused, nothing read
    assert all(r.reused for r in res.records)
    value = res.record("features").folder / "value.npy"
    corrupt_one_byte(value, restore_mtime=restore_mtime)
    problems = graph().problems(cache)
    assert problems["features"] == f"{value} changed after it was written"
    assert problems["data"] is None and problems["mapping"] is None
    with caplog.at_level("WARNING"):
        res = graph().run(cache, progress=False)
    assert (
        "recomputing stage features" in caplog.text
        and "changed after it was written" in caplog.text
    )
    assert res.computed == ["features"]
    np.testing.assert_array_equal(res.values["features"], np.arange(64.0) * 2)
    time.sleep(TICK)
    assert all(p is None for p in graph().problems(cache).values())


def test_a_damaged_or_foreign_fingerprint_is_ignored_not_trusted(tmp_path, hashes):
    cache = tmp_path / "cache"
    res = warm(cache)
    data, features = res.record("data").folder, res.record("features").folder
    fp_data = cache / ".fingerprints" / data.parent.name / f"{data.name}.json"
    fp_features = cache / ".fingerprints" / features.parent.name / f"{features.name}.json"

    # Damaged: not JSON.  The full check runs and passes; checking writes nothing (the
    # cache may be another run's), a run records a sound fingerprint again under the lock.
    fp_features.write_text("{ not json")
    hashes.clear()
    assert graph().problems(cache)["features"] is None
    assert len(hashes) == 2 and fp_features.read_text() == "{ not json"
    assert all(r.reused for r in graph().run(cache, progress=False).records)
    assert json.loads(fp_features.read_text())["files"]

    # Foreign: another artifact's fingerprint (another manifest checksum).
    fp_features.write_bytes(fp_data.read_bytes())
    hashes.clear()
    assert graph().problems(cache)["features"] is None
    assert len(hashes) == 2

    # Its own manifest checksum but not its files: not trusted either, and a file
    # changed under such a fingerprint is found.
    time.sleep(TICK)
    record = json.loads(fp_features.read_text())
    record["files"].pop("meta.json")
    fp_features.write_text(json.dumps(record))
    corrupt_one_byte(features / "value.npy", restore_mtime=True)
    assert "changed after it was written" in graph().problems(cache)["features"]


def test_a_file_changed_in_the_tick_of_its_fingerprint_is_hashed(tmp_path, hashes):
    """Racy files (times not older than the fingerprint) are never trusted on stat()."""
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"abc")
    fp = tmp_path / ".a.verified.json"
    _manifest.write_manifest(folder / "m.json", {"format": "t"}, folder=folder, fingerprint=fp)
    assert json.loads(fp.read_text())["files"] == {"x.bin": _manifest._stat(folder / "x.bin")}
    st = os.stat(fp)
    os.utime(fp, ns=(st.st_atime_ns, os.stat(folder / "x.bin").st_ctime_ns))  # same tick
    hashes.clear()
    check = dict(format="t", verify="fast", fingerprint=fp)
    assert _manifest.manifest_problem(folder / "m.json", **check) is None
    assert len(hashes) == 1  # hashed, then recorded again with a later stamp
    os.utime(fp, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    hashes.clear()
    assert _manifest.manifest_problem(folder / "m.json", **check) is None
    assert hashes == []


def test_plain_checks_read_and_write_no_fingerprint(tmp_path, hashes):
    """verify=None (picture records, caches outside the graph) hashes as it always did."""
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"png")
    _manifest.write_manifest(folder / "a.json", {"format": "p", "key": "k"}, files=["a.png"])
    time.sleep(TICK)
    for _ in range(2):
        hashes.clear()
        assert (
            _manifest.manifest_problem(folder / "a.json", format="p", identity={"key": "k"}) is None
        )
        assert len(hashes) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["a.json", "a.png"]


def test_fingerprint_writes_are_best_effort(tmp_path):
    """A folder removed meanwhile (or a read-only cache) means no speed-up, no error and
    no folder made again."""
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"abc")
    gone = tmp_path / "removed" / ".a.verified.json"
    _manifest.write_manifest(folder / "m.json", {"format": "t"}, folder=folder, fingerprint=gone)
    assert not gone.parent.exists()
    assert _manifest.manifest_problem(folder / "m.json", verify="full", fingerprint=gone) is None
    assert not gone.parent.exists()


def test_unknown_verification_modes_are_refused(tmp_path):
    g = graph()
    with pytest.raises(ConfigError, match="--verify 'quick'"):
        g.problems(tmp_path, verify="quick")
    with pytest.raises(ConfigError, match=r"fast .* full"):
        reusable(tmp_path, g.stages["data"], verify="sometimes")
    with pytest.raises(ConfigError, match="--verify"):
        _manifest.manifest_problem(tmp_path / "m.json", verify="FAST")


# ---------------------------------------------------------------- image-folder scans
def image_folder(root, classes=("n01440764", "n01443537", "n01484850"), per_class=3):
    """An ImageNet-style folder; the files need not be real JPEGs to be scanned."""
    for w in classes:
        (root / w).mkdir(parents=True)
        for i in range(per_class):
            (root / w / f"{w}_{i}.JPEG").write_bytes(b"jpeg-%d" % i)
    time.sleep(TICK)
    return root


@pytest.fixture
def listings(monkeypatch):
    """Counts the full scans: listing the folder and stat'ing every image."""
    from fmri2image import features
    from fmri2image.pipeline import stages

    calls: list[str] = []
    real_scan, real_identity = features.scan_image_folder, stages.files_identity

    def scan(*args, **kwargs):
        calls.append("list")
        return real_scan(*args, **kwargs)

    def identity(paths):
        calls.append("stat")
        return real_identity(paths)

    monkeypatch.setattr(features, "scan_image_folder", scan)
    monkeypatch.setattr(stages, "files_identity", identity)
    return calls


def scan(root, cache, **kwargs):
    from fmri2image.pipeline.preflight import DatabaseSpec
    from fmri2image.pipeline.stages import scan_database

    scanned = scan_database(
        DatabaseSpec("images", str(root), root, name="db"), cache=cache, **kwargs
    )
    scanned.remember()  # what a run does once it holds the cache's lock
    return scanned


def test_planning_writes_no_scan_record(tmp_path):
    """Scanning while planning writes nothing (the cache may be another run's); the
    record is written by remember(), which the run calls under the cache's lock."""
    from fmri2image.pipeline.preflight import DatabaseSpec
    from fmri2image.pipeline.stages import scan_database

    root = image_folder(tmp_path / "imagenet")
    cache = tmp_path / "cache"
    cache.mkdir()
    scanned = scan_database(DatabaseSpec("images", str(root), root, name="db"), cache=cache)
    assert list(cache.iterdir()) == []
    scanned.remember()
    (record,) = (cache / "scans").glob("*.json")
    assert scanned.pending is None  # written once: a second remember() writes nothing
    stamp = record.stat().st_mtime_ns
    scanned.remember()
    assert record.stat().st_mtime_ns == stamp


def test_a_scan_is_reused_without_listing_or_stating_images(tmp_path, listings):
    root = image_folder(tmp_path / "imagenet")
    cache = tmp_path / "cache"
    cache.mkdir()
    first = scan(root, cache)
    assert listings == ["list", "stat"] and not first.reused
    assert len(list((cache / "scans").glob("*.json"))) == 1
    listings.clear()
    again = scan(root, cache)
    assert listings == [] and again.reused
    assert again.identity == first.identity
    assert again.images == first.images and again.images.class_folders == first.images.class_folders
    assert again.images.hash == first.images.hash
    # Without a cache (or with --verify full) every image is listed and stat'ed.
    listings.clear()
    assert scan(root, None).identity == first.identity and listings == ["list", "stat"]
    listings.clear()
    full = scan(root, cache, verify="full")
    assert listings == ["list", "stat"] and full.identity == first.identity


@pytest.mark.parametrize("change", ["add", "remove", "rename", "new-class"])
def test_an_added_removed_or_renamed_image_changes_the_identity_without_full(
    tmp_path, listings, change
):
    root = image_folder(tmp_path / "imagenet")
    cache = tmp_path / "cache"
    cache.mkdir()
    before = scan(root, cache)
    folder = root / "n01443537"
    if change == "add":
        (folder / "n01443537_9.JPEG").write_bytes(b"jpeg-9")
    elif change == "remove":
        (folder / "n01443537_1.JPEG").unlink()
    elif change == "rename":
        (folder / "n01443537_1.JPEG").rename(folder / "n01443537_7.JPEG")
    else:
        (root / "n01530575").mkdir()
        (root / "n01530575" / "n01530575_0.JPEG").write_bytes(b"jpeg")
    listings.clear()
    after = scan(root, cache)
    assert listings == ["list", "stat"] and not after.reused
    assert after.identity != before.identity
    assert after.images == scan(root, None).images  # what a plain scan finds
    time.sleep(TICK)
    listings.clear()
    assert scan(root, cache).identity == after.identity and listings == []


def test_an_image_edited_in_place_is_seen_by_full_only(tmp_path):
    root = image_folder(tmp_path / "imagenet")
    cache = tmp_path / "cache"
    cache.mkdir()
    before = scan(root, cache)
    image = root / "n01440764" / "n01440764_0.JPEG"
    image.write_bytes(b"edited, longer")  # in place: its folder's times stay
    assert scan(root, cache).identity == before.identity  # documented: fast trusts the folder
    full = scan(root, cache, verify="full")
    assert full.identity != before.identity and not full.reused
    time.sleep(TICK)
    assert scan(root, cache).identity == full.identity  # full recorded the scan again


def test_a_damaged_or_foreign_scan_record_is_not_used(tmp_path, listings):
    root = image_folder(tmp_path / "imagenet")
    other = image_folder(tmp_path / "other", classes=("n01440764",))
    cache = tmp_path / "cache"
    cache.mkdir()
    first = scan(root, cache)
    scan(other, cache)
    records = sorted((cache / "scans").glob("*.json"))
    assert len(records) == 2
    mine = next(r for r in records if json.loads(r.read_text())["root"] == str(root))
    theirs = next(r for r in records if r != mine)
    mine.write_bytes(theirs.read_bytes())  # another folder's record under this name
    listings.clear()
    assert scan(root, cache).identity == first.identity and listings == ["list", "stat"]
    mine.write_text("{ not json")
    listings.clear()
    assert scan(root, cache).identity == first.identity and listings == ["list", "stat"]


def test_a_scan_planned_before_the_cache_exists_is_recorded_by_the_stage(tmp_path):
    root = image_folder(tmp_path / "imagenet")
    cache = tmp_path / "cache"
    scanned = scan(root, cache)
    assert not cache.exists() and scanned.pending is not None  # planning writes nothing
    cache.mkdir()
    scanned.remember()
    time.sleep(TICK)
    assert scan(root, cache).reused


# ---------------------------------------------------------------- config and CLI
def test_verify_is_a_run_option_in_no_stage_key(god, tmp_path, caplog):
    from _experiment_setup import ENCODERS, _config

    from fmri2image.pipeline.experiment import build_experiment

    config = _config(god, tmp_path / "out")
    assert config.verify == "fast"
    fast = build_experiment(config, encoders=ENCODERS, progress=False)
    assert list((tmp_path / "out").glob("cache/scans/*.json")) == []  # nothing before a run
    full = build_experiment(config.replace(verify="full"), encoders=ENCODERS, progress=False)
    assert fast.graph.keys() == full.graph.keys()
    with pytest.raises(ConfigError, match=r"--verify \(verify\) must be one of fast, full"):
        config.replace(verify="quick").validate(encoders=ENCODERS)
    # The database stage records the scan once the cache exists; the next plan reuses it.
    (name,) = [n for n in fast.graph.order if n.startswith("database/pool-a/")]
    Graph([fast.graph.stages[name]]).run(fast.cache, progress=False)
    assert len(list((tmp_path / "out").glob("cache/scans/*.json"))) == 1
    time.sleep(TICK)
    with caplog.at_level("INFO", logger="fmri2image"):
        again = build_experiment(config, encoders=ENCODERS, progress=False)
    assert "as scanned before" in caplog.text
    assert again.graph.keys() == fast.graph.keys()
    assert again.graph.problems(again.cache)[name] is None


def test_cli_takes_verify_full_and_refuses_other_modes(capsys):
    from fmri2image.cli import _options
    from fmri2image.cli.main import build_parser, main

    for command in ("run", "compare", "decode"):
        args = build_parser().parse_args([command, "--data", "g", "--out", "o", "--verify", "full"])
        assert _options.config_from_args(args).verify == "full"
    args = build_parser().parse_args(["demo", "--verify", "full"])
    assert args.verify == "full"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fast (default): a file whose size, times and inode match the last full check" in text
    with pytest.raises(SystemExit) as exc:
        main(["-q", "compare", "--data", "g", "--out", "o", "--verify", "bogus"])
    assert exc.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_files_identity_is_the_resolved_path_size_and_mtime_of_each_file(tmp_path, monkeypatch):
    """The one-lstat-per-file identity equals Path.resolve + stat (the keys of
    existing caches stay valid), symbolic links included."""
    from fmri2image.pipeline.stages import files_identity

    real = tmp_path / "real"
    real.mkdir()
    (real / "a.JPEG").write_bytes(b"a")
    (real / "b.JPEG").write_bytes(b"bb")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    (real / "c.JPEG").symlink_to(real / "b.JPEG")
    monkeypatch.chdir(tmp_path)
    paths = [real / "a.JPEG", tmp_path / "linked" / "a.JPEG", real / "c.JPEG",
             "linked/b.JPEG", None, real / ".." / "real" / "b.JPEG"]  # fmt: skip

    def reference(ps):
        items = []
        for p in ps:
            if p is None:
                items.append(None)
                continue
            path = Path(p).resolve()
            st = path.stat()
            items.append([str(path), st.st_size, st.st_mtime_ns])
        return _io.json_sha256(items)

    assert files_identity(paths) == reference(paths)
    with pytest.raises(FileNotFoundError):
        files_identity([real / "missing.JPEG"])


def test_checking_a_cache_writes_nothing_into_it(tmp_path, hashes):
    """problems() runs before the run holds the lock (the cache may be another run's):
    the fingerprints of its full checks wait for run(), which records them."""
    import shutil

    cache = tmp_path / "cache"
    warm(cache)
    shutil.rmtree(cache / ".fingerprints")
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    assert all(p is None for p in graph().problems(cache).values())
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before
    graph().run(cache, progress=False)
    assert len(list((cache / ".fingerprints").rglob("*.json"))) == 3
