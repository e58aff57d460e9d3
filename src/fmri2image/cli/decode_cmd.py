"""``fmri2image decode``: fMRI -> embedding -> label for one subject, several encoders."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_EPILOG = """\
examples:
  # three encoders side by side, labels from each encoder's ImageNet-1k head
  fmri2image decode --god GOD/ --subject 3 --model resnet50 --model vit --model clip \\
      --database prototypes --out results/

  # CLIP labels from 21k text prompts, plus an ImageNet feature database
  fmri2image extract --model clip --images IMAGENET/train --out feats/
  fmri2image decode --god GOD/ --subject 3 --model clip --database text-prototypes:21k \\
      --database feats/ --out results/

  # higher visual cortex only, exact leave-one-out over a custom alpha grid
  fmri2image decode --god GOD/ --subject 3 --roi ROI_HVC --model effnet-lite0 \\
      --cv loo --cv-groups none --alphas 1e0:1e8:17 --out results/

Every option is checked before any image is embedded; errors exit with status 2.
Results: OUT/summary.json, OUT/<model>/{mapping,prediction,retrieval/<database>}/.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="map fMRI to embeddings (ridge) and retrieve labels, per encoder",
        description=(
            "For one GOD subject: fit a cross-validated ridge map from voxels to each "
            "encoder's embedding of the training stimuli, predict the averaged test "
            "images, retrieve a WordNet label by cosine k-NN from each database, and "
            "report prediction metrics and label metrics (hit@k, Wu-Palmer, database "
            "coverage), each beside the score of always predicting the training-mean "
            "embedding and beside chance."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "--god", required=True, metavar="DIR", help="GOD folder (SubjectN.h5, id files, images)"
    )
    p.add_argument(
        "--subject", type=_options.positive_int, required=True, metavar="N", help="subject number"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="results folder")
    p.add_argument(
        "--model", action="append", dest="models", metavar="NAME", required=True,
        help="encoder (repeatable): resnet50, vit, clip, clip-l14, effnet-lite0, effnet-lite2, "
        "hf:<id or folder>, timm:<name>, torchvision:<builder>, open_clip:<arch>:<tag> "
        "(see `fmri2image models`)",
    )  # fmt: skip
    _options.add_data_options(p)
    _options.add_mapping_options(p)
    _options.add_retrieval_options(p)
    _options.add_runtime_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline import DecodingConfig, run_decoding

    config = DecodingConfig(
        subject=args.subject,
        encoders=tuple(args.models),
        databases=tuple(args.databases or ("prototypes",)),
        **_options.mapping_config(args),
    )
    result = run_decoding(args.god, args.out, config, progress=not args.quiet)
    print()
    print(result.table())
    print()
    print(result.labels_table())
    print(f"\nResults: {result.out_dir.resolve()}  ({result.seconds:.1f} s)")
    return 0
