"""``fmri2image decode``: fMRI -> embedding -> label for one subject, several encoders."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "decode",
        help="map fMRI to embeddings (ridge) and retrieve labels, per encoder",
        description=(
            "For one GOD subject: fit a cross-validated ridge map from voxels to each "
            "encoder's embedding of the training stimuli, predict the averaged test "
            "images, retrieve a WordNet label by cosine k-NN, and report prediction "
            "metrics (with chance and training-mean baselines) and semantic metrics "
            "(hit@k, Wu-Palmer, database coverage)."
        ),
    )
    p.add_argument("--god", required=True, help="GOD folder (SubjectN.h5, id files, images)")
    p.add_argument("--subject", type=int, required=True, help="subject number")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument(
        "--model", action="append", dest="models", metavar="NAME", required=True,
        help="encoder registry name (repeatable), e.g. resnet50, clip, effnet-lite0, hf:<id>",
    )  # fmt: skip
    p.add_argument("--roi", default="ROI_VC", help="ROI expression (default: %(default)s)")
    p.add_argument(
        "--normalization", choices=("run", "train", "none"), default="run",
        help="voxel normalization (default: %(default)s, per-run z-scoring as in GOD)",
    )  # fmt: skip
    p.add_argument("--cv", type=int, default=5, help="CV folds for alpha (default: 5)")
    p.add_argument(
        "--n-voxels", type=int, default=None,
        help="keep the voxels most correlated with the targets (training data only)",
    )  # fmt: skip
    p.add_argument(
        "--database", default="prototypes",
        help="'prototypes' (ImageNet-1k classifier head) or a folder from 'fmri2image extract'",
    )  # fmt: skip
    p.add_argument("--k", type=int, default=5, help="neighbours per query (default: 5)")
    p.add_argument(
        "--vote", choices=("nearest", "majority", "weighted"), default="nearest",
        help="how neighbour labels are combined (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline import DecodingConfig, run_decoding

    config = DecodingConfig(
        subject=args.subject,
        roi=args.roi,
        encoders=tuple(args.models),
        normalization=args.normalization,
        cv=args.cv,
        n_voxels=args.n_voxels,
        database=args.database,
        k=args.k,
        vote=args.vote,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    result = run_decoding(args.god, args.out, config)
    print(result.table())
    print()
    print(result.labels_table())
    print(f"\nResults: {result.out_dir.resolve()}")
    return 0
