"""``fmri2image run`` and ``fmri2image compare``: the whole pipeline, cached."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_RUN_EPILOG = """\
examples:
  fmri2image run --data demo-output/data --roi ROI_HVC --model effnet-lite0 \\
      --database prototypes --database demo-output/data/database --generators retrieve \\
      --cache demo-output/results/cache --out runs/lite0
  fmri2image run --config examples/demo-like.toml --set mapping.cv=loo --generators retrieve \\
      --out runs/loo
  fmri2image run --config runs/lite0/config.toml --force generation   # remake the pictures
  fmri2image run --data GOD --model clip-l14 --database text-prototypes:21k \\
      --generators unclip --device cuda --out runs/clip

Precedence: defaults < --config FILE < --set KEY=VALUE < the other flags.  The
resolved configuration is written to OUT/config.toml; a rerun with the same
settings reuses every stage whose artifact verifies (checksums), and recomputes only
what changed; runs that share a --cache share their stages.  Outputs: OUT/summary.json,
OUT/tables (scores, summary, paired, decoding; CSV and parquet), OUT/images, OUT/maps,
OUT/grid-*.png, OUT/report.html, OUT/stages.json, OUT/run.log, OUT/cache.
"""

_COMPARE_EPILOG = """\
examples:
  fmri2image compare --data demo-output/data --roi ROI_HVC --models effnet-lite0 \\
      effnet-lite2 --database demo-output/data/database --generators retrieve \\
      --metrics pixcorr ssim lite0 lite2 --cache demo-output/results/cache --out cmp/
  fmri2image compare --config examples/compare.toml --subjects 1 2 3 --out cmp/god
  fmri2image compare --data GOD --models resnet50 vit clip --database IMAGENET_DIR \\
      --generators sd15 --device cuda --out cmp/
  fmri2image compare --datasets god=GOD deeprecon=DEEPRECON things=THINGS --models clip \\
      --database prototypes --generators invert --out cmp/datasets

Every model shares the data stages; each is scored beside its bounds (the same
generator fed the true stimulus embedding / label, and a random training
stimulus's), with paired permutation tests between every pair of models
(Holm-corrected).  Tables are indexed by subject x ROI x model x generator x
condition, with the mean over subjects.
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    _options.add_config_options(p)
    _options.add_output_options(p)
    _options.add_data_options(p)
    _options.add_mapping_options(p)
    _options.add_retrieval_options(p)
    _options.add_generation_options(p)
    _options.add_evaluation_options(p)
    _options.add_runtime_options(p)
    _options.add_force_option(p)
    p.set_defaults(func=run)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="the whole pipeline for one model: fMRI -> embedding -> label -> picture -> scores",
        description=(
            "Run the whole pipeline for one embedding model on cached stages: data, "
            "stimulus features, mapping, label retrieval, generation (with the true / "
            "random bounds) and evaluation, then the tables, an image grid and the report."
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
    p.add_argument(
        "--datasets", nargs="+", metavar="NAME=DIR", type=_dataset_entry,
        help="compare on several datasets, each its own run in OUT/NAME with its default "
        "ROIs, one table indexed by dataset (datasets; per-dataset subjects and ROIs: "
        "[[datasets]] tables in --config), e.g. --datasets god=GOD deeprecon=DEEPRECON",
    )  # fmt: skip
    _add_common(p)


def _dataset_entry(text: str) -> dict[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(
            f"expected NAME=DIR (e.g. deeprecon=data/deeprecon), got {text!r}"
        )
    return {"dataset": name.strip(), "path": path.strip()}


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline.experiment import run_experiment

    config = _options.config_from_args(args)
    if getattr(args, "datasets", None):
        config = config.replace(datasets=tuple(args.datasets))
    if config.datasets:
        from fmri2image.pipeline.datasets import run_datasets

        multi = run_datasets(config, force=tuple(args.force or ()), progress=not args.quiet)
        print()
        print(multi.format())
        print(f"\n{multi.stage_summary()}")
        out = multi.out_dir.resolve()
        print(f"Results: {out}")
        print(f"  report:  {out / 'report.html'} (a section per dataset)")
        print(f"  tables:  {out / 'tables'} (each run's tables, a leading dataset column)")
        for label, result in multi.runs:
            print(f"  {label}: {result.out_dir.resolve()}")
        return 0
    result = run_experiment(config, force=tuple(args.force or ()), progress=not args.quiet)
    print_result(result)
    return 0


def print_result(result) -> None:
    """The tables, the stage summary and where everything is."""
    out = result.out_dir.resolve()
    print()
    print(result.format())
    print(f"\n{result.stage_summary()}")
    print(f"Results: {out}")
    print(f"  report:  {out / 'report.html'} (tables only: {out / 'report.md'})")
    print(f"  summary: {out / 'summary.json'} (the decoding, one row per encoder)")
    print(f"  tables:  {out / 'tables'} (scores.parquet: one row per image x metric)")
    if result.reconstructions:
        print(f"  images:  {out / 'images'}")
    print(f"  maps:    {out / 'maps'} (fitted maps, predictions, retrieved labels)")
    grids = sorted(out.glob("grid-*.png"))
    if grids:
        print(f"  grid:    {', '.join(str(g) for g in grids)}")
    print(
        f"  config:  {out / 'config.toml'}; stages: {out / 'stages.json'}; log: {out / 'run.log'}"
    )
