"""Read back what ``fmri2image decode`` (or ``demo``) wrote, for the stages after it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image._io import load_json
from fmri2image.errors import ConfigError, DataFormatError

__all__ = ["DecodeRun", "EncoderOutputs"]


@dataclass(frozen=True)
class EncoderOutputs:
    """One encoder's results in a decode run.

    Attributes
    ----------
    encoder : str
    folder : pathlib.Path
        ``RUN/<encoder store name>/``.
    predictions : ndarray of shape (n_test_images, dim)
        Predicted test embeddings, rows in :attr:`DecodeRun.test_stems` order.
    databases : tuple of str
        Names of the databases labels were retrieved from (``retrieval/<name>/``).
    """

    encoder: str
    folder: Path
    predictions: np.ndarray
    databases: tuple[str, ...]

    def top1_labels(self, database: str) -> list[str]:
        """The retrieved top-1 wnid of each test image from ``database``, in stem order."""
        import pyarrow.parquet as pq

        if database not in self.databases:
            raise ConfigError(
                f"The decode run has no labels of encoder {self.encoder!r} from database "
                f"{database!r}; it has: {', '.join(self.databases)}."
            )
        path = self.folder / "retrieval" / database / "semantic_per_query.parquet"
        table = pq.read_table(path).to_pydict()
        return [str(x) for x in table["top1_wnid"]]


@dataclass(frozen=True)
class DecodeRun:
    """A decode run folder.

    Attributes
    ----------
    root : pathlib.Path
    summary : dict
        ``summary.json``.
    test_stems : tuple of str
        The test images, in prediction-row order.
    test_wnids : tuple of str
        Their true categories.
    encoders : tuple of str
    """

    root: Path
    summary: dict[str, Any]
    test_stems: tuple[str, ...]
    test_wnids: tuple[str, ...]
    encoders: tuple[str, ...]

    @classmethod
    def load(cls, root: str | os.PathLike) -> DecodeRun:
        """Open ``root`` (the ``--out`` of ``decode``, or ``demo``'s ``OUT/results``).

        Raises
        ------
        ConfigError
            ``root`` is not a decode run (the message says how to make one).
        """
        from fmri2image._lock import output_lock
        from fmri2image.pipeline.publish import JOURNAL, recover

        root = Path(root)
        if (root / "results" / "summary.json").is_file() and not (root / "summary.json").is_file():
            root = root / "results"  # a demo folder
        if (root / JOURNAL).is_file():  # a decode run was killed while publishing
            with output_lock(root, flag="--from", wait=True, timeout=60):
                recover(root)
        if not (root / "summary.json").is_file():
            raise ConfigError(
                f"--from {root} is not the output of `fmri2image decode` (no summary.json "
                "there). Run `fmri2image decode ... --out DIR` (or `fmri2image demo`) first and "
                "pass that DIR (for the demo: demo-output/results)."
            )
        summary = load_json(root / "summary.json")
        try:
            stems = tuple(summary["test_images"])
            encoders = tuple(row["encoder"] for row in summary["encoders"])
        except (KeyError, TypeError) as exc:
            raise DataFormatError(
                f"{root / 'summary.json'} lacks the test images or encoders ({exc}); it was "
                "written by an older fmri2image. Run `fmri2image decode` again."
            ) from exc
        wnids = tuple(s.partition("_")[0] for s in stems)
        return cls(root, summary, stems, wnids, encoders)

    def outputs(self, encoder: str) -> EncoderOutputs:
        """One encoder's predictions and label tables."""
        from fmri2image.features.shards import store_dirname

        if encoder not in self.encoders:
            raise ConfigError(
                f"--encoder {encoder} is not in the decode run {self.root}; it has: "
                f"{', '.join(self.encoders)}."
            )
        folder = self.root / store_dirname(encoder)
        path = folder / "predicted_test_embeddings.npy"
        if not path.is_file():
            raise DataFormatError(
                f"{path} is missing: the decode run is incomplete. Run `fmri2image decode` "
                "again with the same --out."
            )
        pred = np.load(path, allow_pickle=False)
        if pred.shape[0] != len(self.test_stems):
            raise DataFormatError(
                f"{path} has {pred.shape[0]} rows for {len(self.test_stems)} test images; "
                "the decode run is inconsistent. Run `fmri2image decode` again."
            )
        row = next(r for r in self.summary["encoders"] if r["encoder"] == encoder)
        databases = tuple(r["database"] for r in row.get("retrieval", []))
        return EncoderOutputs(encoder, folder, pred, databases)

    def _stimulus_store(self, encoder: str, split: str):
        from fmri2image.features.shards import open_feature_store, store_dirname

        path = self.root / "stimulus_features" / split / store_dirname(encoder)
        if not (path / "manifest.json").is_file():
            raise DataFormatError(
                f"No {split} stimulus features of {encoder!r} under {path.parent}; the "
                "decode run is incomplete. Run `fmri2image decode` again with the same --out."
            )
        try:
            return open_feature_store(path)
        except DataFormatError as exc:  # damaged, or written by an older fmri2image
            reason = str(exc).split(". ")[0].rstrip(".")
            raise DataFormatError(
                f"The {split} stimulus features of {encoder!r} in the decode run {self.root} "
                f"cannot be used ({reason}). Run `fmri2image decode` again with the same "
                "--out: it verifies its caches and rebuilds this one."
            ) from exc

    def training_embeddings(self, encoder: str) -> np.ndarray:
        """Embeddings of every training stimulus (the store the decode run made)."""
        return self._stimulus_store(encoder, "training").load()

    def training_wnids(self, encoder: str) -> tuple[str, ...]:
        """The category of each row of :meth:`training_embeddings`."""
        return tuple(self._stimulus_store(encoder, "training").wnids)

    def true_test_embeddings(self, encoder: str) -> np.ndarray:
        """The embedding of each test image the run scored, in :attr:`test_stems` order
        (what a perfect decoder would predict)."""
        store = self._stimulus_store(encoder, "test")
        row_of = {Path(p).stem: i for i, p in enumerate(store.paths)}
        missing = [s for s in self.test_stems if s not in row_of]
        if missing:
            raise DataFormatError(
                f"The test stimulus features of {encoder!r} lack {missing[:3]}; the decode "
                "run is inconsistent. Run `fmri2image decode` again with the same --out."
            )
        return store.load()[[row_of[s] for s in self.test_stems]]

    def image_database_store(self, encoder: str, database: str | None = None) -> Path | None:
        """The feature store of an image database of the run for ``encoder`` (or None):
        one the run embedded (``database_features/<name>/``), else a feature folder it
        was given with ``--database``."""
        from fmri2image.pipeline.preflight import encoder_store

        base = self.root / "database_features"
        names = [database] if database else sorted(p.name for p in base.glob("*") if p.is_dir())
        roots = [base / name for name in names]
        roots += [
            Path(db)
            for db in self.summary.get("config", {}).get("databases", [])
            if not database or Path(db).name == database
        ]
        for root in roots:
            store = encoder_store(root, encoder)
            if store is not None:
                return store
        return None
