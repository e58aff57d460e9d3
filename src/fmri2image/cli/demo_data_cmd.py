"""``fmri2image make-demo-data``: write a GOD-layout demo dataset (no downloads).

Heavy imports (torch, the encoder, h5py) happen inside the handler, so ``--help``
stays fast.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  fmri2image make-demo-data demo/
  fmri2image make-demo-data demo/ --subjects 3 --seed 1 --snr 0.3
  fmri2image make-demo-data demo/ --images-per-category 16 --n-test-repeats 10 \\
      --n-voxels 2000 --force

The folder has the GOD release layout (Subject1.h5 ..., training/, test/,
imageID_training.csv, imageID_test.csv), so every command that takes a GOD folder
takes it. Photos come from scikit-image / scikit-learn; the fMRI is simulated by the
documented encoding model in docs/demo-dataset.md.
"""


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-demo-data",
        help="write a small GOD-layout dataset from packaged photos and simulated fMRI",
        description=(
            "Write a dataset with the exact layout of the Generic Object Decoding release "
            "(SubjectN.h5 BData files, training/ and test/ JPEG folders, header-less id "
            "files) from photographs shipped with scikit-image and scikit-learn, labelled "
            "with WordNet ids, and fMRI simulated by a documented encoding model: V1-V3 "
            "respond to Gabor energy in random receptive fields, V4/LOC/FFA/PPA to "
            "EfficientNet-Lite0 features, plus run drift and Gaussian noise at --snr. "
            "Nothing is downloaded."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create (must be empty)")
    p.add_argument(
        "--subjects", type=_int_at_least(1), default=1, metavar="N", help="subjects (default: 1)"
    )
    p.add_argument(
        "--seed", type=_int_at_least(0), default=0, metavar="S", help="seed (default: 0)"
    )
    p.add_argument(
        "--n-train-categories",
        type=_int_at_least(2),
        default=10,
        metavar="N",
        help="training categories (default: 10; bounded by the packaged photos)",
    )
    p.add_argument(
        "--images-per-category",
        type=_int_at_least(1),
        default=8,
        metavar="N",
        help="training images per category, one per training run (default: 8, as GOD)",
    )
    p.add_argument(
        "--n-test-categories",
        type=_int_at_least(2),
        default=6,
        metavar="N",
        help="test categories, one image each (default: 6)",
    )
    p.add_argument(
        "--n-test-repeats",
        type=_int_at_least(1),
        default=5,
        metavar="R",
        help="presentations of each test image, one per run (default: 5; GOD: 35)",
    )
    p.add_argument(
        "--n-imagery-repeats",
        type=_int_at_least(0),
        default=2,
        metavar="R",
        help="imagery trials per test category (default: 2; GOD: 10)",
    )
    p.add_argument(
        "--n-voxels",
        type=_int_at_least(14),
        default=500,
        metavar="N",
        help="voxels per subject over V1-PPA (default: 500)",
    )
    p.add_argument(
        "--snr",
        type=_positive_float,
        default=0.5,
        metavar="X",
        help="single-trial signal-to-noise variance ratio per voxel (default: 0.5)",
    )
    p.add_argument(
        "--encoder",
        default="effnet-lite0",
        metavar="NAME",
        help="encoder whose features drive the high-level ROIs (default: effnet-lite0)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUT_DIR, replacing an earlier demo dataset's files",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``make-demo-data``: write the dataset and print its summary."""
    import json

    from fmri2image.data.demo import write_demo_dataset

    info = write_demo_dataset(
        args.out_dir,
        n_subjects=args.subjects,
        seed=args.seed,
        n_train_categories=args.n_train_categories,
        images_per_category=args.images_per_category,
        n_test_categories=args.n_test_categories,
        n_test_repeats=args.n_test_repeats,
        n_imagery_repeats=args.n_imagery_repeats,
        n_voxels=args.n_voxels,
        snr=args.snr,
        encoder=args.encoder,
        overwrite=args.force,
        progress=not getattr(args, "quiet", False),
    )
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(info.summary())
    return 0
