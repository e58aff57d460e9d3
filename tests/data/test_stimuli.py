"""Stimulus id files, image resolution and image loading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fmri2image.data.bdata import MissingDataFileError
from fmri2image.data.god import load_god_subject
from fmri2image.data.ids import stimulus_id_keys
from fmri2image.data.stimuli import (
    check_stimulus_ids,
    load_images,
    load_stimulus_set,
    read_id_file,
)
from fmri2image.errors import DataFormatError, MissingImageError


def test_read_id_file_plain_and_quoted(tmp_path):
    (tmp_path / "a.csv").write_text(
        "1518878.010042,n01518878_10042.JPEG\n1621127.01902,n01621127_19020.JPEG\n\n"
    )
    (tmp_path / "b.csv").write_text(
        '1518878.010042,"n01518878_10042.JPEG"\r\n"1621127.019020", "n01621127_19020.JPEG"\r\n'
    )
    for name in ("a.csv", "b.csv"):
        ids, names = read_id_file(tmp_path / name)
        assert ids.dtype == np.float64
        assert stimulus_id_keys(ids).tolist() == [1518878010042, 1621127019020]
        assert names == ("n01518878_10042.JPEG", "n01621127_19020.JPEG")


def test_read_id_file_one_column_derives_names(tmp_path):
    (tmp_path / "ids.csv").write_text("1621127.01902\n1518878.005958\n")
    _, names = read_id_file(tmp_path / "ids.csv")
    assert names == ("n01621127_19020", "n01518878_5958")


def test_read_id_file_errors(tmp_path):
    with pytest.raises(MissingDataFileError):
        read_id_file(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("1518878.010042,n01518878_10042.JPEG\nabc,x.JPEG\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_id_file(tmp_path / "bad.csv")
    (tmp_path / "mismatch.csv").write_text("1621127.01902,n01621127_1902.JPEG\n")
    with pytest.raises(DataFormatError, match="encodes n01621127_19020"):
        read_id_file(tmp_path / "mismatch.csv")
    (tmp_path / "dup.csv").write_text("1.5,n00000001_500000.JPEG\n1.5,n00000001_500000.JPEG\n")
    with pytest.raises(DataFormatError, match="more than once"):
        read_id_file(tmp_path / "dup.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataFormatError, match="no rows"):
        read_id_file(tmp_path / "empty.csv")


@pytest.mark.parametrize(
    ("id_style", "quote", "ext"),
    [("imageID", False, ".JPEG"), ("image_id", True, ".jpg"), ("imageID", True, ".png")],
)
def test_load_stimulus_set_variants(make_fake_god, id_style, quote, ext):
    god = make_fake_god(id_style=id_style, quote_names=quote, image_ext=ext)
    train = load_stimulus_set(god.root, "training")
    test = load_stimulus_set(god.root, "test")
    train_keys = stimulus_id_keys(god.stimulus_ids[god.data_types == 1])
    test_keys = stimulus_id_keys(god.stimulus_ids[god.data_types == 2])
    assert len(train) == 12 and len(test) == 3
    assert set(stimulus_id_keys(train.ids)) == set(train_keys)
    assert set(stimulus_id_keys(test.ids)) == set(test_keys)
    assert "n01621127_19020" in train.image_names
    assert all(p is not None and p.suffix == ext and p.is_file() for p in train.paths)
    assert train.wnids[train.image_names.index("n01621127_19020")] == "n01621127"
    assert train.missing == ()
    # fMRI ids map onto rows of the set
    subj = load_god_subject(god.root, 3)
    rows = train.index_of(subj.stimulus_ids[subj.data_types == 1])
    np.testing.assert_array_equal(
        stimulus_id_keys(train.ids[rows]), stimulus_id_keys(subj.stimulus_ids[subj.data_types == 1])
    )


def test_stimuli_in_subfolder(make_fake_god, tmp_path):
    god = make_fake_god(stimuli=False)
    donor = make_fake_god()
    sub = god.root / "images"
    sub.mkdir()
    for item in ("training", "test", "imageID_training.csv", "imageID_test.csv"):
        (donor.root / item).rename(sub / item)
    assert load_stimulus_set(god.root, "test").image_dir == sub / "test"


def test_missing_image(make_fake_god):
    god = make_fake_god(missing_images=("n01621127_19020",))
    with pytest.raises(MissingImageError) as exc:
        load_stimulus_set(god.root, "training")
    msg = str(exc.value)
    assert "1621127.019020" in msg and str(god.root / "training" / "n01621127_19020.JPEG") in msg
    stim = load_stimulus_set(god.root, "training", allow_missing=True)
    assert stim.missing == (str(god.root / "training" / "n01621127_19020.JPEG"),)
    assert stim.paths[stim.image_names.index("n01621127_19020")] is None
    assert sum(p is None for p in stim.paths) == 1


def test_missing_id_file_and_folder(make_fake_god):
    god = make_fake_god(stimuli=False)
    with pytest.raises(MissingDataFileError) as exc:
        load_stimulus_set(god.root, "training")
    assert "imageID_training.csv" in str(exc.value) and "image_training_id.csv" in str(exc.value)
    (god.root / "imageID_test.csv").write_text("1443537.022563,n01443537_22563.JPEG\n")
    with pytest.raises(MissingImageError, match="does not exist"):
        load_stimulus_set(god.root, "test")


def test_fmri_ids_must_be_in_id_file(fake_god):
    subj = load_god_subject(fake_god.root, 3)
    test = load_stimulus_set(fake_god.root, "test")
    check_stimulus_ids(subj.stimulus_ids[subj.data_types == 2], test)
    with pytest.raises(DataFormatError, match=r"12 fMRI stimulus id\(s\) are not listed") as exc:
        check_stimulus_ids(subj.stimulus_ids[subj.data_types == 1], test)
    assert "n01621127_19020" in str(exc.value)


def test_load_images(fake_god, tmp_path):
    stim = load_stimulus_set(fake_god.root, "test")
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 4), 100).save(gray)
    images = load_images([*stim.paths, gray], progress=False)
    assert len(images) == 4 and all(im.mode == "RGB" for im in images)
    assert images[-1].size == (5, 4) and images[-1].getpixel((0, 0)) == (100, 100, 100)
    with pytest.raises(MissingImageError):
        load_images([None])
    (tmp_path / "broken.JPEG").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="cannot be decoded"):
        load_images([tmp_path / "broken.JPEG"])
