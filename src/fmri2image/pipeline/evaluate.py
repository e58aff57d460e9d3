"""``fmri2image evaluate``: the field's metrics for any folder of reconstructions.

Checks everything that can be checked before an image is decoded or a network is
loaded (paths, the output file, metric names, weight files, the device, the table to
compare with), then pairs the images by stem, computes the metrics and writes::

    FILE.csv            column ``image`` (the stem), then one column per metric
    FILE.summary.json   means, 95 % bootstrap intervals, chance / unpaired references,
                        skipped metrics with reasons, excluded images, protocol, timing
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.pipeline.preflight import check_device, check_output_dir

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.evaluation.labels import LabelTable

__all__ = ["EvaluateConfig", "check_evaluate_config", "resolve_device", "run_evaluate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of one evaluation (each field is a flag of ``fmri2image evaluate``).

    Attributes
    ----------
    recon, gt : str
        ``--recon`` / ``--gt``: a folder of images (matched by file stem) or a ``.npy``
        array of images.
    out : str
        ``--out``: the per-image CSV; the summary JSON is written beside it.
    metrics : tuple of str, optional
        ``--metrics``; default every image metric (GPU-heavy ones only on CUDA).
    order : str, optional
        ``--order``: text file, one stem per line, naming the rows of a ``.npy`` input.
    keep_blank : bool
        ``--keep-blank``: evaluate blank (safety-filtered) reconstructions too.
    device, batch_size, seed : as the flags
    n_bootstrap : int
        ``--bootstrap``: resamples of each mean's interval.
    metric_weights : mapping of network name to path
        ``--metric-weights NAME=PATH``: local weights for a metric network.
    compare_to : str, optional
        ``--compare-to``: another method's per-image CSV for paired permutation tests.
    labels : str, optional
        ``--labels``: true and predicted wnids per image (label metrics).
    """

    recon: str
    gt: str
    out: str
    metrics: tuple[str, ...] | None = None
    order: str | None = None
    keep_blank: bool = False
    device: str = "auto"
    batch_size: int = 32
    seed: int = 0
    n_bootstrap: int = 2000
    metric_weights: Mapping[str, str] = field(default_factory=dict)
    compare_to: str | None = None
    labels: str | None = None


def resolve_device(device: str) -> str:
    """``"auto"``: the first CUDA GPU when torch sees one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _check_source(flag: str, value: str) -> None:
    p = Path(value).expanduser()
    if not p.exists():
        raise ConfigError(f"{flag} {value} does not exist; give a folder of images or a .npy file.")
    if p.is_file() and p.suffix.lower() != ".npy":
        raise ConfigError(
            f"{flag} {value} is a file but not a .npy array; give a folder of images (matched "
            "by file stem) or a .npy array of images."
        )


@dataclass(frozen=True)
class EvaluateInputs:
    """The small input files :func:`check_evaluate_config` read, for the run to use."""

    order: tuple[str, ...] | None
    labels: LabelTable | None


def check_evaluate_config(config: EvaluateConfig) -> EvaluateInputs:
    """Every check that needs no image decoded and no network loaded.

    Returns
    -------
    EvaluateInputs
        The ``--order`` stems and the ``--labels`` table, read once here.

    Raises
    ------
    ConfigError
        With a message in the command's flags.
    """
    from fmri2image.evaluation.evaluate import read_scores_csv, resolve_metrics
    from fmri2image.evaluation.images import read_order_file
    from fmri2image.evaluation.labels import read_label_table
    from fmri2image.evaluation.networks import NETWORKS

    _check_source("--recon", config.recon)
    _check_source("--gt", config.gt)
    if Path(config.recon).resolve() == Path(config.gt).resolve():
        raise ConfigError(
            "--recon and --gt are the same path; compare reconstructions with the seen images."
        )
    out = Path(config.out).expanduser()
    if out.suffix.lower() != ".csv":
        raise ConfigError(
            f"--out {config.out}: give the per-image table's file name ending in .csv (the "
            "summary JSON is written beside it)."
        )
    if out.is_dir():
        raise ConfigError(f"--out {config.out} is a folder; give a file name ending in .csv.")
    check_output_dir(out.parent, flag=f"--out {config.out}: its folder")
    order = read_order_file(config.order) if config.order is not None else None
    labels = read_label_table(config.labels) if config.labels is not None else None
    # Unknown names: ConfigError with close matches.
    resolve_metrics(config.metrics, device=config.device, labels=config.labels is not None)
    for name, path in config.metric_weights.items():
        if name not in NETWORKS:
            raise ConfigError(
                f"--metric-weights {name}={path}: no metric network {name!r}; networks: "
                f"{', '.join(NETWORKS.names())}."
            )
        if not Path(path).exists():
            raise ConfigError(f"--metric-weights {name}={path}: {path} does not exist.")
    if config.compare_to is not None:
        try:
            read_scores_csv(config.compare_to)
        except DataFormatError as exc:
            raise ConfigError(f"--compare-to: {exc}") from exc
    if config.n_bootstrap < 1:
        raise ConfigError(f"--bootstrap must be >= 1, got {config.n_bootstrap}.")
    check_device(config.device)
    return EvaluateInputs(order, labels)


def run_evaluate(config: EvaluateConfig, *, progress: bool = True):
    """Check, pair, score, compare and save; returns the :class:`~fmri2image.evaluation.Evaluation`."""
    from fmri2image.evaluation import evaluate_images, pair_images

    config = replace(config, device=resolve_device(config.device))
    inputs = check_evaluate_config(config)
    pairs = pair_images(config.recon, config.gt, order=inputs.order, keep_blank=config.keep_blank)
    log.info(
        "evaluating %d image pairs (%d images not evaluated)",
        len(pairs.stems),
        len(pairs.excluded),
    )
    result = evaluate_images(
        pairs,
        config.metrics,
        device=config.device,
        batch_size=config.batch_size,
        seed=config.seed,
        n_bootstrap=config.n_bootstrap,
        weights=config.metric_weights,
        labels=inputs.labels,
        progress=progress,
    )
    if not result.scores:
        raise DataFormatError(
            "No metric could be computed: "
            + "; ".join(f"{k}: {v}" for k, v in result.skipped.items())
        )
    if config.compare_to is not None:
        result = result.compare(config.compare_to, seed=config.seed)
    result.save(config.out)
    return result
