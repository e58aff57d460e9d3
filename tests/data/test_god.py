"""Loading GOD subjects: both releases, legacy keys and every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fmri2image.data import BDataBuilder
from fmri2image.data.bdata import MissingDataFileError
from fmri2image.data.god import find_subject_files, load_god_subject, parse_subject
from fmri2image.errors import ConfigError, DataFormatError

bdpy = pytest.importorskip("bdpy")


@pytest.mark.parametrize("roi", ["ROI_VC", "ROI_V1 + ROI_V2", "ROI_V*", "ROI_VC = 1"])
def test_load_matches_bdpy(fake_god, roi):
    subj = load_god_subject(fake_god.root, 3, roi)
    ref = bdpy.BData(str(fake_god.files[0]))
    assert subj.voxels.dtype == np.float32
    np.testing.assert_array_equal(subj.voxels, ref.select(roi).astype(np.float32))
    np.testing.assert_array_equal(subj.stimulus_ids, ref.select("stimulus_id")[:, 0])
    np.testing.assert_array_equal(subj.data_types, ref.select("DataType")[:, 0])
    np.testing.assert_array_equal(subj.runs, ref.select("Run")[:, 0])
    _, index = ref.select(roi, return_index=True)
    np.testing.assert_array_equal(subj.voxel_xyz[:, 0], ref.get_metadata("voxel_x")[index])


def test_subject_fields(fake_god):
    subj = load_god_subject(fake_god.root, "Subject3")
    mask = fake_god.roi_masks["ROI_VC"]
    assert subj.subject == 3 and subj.roi == "ROI_VC"
    assert subj.n_voxels == 38 == mask.sum()
    np.testing.assert_array_equal(subj.voxels, fake_god.voxels[:, mask].astype(np.float32))
    np.testing.assert_array_equal(subj.voxel_xyz, fake_god.xyz[mask])
    assert subj.roi_sizes == {k: int(v.sum()) for k, v in fake_god.roi_masks.items()}
    assert subj.wnids[0] == "n01518878" and subj.wnids[1] == "n01621127"
    assert subj.stimulus_ids[1] == 1621127.01902
    assert subj.sources == fake_god.files
    assert np.bincount(subj.data_types).tolist() == [0, 12, 12, 6]
    # Train run 1 and test run 1 are different runs.
    groups = subj.run_groups
    assert groups[subj.data_types == 1][0] != groups[subj.data_types == 2][0]
    assert np.unique(groups).size == 6
    with pytest.raises(ValueError, match="read-only"):
        subj.voxels[0, 0] = 1.0


def test_load_from_file_path_infers_subject(fake_god):
    subj = load_god_subject(fake_god.files[0], roi="ROI_V1")
    assert subj.subject == 3 and subj.n_voxels == 10


def test_split_release_equals_single_file(make_fake_god):
    spm = make_fake_god(seed=5)
    split = make_fake_god(seed=5, release="fmriprep")
    a = load_god_subject(spm.root, 3, "ROI_LVC")
    b = load_god_subject(split.root, 3, "ROI_LVC")
    assert [p.name for p in b.sources] == [
        "Subject3_ImageNetTraining.h5",
        "Subject3_ImageNetTest.h5",
        "Subject3_Imagery.h5",
    ]
    for name in ("voxels", "stimulus_ids", "runs", "data_types", "voxel_xyz"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert b.sample_source.tolist() == [0] * 12 + [1] * 12 + [2] * 6
    assert np.unique(b.run_groups).size == 6


def test_split_release_without_imagery(make_fake_god):
    god = make_fake_god(release="fmriprep")
    god.files[2].unlink()
    subj = load_god_subject(god.root, 3)
    assert set(subj.data_types.tolist()) == {1, 2}


def test_legacy_label_key_and_spelling(make_fake_god):
    god = make_fake_god(label_key="Label", legacy_names=True)
    subj = load_god_subject(god.root, 3)
    np.testing.assert_array_equal(subj.stimulus_ids, god.stimulus_ids)


def test_find_subject_files(make_fake_god):
    god = make_fake_god(release="fmriprep")
    assert len(find_subject_files(god.root, 3)) == 3
    shutil.copy(god.files[0], god.root / "Subject3.h5")
    with pytest.raises(ConfigError, match="both the SPM release"):
        find_subject_files(god.root, 3)
    assert find_subject_files(god.root, 3, release="spm") == (god.root / "Subject3.h5",)
    assert len(find_subject_files(god.root, "sub-03", release="fmriprep")) == 3
    with pytest.raises(MissingDataFileError) as exc:
        find_subject_files(god.root, 2)
    msg = str(exc.value)
    for name in ("Subject2.h5", "Subject2_ImageNetTraining.h5", "Subject2_Imagery.h5"):
        assert name in msg
    assert "Subject3.h5" in msg  # lists what is there
    with pytest.raises(MissingDataFileError, match="does not exist"):
        find_subject_files(god.root / "nowhere", 3)


def test_parse_subject():
    assert parse_subject(3) == parse_subject("3") == parse_subject("Subject3") == 3
    assert parse_subject("sub-03") == 3
    for bad in ("three", 0, "sub-00"):
        with pytest.raises(ConfigError):
            parse_subject(bad)


def test_not_hdf5(tmp_path):
    (tmp_path / "Subject1.h5").write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataFormatError, match="not an HDF5 file"):
        load_god_subject(tmp_path, 1)


def test_folder_needs_subject(fake_god):
    with pytest.raises(ConfigError, match=r"Subjects found there: \[3\]"):
        load_god_subject(fake_god.root)


def test_missing_roi_lists_available(fake_god):
    with pytest.raises(DataFormatError) as exc:
        load_god_subject(fake_god.root, 3, roi="ROI_V9")
    assert "ROI_V1, ROI_V2" in str(exc.value) and "ROI_HVC" in str(exc.value)


def test_roi_query_selecting_labels_is_rejected(fake_god):
    with pytest.raises(DataFormatError, match="not voxels"):
        load_god_subject(fake_god.root, 3, roi="ROI_V1 + DataType")


def test_missing_datatype(tmp_path):
    b = BDataBuilder().add(np.zeros((4, 3)), "VoxelData")
    b.add_metadata("ROI_VC", [1, 1, 1], "vc", where="VoxelData")
    b.add(np.ones(4), "Run").add(np.full(4, 1518878.005958), "stimulus_id")
    b.write(tmp_path / "Subject1.h5")
    with pytest.raises(DataFormatError, match="no 'DataType' column"):
        load_god_subject(tmp_path, 1)


def test_missing_stimulus_id(tmp_path):
    b = BDataBuilder().add(np.zeros((4, 3)), "VoxelData")
    b.add_metadata("ROI_VC", [1, 1, 1], "vc", where="VoxelData")
    b.add(np.ones(4), "Run").add(np.ones(4), "DataType")
    b.write(tmp_path / "Subject1.h5")
    with pytest.raises(DataFormatError, match="'stimulus_id' or 'Label'"):
        load_god_subject(tmp_path, 1)


def test_nan_voxels(make_fake_god):
    god = make_fake_god(nan_voxels=(3, 12, 39))  # voxel 39 is outside ROI_VC
    with pytest.raises(DataFormatError) as exc:
        load_god_subject(god.root, 3)
    assert "2 of 38 voxel columns of ROI 'ROI_VC' contain NaN" in str(exc.value)
    assert "drop_nan_voxels=True" in str(exc.value)
    subj = load_god_subject(god.root, 3, drop_nan_voxels=True)
    assert subj.n_voxels == 36 and subj.n_dropped_nan_voxels == 2
    assert not np.isnan(subj.voxels).any()
    assert subj.voxel_xyz.shape == (36, 3)
    assert 3 * 3.0 not in subj.voxel_xyz[:, 0]  # voxel 3's x coordinate is gone
    assert load_god_subject(god.root, 3, roi="ROI_V4").n_voxels == 4  # clean ROI loads


def test_split_files_with_different_voxels(make_fake_god):
    god = make_fake_god(release="fmriprep")
    other = make_fake_god(release="fmriprep", n_voxels=36)
    shutil.copy(other.files[1], god.files[1])
    with pytest.raises(DataFormatError, match=r"38 voxels in Subject3_ImageNetTraining\.h5 but 36"):
        load_god_subject(god.root, 3)


def test_split_files_with_different_coordinates(make_fake_god):
    god = make_fake_god(release="fmriprep")
    import h5py

    with h5py.File(god.files[2], "r+") as fh:
        keys = [k.decode() for k in fh["metadata/key"][()]]
        fh["metadata/value"][keys.index("voxel_x"), 0] += 1.0
    with pytest.raises(DataFormatError, match="coordinates"):
        load_god_subject(god.root, 3)


def test_nan_voxels_in_one_split_file_drop_everywhere(make_fake_god):
    god = make_fake_god(release="fmriprep", nan_voxels=(3,))  # NaN in a training sample only
    with pytest.raises(DataFormatError, match="1 of 38"):
        load_god_subject(god.root, 3)
    subj = load_god_subject(god.root, 3, drop_nan_voxels=True)
    assert subj.n_voxels == 37 and not np.isnan(subj.voxels).any()
    keep = np.delete(np.flatnonzero(god.roi_masks["ROI_VC"]), 3)
    np.testing.assert_array_equal(subj.voxels[-1], god.voxels[-1, keep].astype(np.float32))
