"""``fmri2image make-demo-data``: writes, refuses a non-empty folder, forces, lists."""

from __future__ import annotations

import json

import pytest

from fmri2image.cli.main import main

SMALL = ["--n-train-categories", "2", "--images-per-category", "1", "--n-test-categories", "2"]
SMALL += ["--n-test-repeats", "1", "--n-voxels", "30", "--database-images", "1"]
SMALL += ["--pip-photos-only"]


def test_cli_writes_refuses_non_empty_and_forces(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["-q", "make-demo-data", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "Subject1.h5" in printed and "SNR 1" in printed and "took" in printed
    assert "19 images of 19 classes" in printed  # every pip category, one image each
    (out / "notes.txt").write_text("mine")

    assert main(["-q", "make-demo-data", str(out), *SMALL, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err

    old = sorted(p.name for p in (out / "training").iterdir())
    assert main(["-q", "make-demo-data", str(out), *SMALL, "--seed", "1", "--force"]) == 0
    new = sorted(p.name for p in (out / "training").iterdir())
    assert new != old and len(new) == 2  # stale images of the first run are gone
    assert (out / "notes.txt").read_text() == "mine"  # files that are not the demo's stay
    from fmri2image.demo import DemoDatasetInfo

    info = DemoDatasetInfo.load(out)
    assert info.seed == 1 and info.parameters["n_voxels"] == 30


def test_cli_errors_name_the_flags(tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "make-demo-data",
                str(tmp_path / "x"),
                "--pip-photos-only",
                "--n-test-categories",
                "18",
            ]
        )
        == 2
    )
    assert "--n-test-categories" in capsys.readouterr().err
    assert (
        main(
            [
                "-q",
                "make-demo-data",
                "--pip-photos-only",
                "--photo-root",
                "darknet=/x",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "contradict" in capsys.readouterr().err
    assert main(["-q", "make-demo-data"]) == 2
    assert "OUT_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["make-demo-data", str(tmp_path / "x"), "--photo-root", "nodir"])
    assert not (tmp_path / "x").exists()


def test_cli_lists_the_catalogue(capsys):
    assert main(["make-demo-data", "--list-categories", "--pip-photos-only"]) == 0
    out = capsys.readouterr().out
    assert "19 of 65 categories installed: 13 training, 6 test, 0 database-only" in out
    assert main(["make-demo-data", "--list-categories", "--pip-photos-only", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 65
    tabby = next(r for r in rows if r["name"] == "tabby")
    assert tabby == {
        "wnid": "n02123045",
        "name": "tabby",
        "imagenet1k": True,
        "role": "test",
        "photos": ["skimage:chelsea.png"],
    }
    assert sum(r["role"] == "not installed" for r in rows) == 46


def test_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["make-demo-data", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in (
        "(default: 1500",
        "(default: 1)",
        "(default: 4; 0: no database)",
        "(default: 10 when at least 40 categories are available, else 6",
    ):
        assert phrase in text, phrase
