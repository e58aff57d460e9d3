"""``fmri2image decode``: fMRI -> embedding -> label, several encoders side by side.

A run without generators: the same engine, configuration and output folder as
``run`` (its mapping stages are reused by a later ``run`` on the same cache).
"""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_EPILOG = """\
examples:
  # the demo data: both EfficientNet-Lites, labels from their ImageNet-1k heads and
  # from the demo's image database
  fmri2image decode --data demo-output/data --subject 1 --roi ROI_HVC \\
      --model effnet-lite0 --model effnet-lite2 --database prototypes \\
      --database demo-output/data/database --cache demo-output/results/cache --out dec/

  # higher visual cortex only, exact leave-one-out over a custom alpha grid
  fmri2image decode --data demo-output/data --subject 1 --roi ROI_HVC --model effnet-lite0 \\
      --cv loo --cv-groups none --alphas 1e0:1e8:17 --cache demo-output/results/cache \\
      --out dec-loo/

  # then pictures from the same maps (the cache is shared: nothing is fitted again)
  fmri2image generate --from dec/ --generator retrieve --out gen-dec/

  # GOD, three encoders; CLIP labels from 21k text prompts
  fmri2image decode --data GOD/ --subject 3 --model resnet50 --model vit --model clip \\
      --database IMAGENET_DIR --database text-prototypes:21k --device cuda --out results/

Every option is checked before any image is embedded; errors exit with status 2.
Results: OUT/summary.json (one row per encoder: pairwise identification, R2, hit@k,
each with its baseline and chance), OUT/tables/decoding.{csv,parquet},
OUT/maps/s<S>-<ROI>/<model>/{mapping,prediction,retrieval/<database>}/,
OUT/report.html, OUT/config.toml (a `run --config` repeats it), OUT/cache.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="map fMRI to embeddings and retrieve labels, per encoder (a run without pictures)",
        description=(
            "For each subject and ROI: fit a cross-validated map from voxels to each "
            "encoder's embedding of the training stimuli, predict the averaged test "
            "images, retrieve a label by cosine k-NN from each database, and report "
            "prediction metrics and label metrics (hit@k, Wu-Palmer, database coverage), "
            "each beside the score of always predicting the training-mean embedding and "
            "beside chance. The same engine and cache as `run`, without generators."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "--model", action="append", dest="models", metavar="NAME",
        help="encoder (repeatable): resnet50, vit, clip, clip-l14, effnet-lite0, effnet-lite2, "
        "hf:<id or folder>, timm:<name>, torchvision:<builder>, open_clip:<arch>:<tag> "
        "(models; default: effnet-lite0; see `fmri2image models`)",
    )  # fmt: skip
    _options.add_config_options(p)
    _options.add_output_options(p)
    _options.add_data_options(p)
    _options.add_mapping_options(p)
    _options.add_retrieval_options(p)
    _options.add_runtime_options(p, visualize=False)
    _options.add_force_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline.experiment import run_experiment

    config = _options.config_from_args(args).replace(generation__generators=())
    result = run_experiment(config, force=tuple(args.force or ()), progress=not args.quiet)
    print()
    print(result.format())
    out = result.out_dir.resolve()
    print(f"\n{result.stage_summary()}")
    print(f"Results: {out}  (summary.json, tables/decoding.csv, maps/, report.html)")
    return 0
