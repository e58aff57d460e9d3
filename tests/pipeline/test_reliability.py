"""Issue 18's audit findings on `run`: nothing written before the locks are held,
every mapping option checked before work, no hard links out of the cache, killed
runs' leftovers collected, class-name databases resolved while planning.

Each test reproduces one finding of the audit (numbered as in the issue) and shows
the new behaviour; the tiny components of ``_experiment_setup`` keep runs to seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _experiment_setup import ENCODERS, _config

from fmri2image._lock import LOCK_NAME
from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.mapping import RidgeMapping
from fmri2image.pipeline.config import (
    GenerationSection,
    MappingSection,
    RetrievalSection,
    load_config,
)
from fmri2image.pipeline.experiment import run_experiment
from fmri2image.pipeline.graph import STALE_PARTIAL_SECONDS


def _run(config, **kw):
    return run_experiment(config, encoders=ENCODERS, progress=False, **kw)


def _decode_config(god, out, **changes):
    """A run without pictures: data, features, maps, retrieval (a few seconds)."""
    return _config(god, out, generation=GenerationSection(generators=()), **changes)


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


class _Holder:
    """Another process holding the writer lock of a folder until stopped."""

    def __init__(self, folder: Path) -> None:
        code = (
            "import sys, time\n"
            "from fmri2image._lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "held"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# ---------------------------------------------------------------- finding 1
def test_a_busy_cache_leaves_a_fresh_out_folder_uncreated(god, tmp_path):
    shared = tmp_path / "shared-cache"
    with _Holder(shared):
        config = _decode_config(god, tmp_path / "fresh" / "out", cache=str(shared))
        with pytest.raises(ConfigError, match="is being written by another fmri2image run"):
            _run(config)
    assert not (tmp_path / "fresh").exists()  # no out, no run.log, no lock file
    assert sorted(p.name for p in shared.iterdir()) == [LOCK_NAME]  # the holder's own


def test_a_busy_cache_leaves_an_existing_run_folder_as_it_was(god, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.toml").write_text("seed = 0\n")  # the tables' own configuration
    (out / "run.log").write_text("the previous run's log\n")
    (out / "tables").mkdir()
    (out / "tables" / "scores.csv").write_text("a,b\n1,2\n")
    before = _tree(out)
    shared = tmp_path / "shared-cache"
    with _Holder(shared):
        config = _decode_config(god, out, cache=str(shared), seed=7)
        config = config.replace(mapping__cv=4)
        with pytest.raises(ConfigError, match="is being written"):
            _run(config)
    assert _tree(out) == before  # config.toml, run.log, no lock file left


def test_a_busy_out_folder_leaves_a_new_cache_uncreated(god, tmp_path):
    out = tmp_path / "out"
    with _Holder(out):
        before = _tree(out)
        config = _decode_config(god, out, cache=str(tmp_path / "new" / "cache"))
        with pytest.raises(ConfigError, match=r"--out .* is being written"):
            _run(config)
        assert _tree(out) == before
    assert not (tmp_path / "new").exists()


def test_a_run_interrupted_before_its_first_stage_leaves_out_untouched(god, tmp_path, monkeypatch):
    from fmri2image.pipeline import experiment

    def interrupted(*args, **kwargs):  # Ctrl-C once the locks and the log are taken
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "_collect_output_leftovers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(_decode_config(god, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- finding 2
@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cv": 1}, "cv=1 is not a valid number of folds"),
        ({"random_state": "x"}, "random_state='x' must be an integer seed"),
        ({"alpha_per_target": "no"}, "alpha_per_target='no' must be true or false"),
        ({"standardize_X": 1}, "standardize_X=1 must be true or false"),
        ({"solver": 5}, "solver=5 must be a solver name"),
        ({"n_voxels": 0}, "n_voxels=0 must be a positive integer"),
        ({"cv": 10_000}, "cv=10000 folds is more than the .* training samples"),
    ],
)
def test_mapping_options_are_checked_before_any_stage(god, tmp_path, options, match):
    config = _decode_config(god, tmp_path / "out", mapping=MappingSection(cv=3, options=options))
    with pytest.raises(ConfigError, match=match):
        _run(config)
    assert not (tmp_path / "out").exists()


def test_mapping_options_in_a_configuration_file_are_one_message(god, tmp_path):
    root, _ = god
    (tmp_path / "c.toml").write_text('[mapping]\noptions = { random_state = "x" }\n')
    cmd = [sys.executable, "-m", "fmri2image", "decode", "--config", str(tmp_path / "c.toml"),
           "--data", str(root), "--model", "effnet-lite0", "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "random_state='x' must be an integer seed" in done.stderr
    assert not (tmp_path / "out").exists()


def test_ridge_check_params_refuses_without_coercing():
    RidgeMapping(cv=3, random_state=0, alpha_per_target=np.bool_(False)).check_params(30, 10)
    RidgeMapping(cv="loo").check_params()
    with pytest.raises(ConfigError, match="n_voxels with cv='loo'"):
        RidgeMapping(cv="loo", n_voxels=5).check_params()
    with pytest.raises(ConfigError, match="n_voxels=50 exceeds the 10 voxels"):
        RidgeMapping(n_voxels=50).check_params(n_samples=30, n_features=10)
    with pytest.raises(ConfigError, match="grouped folds need at least 5 distinct groups"):
        RidgeMapping(cv=5).check_params(n_samples=30, n_groups=3)
    with pytest.raises(ConfigError, match="alpha_per_target"):  # fit runs the same checks
        RidgeMapping(alpha_per_target="no").fit(np.ones((10, 3)), np.ones((10, 2)))


# ---------------------------------------------------------------- finding 6
@pytest.fixture(scope="module")
def pictured(god, tmp_path_factory):
    """A run with pictures, under umask 077."""
    old = os.umask(0o077)
    try:
        out = tmp_path_factory.mktemp("pictured") / "out"
        config = _config(god, out, generation=GenerationSection(generators=("test-paint",)))
        return _run(config)
    finally:
        os.umask(old)


def test_outputs_are_copies_with_the_umask_mode_not_links(pictured, god):
    files = [p for sub in ("images", "maps") for p in (pictured.out_dir / sub).rglob("*")]
    files = [p for p in files if p.is_file()]
    assert any(p.suffix == ".png" for p in files) and any("ground_truth" in p.parts for p in files)
    for p in files:
        st = p.stat()
        assert st.st_nlink == 1, p  # not a hard link into the cache or the dataset
        assert st.st_mode & 0o777 == 0o600, p  # what umask 077 asks for


def test_editing_an_exported_picture_changes_neither_cache_nor_dataset(pictured, god):
    root, _ = god
    truth = next((pictured.out_dir / "images").rglob("ground_truth/*"))
    original = root / "test" / truth.name
    made = next(p for p in (pictured.out_dir / "images").rglob("predicted/*.png"))
    cached = [p for p in (pictured.out_dir / "cache").rglob(made.name) if p.stat().st_size]
    before = {p: p.read_bytes() for p in (original, *cached)}
    truth.write_bytes(b"edited")
    made.write_bytes(b"edited")
    assert {p: p.read_bytes() for p in before} == before
    # The next run puts the copies back (they no longer match their sources).
    _run(dataclasses.replace(pictured.config, generation=pictured.config.generation))
    assert truth.read_bytes() == original.read_bytes()


def test_an_old_hard_linked_export_is_replaced_by_a_copy(tmp_path):
    from fmri2image.pipeline.outputs import _place

    src = tmp_path / "cache" / "a.png"
    src.parent.mkdir()
    src.write_bytes(b"picture")
    dst = tmp_path / "images" / "a.png"
    dst.parent.mkdir()
    os.link(src, dst)  # what earlier versions exported
    _place(src, dst)
    assert dst.stat().st_nlink == 1 and src.stat().st_nlink == 1
    assert dst.read_bytes() == b"picture"
    mtime = dst.stat().st_mtime_ns
    _place(src, dst)  # an unchanged copy is not made again
    assert dst.stat().st_mtime_ns == mtime


# ---------------------------------------------------------------- finding 8
def test_stale_partial_folders_and_temp_files_are_collected_and_logged(god, tmp_path, caplog):
    out = tmp_path / "out"
    cache = out / "cache"
    stale = cache / "generation_x" / ".partial-0123456789abcdef0123"
    recent = cache / "generation_y" / ".partial-abcdef0123456789abcd"
    staging = cache / "mapping_z" / ".staging-0123456789abcdef0123-1a2b3c4d"
    for folder in (stale, recent, staging):
        folder.mkdir(parents=True)
        (folder / "a.png").write_bytes(b"x")
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    temps = [out / ".summary.json.ab12cd_3.tmp", out / "images" / "s1" / ".a.png.0123456789ab.link"]
    for t in temps:
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_bytes(b"half")
    keep = out / "images" / "notes.tmp"  # a user's file: not a name fmri2image writes
    keep.write_text("mine")
    with caplog.at_level(logging.INFO, logger="fmri2image"):
        _run(_decode_config(god, out))
    assert not stale.exists() and not staging.exists() and not any(t.exists() for t in temps)
    assert recent.exists() and keep.exists()  # another configuration may resume it
    logged = caplog.text
    assert "generation_x/.partial-0123456789abcdef0123" in logged
    assert ".summary.json.ab12cd_3.tmp" in logged
    assert (out / "run.log").read_text().count("collected") == 2


# ---------------------------------------------------------------- finding 9
@pytest.fixture(scope="module")
def class_name_db(god, tmp_path_factory):
    """A folder of class-name folders, two of them ambiguous in WordNet."""
    _, db = god
    pictures = sorted(Path(db).rglob("*.JPEG"))[:3]
    root = tmp_path_factory.mktemp("names") / "imagenet-256"
    for name, src in zip(("apple", "crane", "goldfish"), pictures, strict=True):
        (root / name).mkdir(parents=True)
        (root / name / src.name).write_bytes(src.read_bytes())
    return root


def test_ambiguous_class_folders_stop_the_run_before_any_stage(god, tmp_path, class_name_db):
    config = _decode_config(
        god, tmp_path / "out", retrieval=RetrievalSection(databases=(str(class_name_db),))
    )
    with pytest.raises(DataFormatError, match=r"'apple' -> .*--class-map.*--skip-unresolved"):
        _run(config)
    assert not (tmp_path / "out").exists()  # refused while planning: no stage, no cache


def test_a_class_map_or_skipping_resolves_them(god, tmp_path, class_name_db):
    import pyarrow.parquet as pq

    (tmp_path / "map.csv").write_text("apple,n07739125\ncrane,n02012849\n")
    base = _decode_config(
        god, tmp_path / "out", retrieval=RetrievalSection(databases=(str(class_name_db),))
    )
    mapped = _run(base.replace(retrieval__class_map=str(tmp_path / "map.csv")))
    stores = list((mapped.out_dir / "cache").rglob("images.parquet"))
    labels = {w for s in stores for w in pq.read_table(s).column("wnid").to_pylist()}
    assert {"n07739125", "n02012849"} <= labels
    with pytest.warns(UserWarning, match="'apple' -> n07739125/n12633994"):
        skipped = _run(base.replace(out=str(tmp_path / "skip"), retrieval__skip_unresolved=True))
    stores = list((skipped.out_dir / "cache").rglob("images.parquet"))
    labels = {w for s in stores for w in pq.read_table(s).column("wnid").to_pylist()}
    assert labels and not labels & {"n07739125", "n12633994", "n02012849", "n03126707"}


def test_class_map_flags_reach_the_configuration(tmp_path):
    from fmri2image.cli._options import config_from_args
    from fmri2image.cli.main import build_parser

    (tmp_path / "map.csv").write_text("apple,n07739125\n")
    args = build_parser().parse_args(
        ["run", "--data", "d", "--out", "o", "--class-map", str(tmp_path / "map.csv"),
         "--skip-unresolved"]
    )  # fmt: skip
    config = config_from_args(args)
    assert config.retrieval.class_map == str(tmp_path / "map.csv")
    assert config.retrieval.skip_unresolved is True
    with pytest.raises(ConfigError, match=r"retrieval\.class_map.*does not exist"):
        load_config(None, ["retrieval.class_map='nope.csv'"]).validate()


def test_extract_checks_folder_and_models_before_touching_out(tmp_path, class_name_db):
    from fmri2image.cli.main import main

    out = tmp_path / "features"
    assert main(["-q", "extract", "--images", str(class_name_db), "--model", "effnet-lite0",
                 "--out", str(out)]) == 2  # fmt: skip
    assert not out.exists()  # no empty folder, no lock file
    (tmp_path / "map.csv").write_text("apple,n07739125\ncrane,n02012849\n")
    assert main(["-q", "extract", "--images", str(class_name_db), "--model", "nosuch",
                 "--class-map", str(tmp_path / "map.csv"), "--out", str(out)]) == 2  # fmt: skip
    assert not out.exists()
