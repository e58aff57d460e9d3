"""Every bad input to `decode` / `demo`: exit 2, one paragraph, no traceback, nothing left.

Each check must fire before any image is embedded, so none of these tests loads a
network: the results folder not existing afterwards proves no work was done.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fmri2image.cli.main import main


def decode(god, out, *extra):
    return [
        "decode", "--god", str(god), "--subject", "1", "--model", "effnet-lite0",
        "--out", str(out), *extra,
    ]  # fmt: skip


def assert_clean_error(capsys, rc, *needles, argparse_error=False):
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if argparse_error:
        assert lines[-1].startswith("fmri2image ") and "error: argument" in lines[-1]
    else:
        # our own errors: exactly one line (one paragraph), prefixed by the command
        (line,) = [x for x in lines if " error: " in x]
        assert line.startswith("fmri2image ") and len(lines) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def run_cli(args, capsys):
    try:
        return main(["-q", *args])
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--cv", "loo", "--cv-groups", "category"], ["--cv loo", "--cv-groups none"]),
        (["--cv", "50"], ["--cv 50", "48 training samples"]),
        (["--cv", "10", "--cv-groups", "category"], ["--cv 10", "6 training categories"]),
        (["--n-voxels", "10000"], ["--n-voxels 10000", "20 voxels"]),
        (["--cv", "loo", "--n-voxels", "5"], ["--n-voxels with --cv loo"]),
        (["--database", "/nonexistent/db"], ["--database /nonexistent/db", "no such folder"]),
        (["--database", "text-prototypes:9k"], ["vocabulary '9k'", "text-prototypes:21k"]),
        (["--database", "text-prototypes"], ["no text tower", "--database prototypes"]),
        (["--roi", "ROI_NOPE"], ["ROI_NOPE"]),
        (["--release", "fmriprep"], ["Subject1_ImageNetTraining"]),
    ],
)
def test_bad_option_values(small_god, tmp_path, capsys, extra, needles):
    out = tmp_path / "out"
    rc = run_cli(decode(small_god, out, *extra), capsys)
    assert_clean_error(capsys, rc, *needles)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--cv", "1"], "--cv"),
        (["--cv", "abc"], "--cv"),
        (["--k", "0"], "--k"),
        (["--alphas", "1:2"], "--alphas"),
        (["--batch-size", "0"], "--batch-size"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_malformed_values_are_argparse_errors(small_god, tmp_path, capsys, extra, needle):
    out = tmp_path / "out"
    rc = run_cli(decode(small_god, out, *extra), capsys)
    assert_clean_error(capsys, rc, needle, argparse_error=True)
    assert not out.exists()


def test_out_is_a_file(small_god, tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    rc = run_cli(decode(small_god, f), capsys)
    assert_clean_error(capsys, rc, "--out", "is a file")
    assert f.read_text() == "keep me"


def test_out_cannot_be_written(small_god, capsys):
    rc = run_cli(decode(small_god, "/proc/fmri2image-test/out"), capsys)
    assert_clean_error(capsys, rc, "--out /proc/fmri2image-test/out cannot be written")


def test_unknown_device(small_god, tmp_path, capsys):
    out = tmp_path / "out"
    rc = run_cli(decode(small_god, out, "--device", "gpu0"), capsys)
    assert_clean_error(capsys, rc, "--device", "cpu")
    assert not out.exists()


def test_missing_cuda_is_reported_before_work(small_god, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    rc = run_cli(decode(small_god, out, "--device", "cuda"), capsys)
    assert_clean_error(capsys, rc, "--device cuda", "--device cpu")
    assert not out.exists()


def test_truncated_fmri_file(small_god, tmp_path, capsys):
    god = tmp_path / "god"
    shutil.copytree(small_god, god)
    data = (god / "Subject1.h5").read_bytes()
    (god / "Subject1.h5").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    rc = run_cli(decode(god, out), capsys)
    assert_clean_error(capsys, rc, "Subject1.h5", "download the file again")
    assert not out.exists()


def test_corrupt_stimulus_images_are_all_listed(small_god, tmp_path, capsys):
    god = tmp_path / "god"
    shutil.copytree(small_god, god)
    names = (god / "imageID_training.csv").read_text().splitlines()
    bad_rows = (2, 7)
    for row in bad_rows:
        p = god / "training" / names[row - 1].split(",")[1]
        p.write_bytes(p.read_bytes()[:200])
    out = tmp_path / "out"
    rc = run_cli(decode(god, out), capsys)
    err = assert_clean_error(capsys, rc, "2 of 48 training stimulus images cannot be read")
    for row in bad_rows:
        assert f"{row}: {god / 'training' / names[row - 1].split(',')[1]}" in err
    assert not out.exists()
    rc = main(["-q", "data-info", "--god", str(god), "--subject", "1", "--require-images"])
    assert_clean_error(capsys, rc, "2 of 48 training stimulus images cannot be read")


def test_nan_voxels_need_the_flag(tmp_path, capsys):
    from _planted import write_planted_god

    from fmri2image.data import load_god_subject
    from fmri2image.data.layout import write_god_subject

    god = tmp_path / "god"
    write_planted_god(god, n_train_categories=6, n_test_categories=3, n_voxels=20, planted=False)
    subj = load_god_subject(god, 1)
    voxels = subj.voxels.copy()
    voxels[3, 5] = np.nan
    write_god_subject(
        god / "Subject1.h5", voxels, data_type=subj.data_types, run=subj.runs,
        stimulus_id=subj.stimulus_ids, rois={"V1": np.ones(20, bool)},
    )  # fmt: skip
    out = tmp_path / "out"
    rc = run_cli(decode(god, out), capsys)
    assert_clean_error(capsys, rc, "--drop-nan-voxels")
    assert not out.exists()


def test_demo_rejects_unknown_model_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = run_cli(["demo", "--out", str(out), "--model", "effnet-lite00"], capsys)
    assert_clean_error(capsys, rc, "effnet-lite00", "effnet-lite0")
    assert not out.exists()


@pytest.mark.parametrize(
    "model, database, needles",
    [
        ("vit", "prototypes", ["'vit' has no ImageNet-1k classifier head", "fmri2image extract"]),
        ("clip", "prototypes", ["'clip' has no ImageNet-1k classifier head", "text-prototypes"]),
        ("resnet50", "text-prototypes:21k", ["'resnet50' has no text tower"]),
    ],
)
def test_database_the_encoder_cannot_serve(small_god, tmp_path, capsys, model, database, needles):
    """Known from the encoder's spec alone: no weights are loaded, no data read."""
    out = tmp_path / "out"
    args = decode(small_god, out, "--database", database)
    args[args.index("effnet-lite0")] = model
    rc = run_cli(args, capsys)
    assert_clean_error(capsys, rc, *needles)
    assert not out.exists()


def test_demo_with_a_model_not_on_this_machine_fails_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    out = tmp_path / "demo"
    rc = run_cli(["demo", "--out", str(out), "--model", "vit"], capsys)
    assert_clean_error(capsys, rc, "google/vit-base-patch16-224-in21k", "HF_HUB_OFFLINE")
    assert not out.exists()
