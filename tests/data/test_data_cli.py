"""``fmri2image data-info``: output and every user error (exit 2, no traceback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from fmri2image.cli.main import main
from fmri2image.data import BDataBuilder
from fmri2image.errors import DataFormatError, MissingImageError


def _run(capsys, *args):
    rc = main(["data-info", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_summary(fake_god, capsys):
    rc, out, err = _run(capsys, "--god", fake_god.root, "--subject", 3, "--json")
    assert rc == 0, err
    info = json.loads(out)
    assert info["n_train"] == 12
    assert info["n_test_trials"] == 12
    assert info["n_test_images"] == 3
    assert info["test_repeats"] == [4]
    assert info["n_imagery_trials"] == 6
    assert info["n_voxels"] == 38
    assert info["n_train_categories"] == 6
    assert info["n_test_categories"] == 3
    assert info["rois"]["ROI_V1"] == 10 and info["rois"]["ROI_VC"] == 38
    assert info["missing_images"] == []
    assert info["stimuli"]["training"]["n_images"] == 12


def test_text_summary_and_roi_expression(make_fake_god, capsys):
    god = make_fake_god(missing_images=("n01518878_5958",))
    rc, out, _ = _run(capsys, "--god", god.root, "--subject", 3, "--roi", "ROI_V1 + ROI_V2")
    assert rc == 0
    assert "ROI ROI_V1 + ROI_V2  (18 voxels)" in out
    assert "12 trials of 3 images" in out
    assert "n01518878_5958.JPEG" in out and "1 missing" in out
    rc, out, _ = _run(capsys, "--god", god.root, "--subject", 3, "--json")
    assert json.loads(out)["missing_images"] == [str(god.root / "training/n01518878_5958.JPEG")]


def test_without_stimuli(make_fake_god, capsys):
    god = make_fake_god(stimuli=False)
    rc, out, _ = _run(capsys, "--god", god.root, "--subject", 3, "--json")
    assert rc == 0 and json.loads(out)["stimuli"] == {"training": None, "test": None}
    rc, _, err = _run(capsys, "--god", god.root, "--subject", 3, "--require-images")
    assert rc == 2 and "imageID_training.csv" in err


def _assert_user_error(rc, err, *fragments):
    assert rc == 2
    assert err.startswith("fmri2image data-info: error: ")
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in err, err


def test_missing_subject_file(fake_god, capsys):
    rc, _, err = _run(capsys, "--god", fake_god.root, "--subject", 2)
    _assert_user_error(rc, err, "Subject2.h5", "Subject2_ImageNetTraining.h5")
    rc, _, err = _run(capsys, "--god", fake_god.root / "nope", "--subject", 3)
    _assert_user_error(rc, err, "does not exist")


def test_not_hdf5(tmp_path, capsys):
    (tmp_path / "Subject1.h5").write_text("oops")
    rc, _, err = _run(capsys, "--god", tmp_path, "--subject", 1)
    _assert_user_error(rc, err, "not an HDF5 file")


def test_unknown_roi(fake_god, capsys):
    rc, _, err = _run(capsys, "--god", fake_god.root, "--subject", 3, "--roi", "ROI_IT")
    _assert_user_error(rc, err, "ROI 'ROI_IT'", "ROI_LOC, ROI_FFA")


def test_no_datatype(tmp_path, capsys):
    b = BDataBuilder().add(np.zeros((2, 2)), "VoxelData")
    b.add_metadata("ROI_VC", [1, 1], "", where="VoxelData")
    b.write(tmp_path / "Subject4.h5")
    rc, _, err = _run(capsys, "--god", tmp_path, "--subject", 4)
    _assert_user_error(rc, err, "no 'DataType' column")


def test_nan_voxels(make_fake_god, capsys):
    god = make_fake_god(nan_voxels=(0,))
    rc, _, err = _run(capsys, "--god", god.root, "--subject", 3)
    _assert_user_error(rc, err, "1 of 38 voxel columns", "ROI 'ROI_VC'", "--drop-nan-voxels")
    rc, out, _ = _run(capsys, "--god", god.root, "--subject", 3, "--drop-nan-voxels", "--json")
    assert rc == 0 and json.loads(out)["n_voxels"] == 37


def test_split_release_mismatch(make_fake_god, capsys):
    god = make_fake_god(release="fmriprep")
    rc, out, _ = _run(capsys, "--god", god.root, "--subject", 3, "--json")
    assert rc == 0 and len(json.loads(out)["sources"]) == 3
    other = make_fake_god(release="fmriprep", n_voxels=30)
    shutil.copy(other.files[2], god.files[2])
    rc, _, err = _run(capsys, "--god", god.root, "--subject", 3)
    _assert_user_error(rc, err, "38 voxels", "30 in Subject3_Imagery.h5")


def test_id_file_mismatch(fake_god, capsys):
    (fake_god.root / "imageID_test.csv").write_text("1443537.022563,n01443537_22563.JPEG\n")
    rc, _, err = _run(capsys, "--god", fake_god.root, "--subject", 3)
    _assert_user_error(rc, err, "2 fMRI test stimulus id(s) are not listed", "n02139199_10398")


def test_missing_image_required(make_fake_god, capsys):
    god = make_fake_god(missing_images=("n03716966_14035",))
    rc, _, err = _run(capsys, "--god", god.root, "--subject", 3, "--require-images")
    _assert_user_error(rc, err, "3716966.014035", "test/n03716966_14035.JPEG")


def test_debug_shows_traceback(make_fake_god):
    god = make_fake_god(missing_images=("n03716966_14035",))
    with pytest.raises(MissingImageError):
        main(["--debug", "data-info", "--god", str(god.root), "--subject", "3", "--require-images"])
    with pytest.raises(DataFormatError):
        main(["--debug", "data-info", "--god", str(god.root), "--subject", "3", "--roi", "X"])


def test_console_script_exit_code(fake_god):
    args = ["data-info", "--god", str(fake_god.root), "--subject", "5"]
    base = [sys.executable, "-m", "fmri2image"]
    proc = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Subject5.h5" in proc.stderr
    proc = subprocess.run([*base, "--debug", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "MissingDataFileError" in proc.stderr
