"""The allocator tuning of fmri2image._malloc (each case in its own process: it is once per process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import ctypes, sys
from fmri2image._malloc import tune_allocator
first = tune_allocator()
assert tune_allocator() is first  # idempotent
print(first)
"""


def run(env_value: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FMRI2IMAGE_MALLOC", None)
    if env_value is not None:
        env["FMRI2IMAGE_MALLOC"] = env_value
    return subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_on_glibc_and_off_on_request():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert run(None).stdout.strip() == "True"
    assert run("tuned").stdout.strip() == "True"
    assert run("system").stdout.strip() == "False"
    odd = run("jemalloc")
    assert odd.stdout.strip() == "True"
    assert "FMRI2IMAGE_MALLOC='jemalloc' is not understood" in odd.stderr


def test_the_command_line_tunes_it_before_the_command_runs(monkeypatch, capsys):
    import fmri2image.cli.main as cli

    calls = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append("tuned"))
    assert cli.main(["models"]) == 0
    assert calls == ["tuned"]
