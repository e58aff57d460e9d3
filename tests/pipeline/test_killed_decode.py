"""A decode killed while it computes leaves the previous result as it was (its stages
are complete artifacts or absent); left to finish, the new result replaces it."""

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

#: What is not a result: the stage cache, the lock, the run's log (appended to).
NOT_RESULTS = {"cache", "run.log", ".fmri2image.lock"}


def decode_args(god, out, *extra):
    return ["decode", "--god", str(god), "--subject", "1", "--model", "effnet-lite0",
            "--database", "prototypes", "--out", str(out), *extra]  # fmt: skip


def snapshot(out: Path) -> dict[str, str]:
    """sha256 of every visible result file."""
    files = {}
    for top in out.iterdir():
        if top.name in NOT_RESULTS or top.name.startswith("."):
            continue
        for p in [top] if top.is_file() else sorted(top.rglob("*")):
            if p.is_file():
                files[str(p.relative_to(out))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def encoders(out: Path) -> set[str]:
    """The encoders of the visible result, checked to be whole: summary.json, its config
    and a map of every encoder it lists."""
    summary = _io.load_json(out / "summary.json")
    found = {row["encoder"] for row in summary["encoders"]}
    assert set(_io.load_json(out / "stages.json")["stages"][0]) >= {"name", "key", "folder"}
    config = (out / "config.toml").read_text()
    for enc in found:
        assert f'"{enc}"' in config
        maps = out / "maps" / "s1-ROI_VC" / enc / "ridge"
        assert (maps / "predicted_test_embeddings.npy").is_file()
        assert (maps / "prediction" / "summary.json").is_file()
        assert (maps / "retrieval" / "prototypes" / "semantic_summary.json").is_file()
    return found


@pytest.fixture(scope="module")
def god(tmp_path_factory):
    root = tmp_path_factory.mktemp("god")
    write_planted_god(root, n_train_categories=8, n_test_categories=4, n_voxels=40)
    return root


@pytest.mark.slow
def test_killed_decode_leaves_the_old_or_the_new_result(god, tmp_path):
    out = tmp_path / "results"
    assert main(decode_args(god, out)) == 0
    assert encoders(out) == {"effnet-lite0"}
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
        cache = out / "cache"
        while not list(cache.glob("*/.partial-*")) + list(cache.glob("*/.staging-*")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if encoders(out) == {"effnet-lite0"}:
            assert snapshot(out) == old_files  # the old result, untouched
            seen.add("old")
        else:
            assert encoders(out) == {"effnet-lite0", "effnet-lite2"}
            seen.add("new")
            break
    assert seen == {"old", "new"}
    # Every stage in the cache is a complete artifact; the next run cleans what killed
    # runs left behind and reuses the rest.
    assert main(decode_args(god, out)) == 0
    assert encoders(out) == {"effnet-lite0"}
    assert not list((out / "cache").glob("*/.staging-*"))
    stages = _io.load_json(out / "stages.json")["stages"]
    assert all(
        s["reused"] for s in stages if "effnet-lite0" in s["name"] or s["name"].startswith("data")
    )
