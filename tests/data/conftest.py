"""Fake GOD datasets written in the real file formats (nilearn-style fixture writers).

The BData files are written with bdpy's own writer (``bdpy.BData.add`` /
``add_metadata`` / ``save``), so the reader is tested against the reference
implementation's output, not against our own writer.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# 6 training categories x 2 images (shown once), 3 test categories x 1 image (shown
# 4 times), imagery of the 3 test categories (2 trials each).  The second training
# id is the 1621127.01902 trap: its image number is 19020, not 1902.
TRAIN_IDS = (
    1518878.005958,
    1621127.01902,
    1621127.000001,
    1518878.010042,
    2084071.000123,
    2084071.004567,
    3064758.000042,
    3064758.100000,
    4254680.000777,
    4254680.002000,
    7753592.000311,
    7753592.000312,
)
TEST_IDS = (1443537.022563, 2139199.010398, 3716966.014035)
N_TEST_REPEATS = 4
N_IMAGERY_PER_CATEGORY = 2
ROI_LAYOUT = {  # voxel index ranges for n_voxels = 40; ROI_VC omits voxels 38-39
    "ROI_V1": range(0, 10),
    "ROI_V2": range(8, 18),
    "ROI_V3": range(18, 24),
    "ROI_V4": range(24, 28),
    "ROI_LOC": range(28, 34),
    "ROI_FFA": range(32, 36),
    "ROI_PPA": range(36, 38),
}


@dataclass
class FakeGOD:
    """What a fake GOD folder holds (ground truth for assertions)."""

    root: Path
    subject: int
    files: tuple[Path, ...]
    voxels: np.ndarray  # (n_samples, n_voxels) all voxel columns, file order
    data_types: np.ndarray
    runs: np.ndarray
    stimulus_ids: np.ndarray
    roi_masks: dict[str, np.ndarray]  # name -> bool (n_voxels,)
    xyz: np.ndarray  # (n_voxels, 3)


def _design(rng: np.random.Generator, n_voxels: int):
    """Sample labels (DataType, Run, stimulus_id) and voxels for one subject."""
    dtypes, runs, ids = [], [], []
    train = list(TRAIN_IDS)
    for r in range(3):  # 3 training runs, 4 images each
        for sid in train[4 * r : 4 * r + 4]:
            dtypes.append(1), runs.append(r + 1), ids.append(sid)
    test_trials = [sid for _ in range(N_TEST_REPEATS) for sid in TEST_IDS]
    for r in range(2):  # 2 test runs; run numbers restart per data type
        half = len(test_trials) // 2
        for sid in test_trials[r * half : (r + 1) * half]:
            dtypes.append(2), runs.append(r + 1), ids.append(sid)
    for sid in TEST_IDS:
        for _ in range(N_IMAGERY_PER_CATEGORY):
            dtypes.append(3), runs.append(1), ids.append(float(int(sid)))
    dtypes, runs, ids = np.array(dtypes, float), np.array(runs, float), np.array(ids)
    # Voxels with a per-(type, run) offset, so per-run z-scoring matters.
    offsets = 10.0 * dtypes[:, None] + 3.0 * runs[:, None]
    voxels = rng.normal(size=(len(ids), n_voxels)) + offsets
    return dtypes, runs, ids, voxels


def _write_bdpy(path: Path, voxels, dtypes, runs, ids, roi_masks, xyz, label_key, legacy):
    import bdpy
    import h5py

    bd = bdpy.BData()
    bd.add(voxels, "VoxelData")
    for name, mask in roi_masks.items():
        bd.add_metadata(name, np.where(mask, 1.0, np.nan), f"1 = ROI {name}", where="VoxelData")
    for axis, col in zip("xyz", xyz.T):
        bd.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate", where="VoxelData")
    bd.add(dtypes, "DataType")
    bd.add(runs, "Run")
    bd.add(np.arange(len(ids), dtype=float), "Block")
    bd.add(ids, label_key)
    bd.save(str(path))
    if legacy:
        with h5py.File(path, "r+") as fh:
            fh.move("dataset", "dataSet")
            fh.move("metadata", "metaData")


def _write_stimuli(root, split, ids, *, style, quote, ext, missing):
    from PIL import Image

    from fmri2image.data.ids import stimulus_ids_to_image_names

    id_name = {"imageID": f"imageID_{split}.csv", "image_id": f"image_{split}_id.csv"}[style]
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    names = stimulus_ids_to_image_names(np.unique(ids))
    rows = []
    for k, (sid, name) in enumerate(zip(np.unique(ids), names)):
        fname = f"{name}.JPEG"
        rows.append((f"{sid:.6f}", fname))
        if name in missing:
            continue
        color = (40 * k % 256, 255 - 20 * k % 256, 7 * k % 256)
        Image.new("RGB", (8, 8), color).save(folder / f"{name}{ext}")
    with open(root / id_name, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_NONNUMERIC if quote else csv.QUOTE_MINIMAL)
        for sid, fname in rows:
            w.writerow([float(sid), fname] if quote else [sid, fname])


def write_fake_god(
    root: Path,
    *,
    subject: int = 3,
    release: str = "spm",
    n_voxels: int = 40,
    seed: int = 0,
    label_key: str = "stimulus_id",
    legacy_names: bool = False,
    nan_voxels: tuple[int, ...] = (),
    stimuli: bool = True,
    id_style: str = "imageID",
    quote_names: bool = False,
    image_ext: str = ".JPEG",
    missing_images: tuple[str, ...] = (),
) -> FakeGOD:
    """Write a tiny GOD folder (fMRI BData file(s) + stimulus images and id files)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dtypes, runs, ids, voxels = _design(rng, n_voxels)
    for v in nan_voxels:
        voxels[1, v] = np.nan
    roi_masks = {}
    for name, rng_ in ROI_LAYOUT.items():
        m = np.zeros(n_voxels, bool)
        m[[i for i in rng_ if i < n_voxels]] = True
        roi_masks[name] = m
    roi_masks["ROI_LVC"] = roi_masks["ROI_V1"] | roi_masks["ROI_V2"] | roi_masks["ROI_V3"]
    roi_masks["ROI_HVC"] = roi_masks["ROI_LOC"] | roi_masks["ROI_FFA"] | roi_masks["ROI_PPA"]
    roi_masks["ROI_VC"] = np.zeros(n_voxels, bool)
    roi_masks["ROI_VC"][: min(38, n_voxels)] = True
    xyz = np.stack(
        [np.arange(n_voxels) * 3.0, -np.arange(n_voxels) * 2.0, np.full(n_voxels, 6.0)], 1
    )
    args = dict(roi_masks=roi_masks, xyz=xyz, label_key=label_key, legacy=legacy_names)
    if release == "spm":
        files = (root / f"Subject{subject}.h5",)
        _write_bdpy(files[0], voxels, dtypes, runs, ids, **args)
    elif release == "fmriprep":
        files = tuple(
            root / f"Subject{subject}_{part}.h5"
            for part in ("ImageNetTraining", "ImageNetTest", "Imagery")
        )
        for path, t in zip(files, (1, 2, 3)):
            m = dtypes == t
            _write_bdpy(path, voxels[m], dtypes[m], runs[m], ids[m], **args)
    else:
        raise ValueError(release)
    if stimuli:
        kw = dict(style=id_style, quote=quote_names, ext=image_ext, missing=missing_images)
        _write_stimuli(root, "training", ids[dtypes == 1], **kw)
        _write_stimuli(root, "test", ids[dtypes == 2], **kw)
    return FakeGOD(root, subject, files, voxels, dtypes, runs, ids, roi_masks, xyz)


@pytest.fixture
def fake_god(tmp_path) -> FakeGOD:
    """A default fake GOD folder (SPM release, subject 3, 40 voxels, images)."""
    return write_fake_god(tmp_path / "god")


@pytest.fixture
def make_fake_god(tmp_path):
    """Factory: ``make_fake_god(**kwargs)`` writes a fresh fake GOD folder."""
    counter = iter(range(1000))

    def make(**kwargs) -> FakeGOD:
        return write_fake_god(tmp_path / f"god{next(counter)}", **kwargs)

    return make
