"""What a demo dataset holds: :class:`DemoDatasetInfo` and its manifest.

``demo_dataset.json`` (not part of the GOD release) records every parameter, the
categories and their split, the photos actually used (with their SHA-256), ROI
sizes and the image database.  :func:`read_demo_manifest` /
:meth:`DemoDatasetInfo.load` read it back, so a caller can check that an existing
folder is the dataset it would write (:meth:`DemoDatasetInfo.differences`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "DemoDatasetInfo", "read_demo_manifest"]

MANIFEST_NAME = "demo_dataset.json"
MANIFEST_FORMAT = "fmri2image-demo-dataset"
MANIFEST_VERSION = 2


def read_demo_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``demo_dataset.json`` of a demo dataset folder.

    Raises
    ------
    MissingDataFileError
        The folder holds no manifest (not a demo dataset, or an unfinished one).
    DataFormatError
        The manifest is another format, or newer than this fmri2image.
    """
    from fmri2image._io import load_versioned_json

    return load_versioned_json(
        Path(folder) / MANIFEST_NAME,
        fmt=MANIFEST_FORMAT,
        max_version=MANIFEST_VERSION,
        what="an fmri2image demo dataset",
        how_to_create=f"Write one with `fmri2image make-demo-data {folder}`.",
    )


@dataclass(frozen=True)
class DemoDatasetInfo:
    """What :func:`~fmri2image.demo.write_demo_dataset` wrote.

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder (pass it wherever a GOD folder is expected).
    subject_files : tuple of pathlib.Path
        ``Subject1.h5`` ... ``SubjectN.h5``.
    training_dir, test_dir : pathlib.Path
        Stimulus image folders.
    training_id_file, test_id_file : pathlib.Path
        Header-less id files.
    manifest : pathlib.Path
        ``demo_dataset.json``.
    train_wnids, test_wnids : tuple of str
        Training and test categories (sorted, disjoint).
    distractor_wnids : tuple of str
        Available categories that are not stimuli (in the database only).
    n_train_images, n_test_images : int
        Stimulus images per split.
    n_samples : dict of str to int
        Samples per subject by kind (``training``, ``test``, ``imagery``, ``total``).
    n_voxels : int
        Voxels per subject.
    roi_sizes : dict of str to int
        Voxels in each ``ROI_*`` key.
    snr, drift, imagery_gain : float
        Noise model (see :mod:`fmri2image.demo.brain`).
    seed : int
        Seed that reproduces the dataset (with the same photos).
    encoder : str
        Encoder whose features drive the high-level ROIs.
    database_dir : pathlib.Path or None
        ImageNet-style wnid folders of other crops of every category; None when
        ``database_images_per_category == 0``.
    n_database_classes, n_database_images : int
        Size of the database.
    photo_sources : tuple of str
        ``package:file`` of every photo used, sorted.
    parameters : dict
        Every parameter of the call, defaults resolved (as in the manifest).
    n_bytes : int
        Bytes written.
    seconds : float
        Wall time of the call (not compared).
    """

    root: Path
    subject_files: tuple[Path, ...]
    training_dir: Path
    test_dir: Path
    training_id_file: Path
    test_id_file: Path
    manifest: Path
    train_wnids: tuple[str, ...]
    test_wnids: tuple[str, ...]
    distractor_wnids: tuple[str, ...]
    n_train_images: int
    n_test_images: int
    n_samples: dict[str, int]
    n_voxels: int
    roi_sizes: dict[str, int]
    snr: float
    drift: float
    imagery_gain: float
    seed: int
    encoder: str
    database_dir: Path | None
    n_database_classes: int
    n_database_images: int
    photo_sources: tuple[str, ...]
    parameters: dict[str, Any]
    n_bytes: int = 0
    seconds: float = field(default=0.0, compare=False)

    @property
    def n_subjects(self) -> int:
        return len(self.subject_files)

    # -- manifest round trip ---------------------------------------------------------
    @classmethod
    def load(cls, folder: str | os.PathLike) -> DemoDatasetInfo:
        """Rebuild the info of a demo dataset from its manifest.

        Raises
        ------
        MissingDataFileError, DataFormatError
            See :func:`read_demo_manifest`.
        """
        root = Path(folder)
        m = read_demo_manifest(root)
        p = m["parameters"]
        files = m["files"]
        cats = m["categories"]

        def wnids(split: str) -> tuple[str, ...]:
            return tuple(sorted(c["wnid"] for c in cats if c["split"] == split))

        db = m.get("database")
        return cls(
            root=root,
            subject_files=tuple(root / f for f in files["subjects"]),
            training_dir=root / files["training_dir"],
            test_dir=root / files["test_dir"],
            training_id_file=root / files["training_id_file"],
            test_id_file=root / files["test_id_file"],
            manifest=root / MANIFEST_NAME,
            train_wnids=wnids("training"),
            test_wnids=wnids("test"),
            distractor_wnids=wnids("distractor"),
            n_train_images=int(m["n_images"]["training"]),
            n_test_images=int(m["n_images"]["test"]),
            n_samples={k: int(v) for k, v in m["n_samples"].items()},
            n_voxels=int(p["n_voxels"]),
            roi_sizes={k: int(v) for k, v in m["roi_sizes"].items()},
            snr=float(p["snr"]),
            drift=float(p["drift"]),
            imagery_gain=float(p["imagery_gain"]),
            seed=int(p["seed"]),
            encoder=str(p["encoder"]),
            database_dir=(root / db["path"]) if db else None,
            n_database_classes=int(db["n_classes"]) if db else 0,
            n_database_images=int(db["n_images"]) if db else 0,
            photo_sources=tuple(sorted(ph["source"] for ph in m["photos"])),
            parameters=dict(p),
            n_bytes=int(m.get("n_bytes", 0)),
            seconds=float(m.get("seconds", 0.0)),
        )

    def differences(self, **kwargs: Any) -> dict[str, tuple[Any, Any]]:
        """How this dataset differs from what ``write_demo_dataset(**kwargs)`` would write.

        Parameters
        ----------
        **kwargs
            Arguments of :func:`~fmri2image.demo.write_demo_dataset` (``out_dir``,
            ``overwrite`` and ``progress`` are ignored; ``photo_roots`` is honoured).

        Returns
        -------
        dict of str to (this, requested)
            Empty when the parameters (defaults resolved on this machine), the
            categories and the photos used are all the same.
        """
        from fmri2image.demo.writer import resolve_demo_request

        for k in ("out_dir", "overwrite", "progress"):
            kwargs.pop(k, None)
        want = resolve_demo_request(**kwargs)
        diff: dict[str, tuple[Any, Any]] = {}
        for key, value in want.parameters.items():
            if self.parameters.get(key) != value:
                diff[key] = (self.parameters.get(key), value)
        mine = {
            "train_wnids": self.train_wnids,
            "test_wnids": self.test_wnids,
            "photo_sources": self.photo_sources,
        }
        theirs = {
            "train_wnids": tuple(sorted(c.wnid for c in want.split.train)),
            "test_wnids": tuple(sorted(c.wnid for c in want.split.test)),
            "photo_sources": want.photo_sources,
        }
        for key in mine:
            if mine[key] != theirs[key]:
                diff[key] = (mine[key], theirs[key])
        return diff

    def matches(self, **kwargs: Any) -> bool:
        """True if ``write_demo_dataset(**kwargs)`` would write this very dataset."""
        return not self.differences(**kwargs)

    # -- presentation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (paths as strings)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, Path):
                out[k] = str(v)
            elif isinstance(v, tuple):
                out[k] = [str(x) for x in v]
        return out

    def summary(self) -> str:
        """Multi-line human-readable summary."""
        s = self.n_samples
        db = (
            f"{self.n_database_images} images of {self.n_database_classes} classes in "
            f"{self.database_dir}"
            if self.database_dir is not None
            else "none"
        )
        lines = [
            f"GOD-layout demo dataset in {self.root}",
            f"  subjects        {self.n_subjects} ({', '.join(p.name for p in self.subject_files)})",
            f"  categories      {len(self.train_wnids)} training, {len(self.test_wnids)} test "
            f"(disjoint), {len(self.distractor_wnids)} database-only",
            f"  images          {self.n_train_images} training, {self.n_test_images} test, "
            f"from {len(self.photo_sources)} photos",
            f"  samples/subject {s['total']} = {s['training']} training + {s['test']} test "
            f"+ {s['imagery']} imagery",
            f"  voxels/subject  {self.n_voxels} ("
            + ", ".join(f"{k} {v}" for k, v in self.roi_sizes.items())
            + ")",
            f"  noise           single-trial SNR {self.snr:g}, run drift sd {self.drift:g}, "
            f"imagery gain {self.imagery_gain:g}",
            f"  encoder         {self.encoder} (drives V4/LOC/FFA/PPA)",
            f"  image database  {db}",
            f"  seed            {self.seed}",
            f"  size on disk    {self.n_bytes / 1e6:.1f} MB",
            f"  took            {self.seconds:.1f} s",
        ]
        return "\n".join(lines)
