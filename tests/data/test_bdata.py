"""BData reader/writer against bdpy, the reference implementation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from fmri2image.data.bdata import (
    BDataBuilder,
    MetadataKeyError,
    MissingDataFileError,
    parse_query,
    read_bdata,
)
from fmri2image.errors import ConfigError, DataFormatError

bdpy = pytest.importorskip("bdpy")

QUERIES = [
    "ROI_VC",
    "ROI_V1 + ROI_V2",
    "ROI_V1 | ROI_V2",
    "ROI_V*",
    "ROI_VC = 1",
    "ROI_V1 & ROI_V2",
    "ROI_VC - ROI_V1",
    "VoxelData - ROI_VC",
    "(ROI_V1 + ROI_LOC) - ROI_V2",
    "ROI_V1 + ROI_V2 & ROI_LVC",  # left-associative, as in bdpy
    "DataType",
    "ROI_LOC + DataType + Run",
    "'ROI_FFA'",
]


@pytest.mark.parametrize("query", QUERIES)
def test_select_equals_bdpy(fake_god, query):
    path = fake_god.files[0]
    ref = bdpy.BData(str(path))
    bd = read_bdata(path)
    expected, ref_index = ref.select(query, return_index=True)
    got = bd.select(query)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(bd.column_mask(query), ref_index)
    assert got.shape[1] > 0


def test_metadata_and_dataset_equal_bdpy(fake_god):
    path = fake_god.files[0]
    ref = bdpy.BData(str(path))
    bd = read_bdata(path)
    assert bd.shape == ref.dataset.shape
    assert list(bd.keys) == list(ref.metadata.key)
    np.testing.assert_array_equal(bd.dataset, ref.dataset)
    for key in bd.keys:
        np.testing.assert_array_equal(bd.metadata(key), ref.get_metadata(key))
    np.testing.assert_array_equal(
        bd.metadata("voxel_x", where="ROI_V1"), ref.get_metadata("voxel_x", where="ROI_V1")
    )
    assert bd.description("ROI_V1") == "1 = ROI ROI_V1"
    np.testing.assert_array_equal(bd.get("DataType"), fake_god.data_types)
    assert "callstack" in bd.header  # bdpy's header is read


def test_select_reads_scattered_columns(tmp_path):
    # More than 64 separate column runs exercises the span-read path.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 300))
    flags = np.where(np.arange(300) % 3 == 0, 1.0, np.nan)
    b = bdpy.BData()
    b.add(x, "VoxelData")
    b.add_metadata("ROI_sparse", flags, "every third", where="VoxelData")
    b.save(str(tmp_path / "s.h5"))
    bd = read_bdata(tmp_path / "s.h5")
    np.testing.assert_array_equal(bd.select("ROI_sparse"), x[:, ::3])
    np.testing.assert_array_equal(
        bd.select("ROI_sparse", dtype=np.float32), x[:, ::3].astype(np.float32)
    )


def test_builder_output_loads_in_bdpy(tmp_path):
    rng = np.random.default_rng(0)
    vox = rng.normal(size=(7, 12))
    b = BDataBuilder()
    b.add(rng.integers(1, 4, 7), "DataType")  # a label before the voxels
    b.add(vox[:, :5], "VoxelData")
    b.add(vox[:, 5:], "VoxelData")  # extending a key, as bdpy.BData.add does
    v1 = np.r_[np.ones(4), np.full(8, np.nan)]
    b.add_metadata("ROI_V1", v1, "1 = V1", where="VoxelData")
    b.add_metadata("ROI_V2", np.r_[np.nan, np.ones(12)], "1 = V2")  # all 13 columns
    b.add_metadata("voxel_x", np.arange(12.0), "x", where="VoxelData")
    b.add(np.arange(7.0) + 0.5, "stimulus_id")
    b.add_vmap("DataType", {1: "train", 2: "test", 3: "imagery"})
    out = b.write(tmp_path / "ours.h5")

    ref = bdpy.BData(str(out))
    ours = read_bdata(out)
    assert list(ref.metadata.key) == list(ours.keys)
    for q in ("VoxelData", "ROI_V1", "ROI_V2", "ROI_V* - ROI_V1", "DataType + stimulus_id"):
        np.testing.assert_array_equal(ours.select(q), ref.select(q))
    np.testing.assert_array_equal(ref.select("VoxelData"), vox)
    np.testing.assert_array_equal(ref.get_metadata("voxel_x", where="VoxelData"), np.arange(12.0))
    assert ref.get_vmap("DataType") == {1.0: "train", 2.0: "test", 3.0: "imagery"}
    assert ours.vmap["DataType"][2.0] == "test"
    assert ours.description("ROI_V1") == "1 = V1"
    # The same content through bdpy's own writer gives the same metadata matrix.
    ref2 = bdpy.BData()
    ref2.add(ours.get("DataType"), "DataType")
    ref2.add(vox, "VoxelData")
    ref2.add_metadata("ROI_V1", v1, "1 = V1", where="VoxelData")
    ref2.add_metadata("ROI_V2", np.r_[np.nan, np.ones(12)], "1 = V2")
    ref2.add_metadata("voxel_x", np.arange(12.0), "x", where="VoxelData")
    ref2.add(np.arange(7.0) + 0.5, "stimulus_id")
    np.testing.assert_array_equal(ours.metadata_values, ref2.metadata.value)


def test_builder_write_is_atomic_and_legacy_spelling(tmp_path):
    b = BDataBuilder().add(np.ones((3, 2)), "VoxelData")
    path = b.write(tmp_path / "legacy.h5", legacy_names=True)
    with h5py.File(path) as fh:
        assert {"dataSet", "metaData"} <= set(fh)
        assert "dataset" not in fh
    assert [p.name for p in tmp_path.iterdir()] == ["legacy.h5"]  # no temp leftovers
    np.testing.assert_array_equal(read_bdata(path).select("VoxelData"), np.ones((3, 2)))
    np.testing.assert_array_equal(bdpy.BData(str(path)).select("VoxelData"), np.ones((3, 2)))


def test_legacy_spelling_from_bdpy_file(make_fake_god):
    god = make_fake_god(legacy_names=True)
    bd = read_bdata(god.files[0])
    np.testing.assert_array_equal(bd.select("ROI_V1"), god.voxels[:, god.roi_masks["ROI_V1"]])
    ref = bdpy.BData(str(god.files[0]))  # bdpy reads the legacy spelling too
    np.testing.assert_array_equal(bd.select("ROI_V*"), ref.select("ROI_V*"))


def test_builder_rejects_bad_input():
    b = BDataBuilder().add(np.zeros((4, 3)), "VoxelData")
    with pytest.raises(ConfigError, match="samples"):
        b.add(np.zeros(5), "Run")
    with pytest.raises(ConfigError, match="3 columns"):
        b.add_metadata("ROI_V1", [1, 1], where="VoxelData")
    with pytest.raises(ConfigError, match="no key 'Voxels'"):
        b.add_metadata("ROI_V1", [1, 1, 1], where="Voxels")
    with pytest.raises(ConfigError, match="nothing to write"):
        BDataBuilder().write("never.h5")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(MissingDataFileError, match="does not exist"):
        read_bdata(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataFormatError, match="not an HDF5 file"):
        read_bdata(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["images"] = np.zeros(3)
    with pytest.raises(DataFormatError, match="not a BData file"):
        read_bdata(tmp_path / "other.h5")
    with h5py.File(tmp_path / "bad_md.h5", "w") as fh:
        fh["dataset"] = np.zeros((2, 3))
        fh["metadata/key"] = [b"a"]
        fh["metadata/description"] = [b"a"]
        fh["metadata/value"] = np.ones((1, 4))
    with pytest.raises(DataFormatError, match=r"expected \(1, 3\)"):
        read_bdata(tmp_path / "bad_md.h5")


def test_query_errors(fake_god):
    bd = read_bdata(fake_god.files[0])
    with pytest.raises(MetadataKeyError, match="Did you mean: ROI_V1"):
        bd.select("ROI_V11")
    with pytest.raises(MetadataKeyError, match="not in"):
        bd.select("ROI_X*")
    with pytest.raises(ConfigError, match="top-N"):
        bd.select("ROI_VC @ 10")
    with pytest.raises(ConfigError, match="Unbalanced"):
        bd.select("(ROI_V1 + ROI_V2")
    with pytest.raises(ConfigError, match="Empty"):
        bd.select("  ")
    with pytest.raises(ConfigError, match="lacks an operand"):
        bd.select("ROI_V1 +")
    with pytest.raises(DataFormatError, match="exactly one"):
        bd.get("ROI_V1")


def test_equality_compares_values(tmp_path):
    # voxel_x = 3 picks the columns whose value is 3 (bdpy would compare 0/1 flags).
    b = BDataBuilder().add(np.arange(12.0).reshape(3, 4), "VoxelData")
    b.add_metadata("voxel_x", [0, 3, 3, 6], "x", where="VoxelData")
    bd = read_bdata(b.write(tmp_path / "x.h5"))
    np.testing.assert_array_equal(bd.column_index("voxel_x = 3"), [1, 2])
    np.testing.assert_array_equal(bd.column_index("voxel_x = 3.0 | voxel_x = 6"), [1, 2, 3])
    np.testing.assert_array_equal(bd.column_index("VoxelData - voxel_x = 3"), [0, 3])


def test_parse_query_precedence():
    assert parse_query("A + B - C") == ("A", "B", "|", "C", "-")
    assert parse_query("A - (B + C)") == ("A", "B", "C", "|", "-")
    assert parse_query("A = 1 | B") == ("A", "1", "=", "B", "|")


def test_package_exports_resolve():
    import fmri2image.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError):
        data.no_such_name  # noqa: B018


@pytest.mark.parametrize("keep", [0.05, 0.6])
def test_truncated_file_is_a_data_format_error(fake_god, tmp_path, keep):
    """A cut download fails with a message, whether the cut hits metadata or data."""
    data = fake_god.files[0].read_bytes()
    cut = tmp_path / "Subject3.h5"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataFormatError, match=r"damaged or incomplete.*download the file again"):
        bd = read_bdata(cut)
        bd.select("ROI_VC")
