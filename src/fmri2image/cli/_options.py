"""Flags shared by several commands: one definition, the same names everywhere.

Parsing here only checks the *form* of a value (an integer, ``LO:HI:N``); what a
value means for the data (more folds than categories, more voxels than the ROI
has) is checked by the pipeline's preflight before any work starts.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = [
    "HelpFormatter",
    "add_data_options",
    "add_force_option",
    "add_mapping_options",
    "add_retrieval_options",
    "add_runtime_options",
    "int_at_least",
    "mapping_config",
    "parse_alphas",
    "parse_cv",
    "positive_int",
]


class HelpFormatter(argparse.HelpFormatter):
    """States every default, and keeps multi-line text (the examples) as written.

    A default is appended as ``(default: X)`` unless the help already says it or
    the option has no meaningful default (``None``, a flag that is off).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" not in text
            and not any(action.default is v for v in (None, False, argparse.SUPPRESS))
            and action.option_strings
            and action.nargs != 0
        ):
            text += " (default: %(default)s)"
        return text

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def int_at_least(low: int):
    """An argparse ``type``: an integer >= ``low``."""

    def parse(text: str) -> int:
        what = {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    parse.__name__ = f"int_at_least_{low}"  # argparse names the type in some messages
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def parse_cv(text: str) -> int | str:
    """``--cv``: a number of folds (>= 2) or ``loo``."""
    if text.strip().lower() == "loo":
        return "loo"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of folds (>= 2) or 'loo', got {text!r}"
        ) from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected a number of folds (>= 2) or 'loo', got {value}")
    return value


def parse_alphas(text: str) -> tuple[float, ...]:
    """``--alphas LO:HI:N``: N values log-spaced from LO to HI (or one value)."""
    from fmri2image.errors import ConfigError
    from fmri2image.mapping import parse_alpha_grid

    try:
        return tuple(float(a) for a in parse_alpha_grid(text))
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data_options(p: argparse.ArgumentParser, *, roi_default: str = "ROI_VC") -> None:
    """``--roi``, ``--release``, ``--drop-nan-voxels``, ``--normalization``."""
    p.add_argument(
        "--roi", default=roi_default, metavar="EXPR",
        help="ROI expression in bdpy syntax, e.g. ROI_VC, ROI_HVC, 'ROI_V1 + ROI_V2'",
    )  # fmt: skip
    p.add_argument(
        "--release", choices=("auto", "spm", "fmriprep"), default="auto",
        help="GOD release to read when the folder holds both (SubjectN.h5 = spm; "
        "SubjectN_ImageNetTraining.h5 ... = fmriprep)",
    )  # fmt: skip
    p.add_argument(
        "--drop-nan-voxels", action="store_true",
        help="drop voxel columns that contain NaN instead of failing",
    )  # fmt: skip
    p.add_argument(
        "--normalization", choices=("run", "train", "none"), default="run",
        help="voxel normalization: z-score per run (GOD's), with training statistics, or none",
    )  # fmt: skip
    p.add_argument(
        "--split", choices=("test", "imagery"), default="test",
        help="what the map (fitted on perception) predicts: the seen test images, or the "
        "imagery trials, averaged per imagined category and scored against its test image",
    )  # fmt: skip


#: Defaults of the mapping flags; equal to ``DecodingConfig``'s (a test checks it),
#: written out so that building the parser imports neither numpy nor the pipeline.
MAPPING_DEFAULTS: dict[str, Any] = {"cv": 5, "cv_groups": "none", "alpha_per_target": True}


def add_mapping_options(p: argparse.ArgumentParser) -> None:
    """The ridge map: CV scheme, alpha grid, voxel selection."""
    d = argparse.Namespace(**MAPPING_DEFAULTS)
    g = p.add_argument_group("ridge mapping (fMRI -> embedding)")
    g.add_argument(
        "--cv", type=parse_cv, default=d.cv, metavar="N|loo",
        help="folds of the per-dimension alpha search, or loo (exact leave-one-out; "
        "needs --cv-groups none)",
    )  # fmt: skip
    g.add_argument(
        "--cv-groups", choices=("none", "category"), default=d.cv_groups,
        help="none: contiguous folds (whole runs), which identified held-out images best "
        "on every data set measured, unseen test categories included (docs/mapping.md); "
        "category: no category on both sides of a fold",
    )  # fmt: skip
    g.add_argument(
        "--alphas", type=parse_alphas, default=None, metavar="LO:HI:N",
        help="ridge alpha grid, N values log-spaced from LO to HI (default: 1e-2:1e10:13, "
        "one value per decade)",
    )  # fmt: skip
    g.add_argument(
        "--alpha-per-target", dest="alpha_per_target", action="store_true",
        default=d.alpha_per_target,
        help="choose one alpha per embedding dimension (the default)",
    )  # fmt: skip
    g.add_argument(
        "--shared-alpha", dest="alpha_per_target", action="store_false",
        help="choose one alpha for all dimensions instead",
    )  # fmt: skip
    g.add_argument(
        "--n-voxels", type=positive_int, default=None, metavar="N",
        help="keep the N voxels most correlated with the targets, chosen inside each fold "
        "from training data (default: all voxels)",
    )  # fmt: skip


def add_retrieval_options(p: argparse.ArgumentParser, *, database_help: str = "") -> None:
    g = p.add_argument_group("label retrieval")
    g.add_argument(
        "--database", action="append", dest="databases", metavar="DB",
        help=database_help
        or "retrieval database (repeatable): prototypes (the encoder's ImageNet-1k "
        "classifier head), text-prototypes or text-prototypes:21k (CLIP text embeddings "
        "of 'a photo of a {name}'), a folder written by `fmri2image extract`, or an "
        "ImageNet-style image folder (default: prototypes)",
    )  # fmt: skip
    g.add_argument(
        "--k", type=positive_int, default=None, metavar="K",
        help="neighbours per query (default: 5 for prototype databases, 50 for image "
        "databases)",
    )  # fmt: skip
    g.add_argument(
        "--vote", choices=("nearest", "majority", "weighted"), default="nearest",
        help="how neighbour labels are ranked",
    )  # fmt: skip


def add_runtime_options(p: argparse.ArgumentParser, *, device: str = "cpu") -> None:
    g = p.add_argument_group("runtime")
    auto = "auto (a CUDA GPU when there is one), " if device == "auto" else ""
    g.add_argument("--device", default=device, help=f"torch device: {auto}cpu, cuda, cuda:N or mps")
    g.add_argument(
        "--batch-size", type=positive_int, default=32, metavar="N",
        help="images per encoder forward pass",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=non_negative_int, default=0, metavar="S",
        help="seed of every random choice",
    )  # fmt: skip


def add_force_option(p: argparse.ArgumentParser) -> None:
    """``--force STAGE`` (repeatable), for the commands that run the stage graph."""
    p.add_argument(
        "--force", action="append", metavar="STAGE",
        help="recompute a stage and what depends on it: a kind (data, features, database, "
        "mapping, retrieval, generation, evaluation) or a longer name prefix such as "
        "mapping/clip (repeatable)",
    )  # fmt: skip


_CONFIG_FLAGS = (
    "roi", "release", "drop_nan_voxels", "normalization", "cv", "cv_groups", "alphas",
    "alpha_per_target", "n_voxels", "k", "vote", "device", "batch_size", "seed", "split",
)  # fmt: skip


def mapping_config(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~fmri2image.pipeline.DecodingConfig` fields of the shared flags
    that the command offers."""
    return {key: getattr(args, key) for key in _CONFIG_FLAGS if hasattr(args, key)}
