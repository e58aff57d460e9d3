"""``fmri2image demo``: the whole pipeline on the embedded demo data."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the pipeline on the embedded demo dataset (no downloads)",
        description=(
            "Write a demo dataset in the GOD release layout (real photographs that ship "
            "with installed packages, simulated fMRI), then decode it with each encoder: "
            "ridge mapping fMRI -> embedding, k-NN label retrieval from the encoder's "
            "ImageNet class prototypes, and the prediction and semantic metrics, side by side."
        ),
    )
    p.add_argument("--out", default="demo-output", help="output folder (default: %(default)s)")
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="encoder to compare (repeatable; default: effnet-lite0 and effnet-lite2)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data and fit (default: 0)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument(
        "--regenerate", action="store_true", help="rewrite the demo dataset even if present"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.pipeline.demo import DEMO_ENCODERS, run_demo

    result = run_demo(
        args.out,
        encoders=tuple(args.models or DEMO_ENCODERS),
        seed=args.seed,
        regenerate=args.regenerate,
        device=args.device,
    )
    print(
        f"\nDemo: subject 1, {result.n_train} training samples, {result.n_test_images} test "
        f"images, {result.n_voxels} voxels, {result.seconds:.1f} s\n"
    )
    print(result.table())
    print()
    print(result.labels_table())
    print(f"\nResults: {result.out_dir.resolve()}")
    print(f"  summary: {result.out_dir.resolve() / 'summary.json'}")
    for r in result.results:
        print(f"  {r.encoder}: {r.out_dir.resolve()}")
    return 0
