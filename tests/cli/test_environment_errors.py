"""A full disk, a read-only file system, denied permissions: one paragraph, exit 2."""

from __future__ import annotations

import errno

import pytest

from fmri2image.cli import main as cli_main


def _failing_command(monkeypatch, exc):
    """`fmri2image models` whose work raises ``exc`` (as a write deep inside would)."""
    import fmri2image.cli.models_cmd as models_cmd

    def boom(args):
        raise exc

    monkeypatch.setattr(models_cmd, "run", boom)


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        (errno.ENOSPC, "disk is full"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_environment_failures_are_messages(monkeypatch, capsys, code, needle):
    exc = OSError(code, "system says no", "/data/out/shard-00003.npy")
    _failing_command(monkeypatch, exc)
    assert cli_main.main(["models"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.strip()]
    assert line.startswith("fmri2image models: error: system says no (/data/out/shard-00003.npy)")
    assert needle in line and "--debug" in line


def test_debug_shows_the_traceback(monkeypatch):
    _failing_command(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space"):
        cli_main.main(["--debug", "models"])


def test_other_os_errors_stay_program_errors(monkeypatch):
    # A bare ENOENT from deep inside is a bug (inputs are checked first): keep the traceback.
    _failing_command(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file", "/x"))
    with pytest.raises(FileNotFoundError):
        cli_main.main(["models"])


def test_a_real_full_disk_during_evaluate(monkeypatch, tmp_path, capsys):
    """ENOSPC while the scores table is written: a message, and no partial CSV left."""
    import numpy as np
    from PIL import Image

    import fmri2image._io as io

    rng = np.random.default_rng(0)
    for side in ("gt", "rec"):
        (tmp_path / side).mkdir()
        for i in range(2):
            noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(noise).save(tmp_path / side / f"im{i}.png")
    real_replace = io.os.replace

    def full_disk(src, dst):
        if str(dst).endswith(".csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", full_disk)
    out = tmp_path / "scores" / "s.csv"
    rc = cli_main.main(["evaluate", "--recon", str(tmp_path / "rec"), "--gt", str(tmp_path / "gt"),
                        "--metrics", "ssim", "--bootstrap", "10", "--out", str(out)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "disk is full" in err and str(out) in err and "Traceback" not in err
    assert not out.exists() and not [p for p in out.parent.iterdir() if p.suffix == ".csv"]
