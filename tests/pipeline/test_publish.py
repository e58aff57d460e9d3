"""Runs that never mix: a decode killed at any point leaves the old result or the new one."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _planted import write_planted_god

from fmri2image import _io
from fmri2image.cli.main import main
from fmri2image.pipeline import publish
from fmri2image.pipeline.decode_run import DecodeRun

CACHES = {"stimulus_features", "database_features", ".fmri2image.lock"}


def decode_args(god, out, *extra):
    return ["decode", "--god", str(god), "--subject", "1", "--model", "effnet-lite0",
            "--database", "prototypes", "--out", str(out), *extra]  # fmt: skip


def snapshot(out: Path) -> dict[str, str]:
    """sha256 of every visible result file (caches and hidden entries left out)."""
    files = {}
    for top in out.iterdir():
        if top.name in CACHES or top.name.startswith("."):
            continue
        for p in [top] if top.is_file() else sorted(top.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def assert_complete(out: Path) -> str:
    """The visible result is one whole run: summary + exactly its encoders' folders."""
    summary = _io.load_json(out / "summary.json")
    encoders = {row["encoder"] for row in summary["encoders"]}
    visible = {p.name for p in out.iterdir() if p.name not in CACHES and not p.name.startswith(".")}
    assert visible == {"summary.json", *encoders}, visible
    for enc in encoders:
        assert (out / enc / "predicted_test_embeddings.npy").is_file()
        assert (out / enc / "prediction" / "summary.json").is_file()
        assert (out / enc / "retrieval" / "prototypes" / "semantic_summary.json").is_file()
    run = DecodeRun.load(out)
    assert set(run.encoders) == encoders
    return summary["run_id"]


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    root = tmp_path_factory.mktemp("god")
    write_planted_god(root, n_train_categories=8, n_test_categories=4, n_voxels=40)
    return root


@pytest.mark.slow
def test_killed_decode_leaves_the_old_or_the_new_result(god, tmp_path):
    out = tmp_path / "results"
    assert main(decode_args(god, out)) == 0
    old_id = assert_complete(out)
    old_files = snapshot(out)
    seen = set()
    for delay in (0.5, 60.0):  # killed while computing; then left to finish
        env = dict(os.environ, TQDM_DISABLE="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fmri2image", *decode_args(god, out, "--shared-alpha",
                                                              "--model", "effnet-lite2")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not list(out.glob(".staging-*")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        run_id = assert_complete(out)
        if run_id == old_id:
            assert snapshot(out) == old_files  # the old result, untouched
            seen.add("old")
        else:
            assert set(DecodeRun.load(out).encoders) == {"effnet-lite0", "effnet-lite2"}
            seen.add("new")
            break
    assert seen == {"old", "new"}
    # The next run cleans what killed runs left behind.
    assert main(decode_args(god, out)) == 0
    assert_complete(out)
    assert not list(out.glob(".staging-*")) and not list(out.glob(".trash-*"))


def test_publish_interrupted_midway_is_rolled_forward(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"run": "old"}')
    (out / "a").mkdir()
    (out / "a" / "x").write_text("old a")
    (out / "gone").mkdir()  # an encoder of the old run only: must disappear
    stage = publish.staging_dir(out, "new1")
    (stage / "a").mkdir()
    (stage / "a" / "x").write_text("new a")
    (stage / "b").mkdir()
    (stage / "summary.json").write_text('{"run": "new"}')
    real = os.replace
    calls = []

    def crash_after_three(src, dst):
        calls.append(src)
        if len(calls) > 3:
            raise KeyboardInterrupt  # as if killed here
        real(src, dst)

    monkeypatch.setattr(publish.os, "replace", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        publish.publish(out, stage, previous=["summary.json", "a", "gone"])
    monkeypatch.setattr(publish.os, "replace", real)
    assert (out / publish.JOURNAL).is_file()  # committed, not finished
    assert publish.recover(out) is True
    assert (out / "summary.json").read_text() == '{"run": "new"}'
    assert (out / "a" / "x").read_text() == "new a" and (out / "b").is_dir()
    assert not (out / "gone").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "summary.json"]


def test_abandoned_staging_is_removed(tmp_path):
    out = tmp_path / "out"
    stage = publish.staging_dir(out, "dead")
    (stage / "summary.json").write_text("{}")
    assert publish.recover(out) is False
    assert not stage.exists()


def test_damaged_journal_is_a_clear_error(tmp_path):
    from fmri2image.errors import DataFormatError

    (tmp_path / publish.JOURNAL).write_text('{"stage": 1}')
    with pytest.raises(DataFormatError, match="Delete it"):
        publish.recover(tmp_path)
