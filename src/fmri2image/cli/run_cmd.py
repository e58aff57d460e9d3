"""``fmri2image run`` and ``fmri2image compare``: the whole pipeline, cached."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_RUN_EPILOG = """\
examples:
  fmri2image run --god GOD --model clip --database text-prototypes --generators sd15 \\
      --device cuda --out runs/clip
  fmri2image run --config experiment.toml --set mapping.cv=loo --out runs/loo
  fmri2image run --config runs/clip/config.toml --force generation   # remake the pictures

Precedence: defaults < --config FILE < --set KEY=VALUE < the other flags.  The
resolved configuration is written to OUT/config.toml; a rerun with the same
settings reuses every stage whose artifact verifies (checksums), and recomputes only
what changed.  Outputs: OUT/tables (scores, summary, paired, decoding; CSV and
parquet), OUT/images, OUT/grid-*.png, OUT/stages.json, OUT/run.log, OUT/cache.
"""

_COMPARE_EPILOG = """\
examples:
  fmri2image compare --god GOD --models resnet50 vit clip --database IMAGENET_DIR \\
      --generators sd15 --device cuda --out cmp/
  fmri2image compare --god GOD --models effnet-lite0 effnet-lite2 --generators invert \\
      retrieve --database prototypes --database IMAGENET_DIR --out cmp/
  fmri2image compare --config exp.toml --subjects 1 2 3 --rois ROI_V1 ROI_HVC ROI_VC

Every model shares the data stages; each is scored beside its bounds (the same
generator fed the true stimulus embedding / label, and a random training
stimulus's), with paired permutation tests between every pair of models
(Holm-corrected).  Tables are indexed by subject x ROI x model x generator x
condition, with the mean over subjects.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="a TOML run configuration")
    p.add_argument(
        "--set", action="append", dest="overrides", metavar="KEY=VALUE",
        help="override one configuration value, e.g. --set mapping.cv=loo --set "
        "data.subjects=[1,2] (repeatable; TOML values)",
    )  # fmt: skip
    p.add_argument("--god", metavar="DIR", help="the GOD data folder (data.god)")
    p.add_argument("--out", metavar="DIR", help="the output folder (out)")
    p.add_argument(
        "--cache", metavar="DIR", help="where stage artifacts are kept (default: OUT/cache)"
    )
    p.add_argument(
        "--subjects", nargs="+", type=_options.positive_int, metavar="N",
        help="GOD subjects, each decoded on its own (data.subjects; default: 1)",
    )  # fmt: skip
    p.add_argument(
        "--rois", nargs="+", metavar="EXPR",
        help="ROI expressions, each decoded on its own (data.rois; default: ROI_VC)",
    )  # fmt: skip
    p.add_argument(
        "--split", choices=("test", "imagery"),
        help="what the perception-fitted map predicts (data.split; default: test)",
    )  # fmt: skip
    p.add_argument(
        "--database", action="append", dest="databases", metavar="DB",
        help="retrieval database, repeatable (retrieval.databases; default: prototypes); "
        "see `fmri2image decode --help`",
    )  # fmt: skip
    p.add_argument(
        "--generators", nargs="+", metavar="NAME",
        help="generators (generation.generators; default: invert); "
        "`fmri2image generate --help` lists them",
    )  # fmt: skip
    p.add_argument(
        "--no-bounds", action="store_true",
        help="generate from the predictions only, without the true / random bounds",
    )  # fmt: skip
    p.add_argument(
        "--metrics", nargs="+", metavar="NAME",
        help="image metrics (evaluation.metrics; default: every one that runs here); "
        "`fmri2image evaluate --list-metrics`",
    )  # fmt: skip
    _options.add_force_option(p)
    p.add_argument(
        "--no-visualize", dest="visualize", action="store_false", default=None,
        help="do not write the image grids (OUT/grid-*.png)",
    )  # fmt: skip
    g = p.add_argument_group("runtime")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:N or mps (default: cpu)")
    g.add_argument("--seed", type=_options.non_negative_int, metavar="S", help="run seed")
    p.set_defaults(func=run)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="the whole pipeline for one model: fMRI -> embedding -> label -> picture -> scores",
        description=(
            "Run the whole pipeline for one embedding model on cached stages: data, "
            "stimulus features, ridge mapping, label retrieval, generation (with the "
            "true / random bounds) and evaluation, then the tables and an image grid."
        ),
        epilog=_RUN_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument("--model", dest="models", action="append", metavar="NAME",
                   help="the embedding model (models; `fmri2image models` lists them)")  # fmt: skip
    _add_common(p)
    p = subparsers.add_parser(
        "compare",
        help="several embedding models side by side, on shared stages, with paired tests",
        description=(
            "Run the whole pipeline for several embedding models on shared data stages "
            "and compare them: one table of every metric with its 95% CI and bounds, "
            "and paired permutation tests between every pair of models."
        ),
        epilog=_COMPARE_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="the embedding models compared (models)")  # fmt: skip
    _add_common(p)


def run_config(args: argparse.Namespace):
    """The :class:`~fmri2image.pipeline.config.RunConfig` of the command line."""
    from fmri2image.pipeline.config import load_config
    from fmri2image.pipeline.experiment import config_with

    config = load_config(args.config, args.overrides or ())
    conditions = ("predicted",) if args.no_bounds else None
    return config_with(
        config,
        models=tuple(args.models) if args.models else None,
        out=args.out,
        cache=args.cache,
        device=args.device,
        seed=args.seed,
        visualize=args.visualize,
        data__god=args.god,
        data__subjects=tuple(args.subjects) if args.subjects else None,
        data__rois=tuple(args.rois) if args.rois else None,
        data__split=args.split,
        retrieval__databases=tuple(args.databases) if args.databases else None,
        generation__generators=tuple(args.generators) if args.generators else None,
        generation__conditions=conditions,
        evaluation__metrics=tuple(args.metrics) if args.metrics else None,
    )


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline.experiment import run_experiment

    result = run_experiment(
        run_config(args), force=tuple(args.force or ()), progress=not args.quiet
    )
    print_result(result)
    return 0


def print_result(result) -> None:
    """The tables, the stage summary and where everything is."""
    out = result.out_dir.resolve()
    print()
    print(result.format())
    print(f"\n{result.stage_summary()}")
    print(f"Results: {out}")
    print(f"  report: {out / 'report.html'} (tables only: {out / 'report.md'})")
    print(f"  tables: {out / 'tables'} (scores.parquet: one row per image x metric)")
    print(f"  images: {out / 'images'}")
    grids = sorted(out.glob("grid-*.png"))
    if grids:
        print(f"  grid:   {', '.join(str(g) for g in grids)}")
    print(f"  config: {out / 'config.toml'}; stages: {out / 'stages.json'}; log: {out / 'run.log'}")
