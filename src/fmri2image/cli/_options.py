"""Flags shared by the pipeline commands: one definition, the same names everywhere.

``run``, ``compare``, ``decode``, ``generate`` and ``demo`` all build one
:class:`~fmri2image.pipeline.config.RunConfig`.  Every flag here defaults to None
("not given"), so the precedence is the same for all of them: defaults <
``--config FILE`` < ``--set KEY=VALUE`` < the flags (:func:`config_from_args`).  The
help states each default, read from the configuration's own dataclasses, so it
cannot drift from them.

Parsing here only checks the *form* of a value (an integer, ``LO:HI:N``); what a
value means (an unknown encoder, more folds than categories) is checked by
``RunConfig.validate`` and the run's planning, before any work starts.
"""

from __future__ import annotations

import argparse
from typing import Any

from fmri2image._manifest import VERIFY_MODES
from fmri2image.pipeline.config import (
    DataSection,
    EvaluationSection,
    GenerationSection,
    MappingSection,
    RetrievalSection,
    RunConfig,
)

__all__ = [
    "HelpFormatter",
    "add_config_options",
    "add_data_options",
    "add_force_option",
    "add_generation_options",
    "add_mapping_options",
    "add_output_options",
    "add_retrieval_options",
    "add_runtime_options",
    "config_from_args",
    "int_at_least",
    "parse_alphas",
    "parse_cv",
    "positive_int",
]

_RUN, _DATA, _MAP = RunConfig(), DataSection(), MappingSection()
_DEFAULT_ROIS = (
    "the dataset's visual cortex: ROI_VC for GOD and Deeprecon, VC (the union of its "
    "visual ROIs) for THINGS, nsdgeneral (every voxel) for NSD"
)
_RET, _GEN, _EVAL = RetrievalSection(), GenerationSection(), EvaluationSection()


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


def _d(value: Any) -> str:
    """A default as the help shows it."""
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------------- flag groups
def add_config_options(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--set KEY=VALUE``."""
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", help="a TOML run configuration (docs/pipeline.md)")
    g.add_argument(
        "--set", action="append", dest="overrides", metavar="KEY=VALUE",
        help="override one configuration value, e.g. --set mapping.cv=loo --set "
        "data.subjects=[1,2] (repeatable; TOML values)",
    )  # fmt: skip


def add_data_options(
    p: argparse.ArgumentParser, *, roi: str | None = None, data: bool = True
) -> None:
    """The dataset, its folder, subjects, ROIs, split and normalization."""
    g = p.add_argument_group("data")
    if data:
        g.add_argument(
            "--dataset", metavar="NAME",
            help=f"the dataset (data.dataset; default: {_DATA.dataset}); `fmri2image doctor` "
            "lists the registered ones",
        )  # fmt: skip
        g.add_argument(
            "--data", "--god", dest="data", metavar="DIR",
            help="the dataset's folder (data.path; for GOD: SubjectN.h5 or the split "
            "files, the id files and the images; --god is the same flag)",
        )  # fmt: skip
        g.add_argument(
            "--subjects", "--subject", dest="subjects", nargs="+", type=positive_int,
            metavar="N",
            help=f"subjects, each decoded on its own (data.subjects; default: {_d(_DATA.subjects)})",
        )  # fmt: skip
    g.add_argument(
        "--rois", "--roi", dest="rois", nargs="+", metavar="EXPR",
        help="ROI expressions in bdpy syntax (ROI_VC, ROI_HVC, 'ROI_V1 + ROI_V2'; THINGS: "
        "V1, 'lFFA + rFFA'), each decoded on its own (data.rois; default: "
        f"{roi or _DEFAULT_ROIS})",
    )  # fmt: skip
    g.add_argument(
        "--split", metavar="NAME",
        help="what the map (fitted on perception) predicts: test (the seen test images), "
        "imagery (the imagery trials, averaged per imagined stimulus and scored against "
        "its image), or a split of the dataset's own (Deeprecon: artificial, letter) "
        f"(data.split; default: {_DATA.split})",
    )  # fmt: skip
    g.add_argument(
        "--release", choices=("auto", "spm", "fmriprep", "original"),
        help="the release to read when the folder holds two: GOD spm (SubjectN.h5) or "
        "fmriprep (SubjectN_ImageNetTraining.h5 ...); Deeprecon original (sub-0N_"
        "perceptionNaturalImage*_original_VC.h5) or fmriprep (data.options.release; "
        "default: auto)",
    )  # fmt: skip
    g.add_argument(
        "--drop-nan-voxels", action="store_true", default=None,
        help="drop voxel columns that contain NaN instead of failing (data.drop_nan_voxels)",
    )  # fmt: skip
    g.add_argument(
        "--normalization", choices=("run", "train", "none"),
        help="voxel normalization: z-score per run (GOD's), with training statistics, or "
        f"none (data.normalization; default: {_DATA.normalization})",
    )  # fmt: skip


def add_mapping_options(p: argparse.ArgumentParser) -> None:
    """The map from voxels to embeddings: the mapper, its CV scheme, alphas, voxels."""
    g = p.add_argument_group("mapping (fMRI -> embedding)")
    g.add_argument(
        "--mappers", nargs="+", metavar="NAME",
        help="the mapping models, each fitted for every model and compared in the tables: "
        f"ridge, mlp (MindEye-style MLP), or a plugin (mapping.mappers; default: "
        f"{' '.join(_MAP.mappers)}); their further arguments: --set "
        "'mapping.options.mlp={ ... }'",
    )  # fmt: skip
    g.add_argument(
        "--mapper", dest="mappers", nargs=1, metavar="NAME",
        help="one mapping model (the same as --mappers NAME)",
    )  # fmt: skip
    g.add_argument(
        "--cv", type=parse_cv, metavar="N|loo",
        help="folds of the per-dimension alpha search, or loo (exact leave-one-out; "
        f"needs --cv-groups none) (mapping.cv; default: {_MAP.cv})",
    )  # fmt: skip
    g.add_argument(
        "--cv-groups", choices=("none", "category"),
        help="none: contiguous folds (whole runs), which identified held-out images best "
        "on every data set measured, unseen test categories included (docs/mapping.md); "
        f"category: no category on both sides of a fold (mapping.cv_groups; default: "
        f"{_MAP.cv_groups})",
    )  # fmt: skip
    g.add_argument(
        "--alphas", type=parse_alphas, metavar="LO:HI:N",
        help="ridge alpha grid, N values log-spaced from LO to HI (mapping.alphas; default: "
        "1e-2:1e10:13, one value per decade)",
    )  # fmt: skip
    g.add_argument(
        "--alpha-per-target", dest="alpha_per_target", action="store_true", default=None,
        help="choose one alpha per embedding dimension (mapping.alpha_per_target; the default)",
    )  # fmt: skip
    g.add_argument(
        "--shared-alpha", dest="alpha_per_target", action="store_false",
        help="choose one alpha for all dimensions instead",
    )  # fmt: skip
    g.add_argument(
        "--n-voxels", type=positive_int, metavar="N",
        help="keep the N voxels most correlated with the targets, chosen inside each fold "
        "from training data (mapping.n_voxels; default: all voxels)",
    )  # fmt: skip


def add_retrieval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("label retrieval")
    g.add_argument(
        "--database", action="append", dest="databases", metavar="DB",
        help="retrieval database (repeatable): prototypes (the encoder's ImageNet-1k "
        "classifier head), text-prototypes or text-prototypes:21k (CLIP text embeddings "
        "of 'a photo of a {name}'), stimuli (the dataset's training images with their "
        "labels, e.g. NSD's captions), captions (CLIP text embeddings of those labels), "
        "a folder written by `fmri2image extract`, or an ImageNet-style image folder "
        f"(retrieval.databases; default: {_d(_RET.databases)})",
    )  # fmt: skip
    g.add_argument(
        "--k", type=positive_int, metavar="K",
        help="neighbours per query (retrieval.k; default: 5 for prototype and captions "
        "databases, 10 for stimuli, 50 for image databases)",
    )  # fmt: skip
    g.add_argument(
        "--vote", choices=("nearest", "majority", "weighted"),
        help=f"how neighbour labels are ranked (retrieval.vote; default: {_RET.vote})",
    )  # fmt: skip
    g.add_argument(
        "--class-map", metavar="FILE",
        help="JSON object or CSV 'folder,wnid' naming the WordNet id of an image folder's "
        "class folders whose names are ambiguous or unknown (retrieval.class_map)",
    )  # fmt: skip
    g.add_argument(
        "--skip-unresolved", action="store_true", default=None,
        help="leave such class folders out instead of stopping (retrieval.skip_unresolved)",
    )  # fmt: skip
    g.add_argument(
        "--hubness", choices=("none", "center", "csls"),
        help="hubness correction of the k-NN search: none (plain cosine), center (subtract "
        "the training-mean embedding from the predictions and the database mean from its "
        "items), csls (2 cos - r(i) on centered vectors, r(i) from the training stimuli) "
        f"(retrieval.hubness; default: {_RET.hubness})",
    )  # fmt: skip
    g.add_argument(
        "--csls-k", type=positive_int, metavar="K",
        help="training stimuli averaged in CSLS's r(i) (retrieval.csls_k; default: "
        f"{_RET.csls_k})",
    )  # fmt: skip


def add_generation_options(p: argparse.ArgumentParser, *, generators: bool = True) -> None:
    """Generators, bounds, labels, initial images and where the pictures are made."""
    g = p.add_argument_group("generation (pictures)")
    if generators:
        g.add_argument(
            "--generators", nargs="+", metavar="NAME",
            help=f"generators (generation.generators; default: {_d(_GEN.generators)}); "
            "`fmri2image generate --help` lists them",
        )  # fmt: skip
        g.add_argument(
            "--no-bounds", action="store_true",
            help="generate from the predictions only, without the true / random bounds",
        )  # fmt: skip
    g.add_argument(
        "--labels-from", metavar="DB",
        help="the database whose retrieved label drives label-based generators, by its "
        "name in the tables (generation.labels_from; default: the first database)",
    )  # fmt: skip
    g.add_argument(
        "--init", metavar="GENERATOR|DIR",
        help="initial image of the other generators (img2img, invert): a generator's "
        "pictures made by the run, 'lowlevel' (the two-pathway reconstruction: early visual "
        "cortex's blurry picture) or 'invert' (the feature inversion of the same embedding), "
        "or a folder of <stem>.png pictures (generation.init)",
    )  # fmt: skip
    g.add_argument(
        "--dtype", choices=("auto", "float32", "float16", "bfloat16"),
        help="generator precision (generation.dtype; default: auto = float16 on CUDA, "
        "else float32)",
    )  # fmt: skip
    g.add_argument(
        "--executor", choices=("local", "ray"),
        help="ray: one generator replica per Ray actor, one GPU each with --device cuda "
        f"(generation.executor; default: {_GEN.executor})",
    )  # fmt: skip
    g.add_argument(
        "--workers", type=positive_int, metavar="N",
        help="Ray actors (generation.workers; default: the cluster's GPUs, or 1 on CPU)",
    )  # fmt: skip


def add_evaluation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument_group("evaluation").add_argument(
        "--metrics", nargs="+", metavar="NAME",
        help="image metrics (evaluation.metrics; default: every one that runs here); "
        "`fmri2image evaluate --list-metrics`",
    )  # fmt: skip


def add_output_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--out`` and ``--cache``."""
    p.add_argument(
        "--out", metavar="DIR", required=required,
        help="the output folder (out)" + ("" if required else "; required unless --config sets it"),
    )  # fmt: skip
    p.add_argument(
        "--cache", metavar="DIR",
        help="where stage artifacts are kept, shared by the runs that name it (cache; "
        "default: OUT/cache)",
    )  # fmt: skip


def add_force_option(p: argparse.ArgumentParser) -> None:
    """``--force STAGE`` (repeatable) and ``--verify MODE``, for the commands that run
    the stage graph."""
    p.add_argument(
        "--force", action="append", metavar="STAGE",
        help="recompute a stage and what depends on it: a kind (data, features, database, "
        "prototypes, mapping, retrieval, generation, evaluation) or a longer name prefix "
        "such as mapping/clip (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--verify", choices=VERIFY_MODES,
        help="how cached artifacts and image folders are checked before reuse (verify): "
        "fast (default): a file whose size, times and inode match the last full check is "
        "trusted; full: re-hash every cached file",
    )  # fmt: skip


def add_runtime_options(
    p: argparse.ArgumentParser, *, visualize: bool = True, executor: bool | None = None
) -> None:
    """Device, batch size, seed, grids; ``executor``: ``--graph-executor`` and
    ``--ray-address`` (default: every command but ``demo``, whose runner takes the
    seed, device and batch size only)."""
    if executor is None:
        executor = p.prog.split()[-1] != "demo"
    g = p.add_argument_group("runtime")
    g.add_argument(
        "--device", help=f"torch device: cpu, cuda, cuda:N or mps (device; default: {_RUN.device})"
    )
    g.add_argument(
        "--batch-size", type=positive_int, metavar="N",
        help=f"images per encoder forward pass (batch_size; default: {_RUN.batch_size})",
    )  # fmt: skip
    g.add_argument(
        "--seed", type=non_negative_int, metavar="S",
        help=f"seed of every random choice (seed; default: {_RUN.seed})",
    )  # fmt: skip
    if executor:
        _add_executor_options(g)
    if visualize:
        g.add_argument(
            "--no-visualize", dest="visualize", action="store_false", default=None,
            help="do not write the image grids (OUT/grid-*.png)",
        )  # fmt: skip


def _add_executor_options(g: Any) -> None:
    g.add_argument(
        "--graph-executor", choices=("local", "ray"),
        help="where the stages to compute run: local (one after another here) or ray (each "
        "stage a Ray task, side by side when independent; one GPU each for network stages "
        "with --device cuda; the cache on a path every node sees) "
        f"(executor; default: {_RUN.executor})",
    )  # fmt: skip
    g.add_argument(
        "--ray-address", metavar="ADDR",
        help="the Ray cluster of --graph-executor ray (ray_address; default: $RAY_ADDRESS, "
        "else a local Ray instance)",
    )  # fmt: skip


# ---------------------------------------------------------------------- flags -> config
#: flag (argparse dest) -> RunConfig.replace keyword, for the flags that set one value.
_FLAGS = {
    "models": "models", "out": "out", "cache": "cache", "device": "device", "seed": "seed",
    "batch_size": "batch_size", "visualize": "visualize", "verify": "verify",
    "graph_executor": "executor", "ray_address": "ray_address",
    "dataset": "data__dataset", "data": "data__path", "subjects": "data__subjects",
    "rois": "data__rois", "split": "data__split", "normalization": "data__normalization",
    "drop_nan_voxels": "data__drop_nan_voxels",
    "mappers": "mapping__mappers", "cv": "mapping__cv", "cv_groups": "mapping__cv_groups",
    "alphas": "mapping__alphas", "alpha_per_target": "mapping__alpha_per_target",
    "n_voxels": "mapping__n_voxels",
    "databases": "retrieval__databases", "k": "retrieval__k", "vote": "retrieval__vote",
    "class_map": "retrieval__class_map", "skip_unresolved": "retrieval__skip_unresolved",
    "hubness": "retrieval__hubness", "csls_k": "retrieval__csls_k",
    "generators": "generation__generators", "labels_from": "generation__labels_from",
    "init": "generation__init", "dtype": "generation__dtype",
    "executor": "generation__executor", "workers": "generation__workers",
    "metrics": "evaluation__metrics",
}  # fmt: skip


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """The :class:`RunConfig` of a command line: ``base`` (default: ``--config`` with
    the ``--set`` overrides), then every flag that was given."""
    from fmri2image.pipeline.config import load_config

    if base is None:
        base = load_config(getattr(args, "config", None), getattr(args, "overrides", None) or ())
    changes: dict[str, Any] = {}
    for dest, key in _FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            changes[key] = tuple(value) if isinstance(value, list) else value
    config = base.replace(**changes)
    if getattr(args, "release", None) is not None:
        config = config.replace(data__options={**config.data.options, "release": args.release})
    if getattr(args, "no_bounds", False):
        config = config.replace(generation__conditions=("predicted",))
    return config


def add_dataset_option_flag(p: argparse.ArgumentParser) -> None:
    """``--option KEY=VALUE``: one of the dataset's options (``data.options``)."""
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", dest="dataset_options",
        help="a dataset option (data.options), TOML value, e.g. --option sessions=2 (NSD: "
        "train on the first 2 sessions), --option release='\"fmriprep\"' (repeatable)",
    )  # fmt: skip


def dataset_options(items: list[str]) -> dict[str, Any]:
    """The ``--option KEY=VALUE`` items as a dict (TOML values; a bare word is a string)."""
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.config import _parse_value

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. sessions=2.")
        out[key.strip()] = _parse_value(value.strip())
    return out
