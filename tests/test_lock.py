"""One writer at a time: the output lock across processes, and a killed holder's lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fmri2image._lock import LOCK_NAME, OutputLockedError, output_lock

HOLD = """
import sys, time
from fmri2image._lock import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(folder, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_stops_with_the_holder_named(tmp_path):
    proc = _holder(tmp_path / "out", 30)
    try:
        with pytest.raises(OutputLockedError) as err, output_lock(tmp_path / "out"):
            pass
        msg = str(err.value)
        assert f"pid {proc.pid}" in msg and "--out" in msg and "another --out" in msg
    finally:
        proc.kill()
        proc.wait()


def test_waiting_writer_gets_the_lock_when_the_holder_ends(tmp_path):
    proc = _holder(tmp_path / "out", 1.0)
    t0 = time.monotonic()
    with output_lock(tmp_path / "out", wait=True, timeout=20):
        assert time.monotonic() - t0 > 0.3  # it did wait
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == os.getpid()
    proc.wait()
    with pytest.raises(OutputLockedError):
        proc2 = _holder(tmp_path / "out", 30)
        try:
            with output_lock(tmp_path / "out", wait=True, timeout=0.5):
                pass
        finally:
            proc2.kill()
            proc2.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    proc = _holder(tmp_path / "out", 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The file still names the dead holder, but the kernel released its flock.
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == proc.pid
    with caplog.at_level("INFO", logger="fmri2image"), output_lock(tmp_path / "out"):
        pass
    assert "taking over" in caplog.text and str(proc.pid) in caplog.text


def test_same_process_sequential_runs(tmp_path):
    for _ in range(2):
        with output_lock(tmp_path / "out"):
            pass


def test_two_decode_runs_into_one_out(tmp_path, monkeypatch):
    """A second `decode` into a locked --out exits 2 before any work, naming the holder."""
    sys.path.insert(0, str(os.path.join(os.path.dirname(__file__), "pipeline")))
    from _planted import write_planted_god

    from fmri2image.cli.main import main

    god = tmp_path / "god"
    write_planted_god(god, n_train_categories=6, n_test_categories=3, n_voxels=20, planted=False)
    out = tmp_path / "results"
    proc = _holder(out, 30)
    try:
        rc = main(["decode", "--god", str(god), "--subject", "1", "--model", "effnet-lite0",
                   "--out", str(out)])  # fmt: skip
        assert rc == 2
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        proc.kill()
        proc.wait()


def test_reentrant_within_a_process(tmp_path):
    with output_lock(tmp_path / "out"), output_lock(tmp_path / "out"):
        pass
    proc = _holder(tmp_path / "out", 30)  # released: another process can take it
    proc.kill()
    proc.wait()


def _extract_cmd(images, out):
    return [sys.executable, "-m", "fmri2image", "-q", "extract", "--model", "effnet-lite0",
            "--images", str(images), "--out", str(out)]  # fmt: skip


@pytest.mark.slow
def test_two_extract_runs_into_one_out_never_mix(tmp_path):
    """Two `extract` processes with different image lists into one --out: one stops with
    a message, the other's store is complete and verifies."""
    import numpy as np
    from PIL import Image

    from fmri2image.features.shards import open_feature_store

    rng = np.random.default_rng(0)
    for name, n in (("a", 40), ("b", 30)):
        for i in range(n):
            folder = tmp_path / name / f"n0{1440764 + i % 3}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i}.JPEG")
    out = tmp_path / "feats"
    procs = [
        subprocess.Popen(_extract_cmd(tmp_path / n, out), stderr=subprocess.PIPE, text=True)
        for n in ("a", "b")
    ]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    (err,) = [e for rc, e in results if rc == 2]
    # Refused while the other runs (the lock), or after it (its store holds other images).
    assert "is being written by another fmri2image run" in err or "differ from this run" in err
    assert "Traceback" not in err
    store = open_feature_store(out / "effnet-lite0", verify=True)
    assert store.complete and store.n in (40, 30)
    assert len(store.paths) == store.n and store.load().shape == (store.n, 1280)


def test_remove_deletes_the_lock_file_at_the_outermost_release(tmp_path):
    out = tmp_path / "out"
    with output_lock(out, remove=True) as path:
        with output_lock(out, remove=True):
            pass
        assert path.exists()  # still held by the outer block
    assert not path.exists()
    proc = _holder(out, 30)  # released: another process can take it
    proc.kill()
    proc.wait()


def test_a_lock_on_a_file_removed_meanwhile_is_taken_on_the_new_file(tmp_path, monkeypatch):
    """A run that opened the lock file just before its holder removed it must not think
    it holds the folder: it locks the file now at the path instead."""
    from fmri2image import _lock

    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    old = os.open(out / LOCK_NAME, os.O_RDWR)  # opened before the holder removed it
    os.unlink(out / LOCK_NAME)
    opened = []

    def open_(folder, path):
        opened.append(path)
        return old if len(opened) == 1 else real(folder, path)

    real = _lock._open
    monkeypatch.setattr(_lock, "_open", open_)
    with output_lock(out) as path:
        assert len(opened) == 2 and path.exists()
        other = subprocess.run(
            [sys.executable, "-c", HOLD, str(out), "0"], capture_output=True, text=True
        )
        assert other.returncode != 0 and "being written by" in other.stderr


RACE = """
import os, sys, time
from fmri2image._lock import output_lock
out, name = sys.argv[1], sys.argv[2]
for i in range(40):
    with output_lock(out, wait=True, timeout=60, poll=0.001, remove=True):
        marker = os.path.join(out, "inside")
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if two are inside
        time.sleep(0.001)
        os.close(fd)
        os.unlink(marker)
    try:  # as `download` does with a --dest it created and left empty
        os.rmdir(out)
    except OSError:
        pass
"""


def test_runs_that_remove_the_lock_file_still_never_overlap(tmp_path):
    """Four processes take the lock 40 times each, removing the lock file (and the
    folder, when empty) as they go: never two inside at once, and none fails."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path / "out"), str(i)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
