"""Dataset paths stay inside the dataset: id-file names must be bare file names."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from fmri2image.cli.main import main
from fmri2image.data.stimuli import load_images, load_stimulus_set, read_id_file
from fmri2image.errors import DataFormatError

GOOD = "n01518878_10042.JPEG"
BAD_NAMES = (
    "../../outside/n02898369_9278.JPEG",
    "/etc/n02898369_9279.JPEG",
    "sub/dir/n02898369_9280.JPEG",
)
ROWS = (
    f"1518878.010042,{GOOD}",
    f"2898369.009278,{BAD_NAMES[0]}",
    f'2898369.009279,"{BAD_NAMES[1]}"',
    f"2898369.009280,{BAD_NAMES[2]}",
)

# Every file the process opens while ``_OPENED`` is a list (audit hooks cannot be removed,
# so the hook is installed once and switched on by the ``opened`` fixture).
_OPENED: list[str] | None = None


def _audit(event, args):
    if _OPENED is not None and event in ("open", "os.scandir", "os.listdir") and args:
        if isinstance(args[0], (str, bytes, os.PathLike)):
            _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@pytest.fixture
def opened(monkeypatch):
    """Record every path opened, listed or stat'ed from now on (clear it before acting)."""
    global _OPENED
    _OPENED = []
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if _OPENED is not None and isinstance(path, (str, bytes, os.PathLike)):
            _OPENED.append(os.fsdecode(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _touched(opened: list[str], folder: Path) -> list[str]:
    folder = folder.resolve()
    return [p for p in opened if os.path.realpath(p).startswith(str(folder) + os.sep)]


def _god_with_bad_names(tmp_path: Path) -> tuple[Path, Path]:
    """A GOD-layout folder whose training id file lists names leaving the folder."""
    root = tmp_path / "god"
    (root / "training").mkdir(parents=True)
    (root / "test").mkdir()
    Image.new("RGB", (8, 8)).save(root / "training" / GOOD)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "n02898369_9278.JPEG"  # what ../../outside/... would reach
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    (root / "imageID_training.csv").write_text("\n".join(ROWS) + "\n")
    (root / "imageID_test.csv").write_text(f"1518878.010042,{GOOD}\n")
    return root, secret


def test_read_id_file_lists_every_offending_name(tmp_path):
    root, _ = _god_with_bad_names(tmp_path)
    id_file = root / "imageID_training.csv"
    with pytest.raises(DataFormatError) as info:
        read_id_file(id_file)
    msg = str(info.value)
    assert "\n" not in msg  # one paragraph
    assert str(id_file) in msg and "3 stimulus image(s)" in msg
    for lineno, name in zip((2, 3, 4), BAD_NAMES):
        assert f"line {lineno}: {name!r}" in msg, msg
    assert GOOD not in msg.split("like")[0]  # the good row is not reported
    assert "bare file names" in msg
    assert str(root / "training") in msg and str(root / "test") in msg


def test_more_than_five_offenders_are_counted(tmp_path):
    rows = [f"2898369.{9000 + i:06d},../n02898369_{9000 + i}.JPEG" for i in range(8)]
    (tmp_path / "imageID_test.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataFormatError) as info:
        read_id_file(tmp_path / "imageID_test.csv")
    msg = str(info.value)
    assert "8 stimulus image(s)" in msg and "(and 3 more)" in msg
    assert "line 5:" in msg and "line 6:" not in msg
    assert str(tmp_path / "test") in msg


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "../n01518878_10042.JPEG",
        "./n01518878_10042.JPEG",
        "..\\n01518878_10042.JPEG",
        "C:n01518878_10042.JPEG",
        "C:\\data\\n01518878_10042.JPEG",
        "/n01518878_10042.JPEG",
    ],
)
def test_suspicious_names_rejected(tmp_path, name):
    (tmp_path / "ids.csv").write_text(f'1518878.010042,"{name}"\n')
    with pytest.raises(DataFormatError, match="line 1"):
        read_id_file(tmp_path / "ids.csv")


def test_load_stimulus_set_never_opens_outside_file(tmp_path, opened):
    root, secret = _god_with_bad_names(tmp_path)
    opened.clear()
    with pytest.raises(DataFormatError, match="not bare file names"):
        load_stimulus_set(root, "training", allow_missing=True)
    assert not _touched(opened, secret.parent), opened
    # Nothing under the image folder was looked at either: the check comes first.
    assert not _touched(opened, root / "training"), opened
    assert str(root / "imageID_training.csv") in opened  # the recorder works


def test_valid_dataset_still_loads(tmp_path):
    root, _ = _god_with_bad_names(tmp_path)
    (root / "imageID_training.csv").write_text(f"1518878.010042,{GOOD}\n")
    stim = load_stimulus_set(root, "training")
    assert stim.paths == (root / "training" / GOOD,)
    assert len(load_images(stim.paths, progress=False)) == 1


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_bare_name_symlink_outside_is_allowed(tmp_path):
    """Documented choice: a link placed in the image folder is followed."""
    root, secret = _god_with_bad_names(tmp_path)
    link = root / "training" / secret.name
    try:
        link.symlink_to(secret)
    except OSError:  # pragma: no cover - e.g. Windows without privilege
        pytest.skip("cannot create symlinks")
    (root / "imageID_training.csv").write_text(f"2898369.009278,{secret.name}\n")
    stim = load_stimulus_set(root, "training")
    assert stim.paths == (link,)


def test_cli_reports_names_outside_dataset(make_fake_god, capsys, opened):
    god = make_fake_god(subject=1)
    secret = god.root.parent / "outside" / "n01518878_5958.JPEG"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8)).save(secret)
    id_file = god.root / "imageID_training.csv"
    lines = id_file.read_text().splitlines()
    sid, name = lines[0].split(",")
    assert name == secret.name
    lines[0] = f"{sid},../../outside/{name}"
    lines[2] = f"{lines[2].split(',')[0]},/abs/{lines[2].split(',')[1]}"
    id_file.write_text("\n".join(lines) + "\n")
    opened.clear()
    rc = main(["data-info", "--god", str(god.root), "--subject", "1"])
    _, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("fmri2image data-info: error: ")
    assert "Traceback" not in err
    assert str(id_file) in err and "line 1:" in err and "line 3:" in err
    assert f"../../outside/{name}" in err and "bare file names" in err
    assert str(god.root / "training") in err
    assert not _touched(opened, secret.parent), opened
