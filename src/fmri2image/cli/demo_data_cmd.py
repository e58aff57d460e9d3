"""``fmri2image make-demo-data``: write a GOD-layout demo dataset (no downloads).

Heavy imports (torch, the encoder, h5py) happen inside the handler, so ``--help``
stays fast.
"""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  fmri2image make-demo-data demo/
  fmri2image make-demo-data --list-categories

(`--subjects 3 --seed 1 --snr 0.5` writes three subjects of another simulated brain,
`--images-per-category 16 --n-test-repeats 10 --n-voxels 3000` a larger one; `--force`
writes over a dataset already in the folder.)

The folder has the GOD release layout (Subject1.h5 ..., training/, test/,
imageID_training.csv, imageID_test.csv), so every command that takes a GOD folder
takes it, plus database/<wnid>/ (other crops of every category, an ImageNet-style
labelled database) and demo_dataset.json (provenance). Photos come from
scikit-image / scikit-learn (19 categories) and, when installed, the Debian
packages darknet, opencv-doc and mate-backgrounds (65 categories); the fMRI is
simulated by the documented encoding model in docs/demo-dataset.md.
"""


def _float(positive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = value > 0 if positive else value >= 0
        if not ok or value == float("inf"):
            kind = "positive" if positive else "non-negative"
            raise argparse.ArgumentTypeError(f"expected a {kind} number, got {text}")
        return value

    return parse


def _photo_root(text: str) -> tuple[str, str]:
    package, sep, folder = text.partition("=")
    if not sep or not package or not folder:
        raise argparse.ArgumentTypeError(
            f"expected PACKAGE=DIR (e.g. darknet=/usr/share/darknet/data), got {text!r}"
        )
    return package, folder


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-demo-data",
        help="write a small GOD-layout dataset from packaged photos and simulated fMRI",
        description=(
            "Write a dataset with the exact layout of the Generic Object Decoding release "
            "(SubjectN.h5 BData files, training/ and test/ JPEG folders, header-less id "
            "files) and an ImageNet-style image database, from photographs shipped with "
            "installed packages, labelled with WordNet ids, and fMRI simulated by a "
            "documented encoding model: V1-V3 respond to Gabor energy in random receptive "
            "fields, V4/LOC/FFA/PPA to the leading principal components of "
            "EfficientNet-Lite0 features, plus run drift and Gaussian noise at --snr. "
            "Nothing is downloaded. Defaults adapt to the photos installed: every "
            "available category is used."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "out_dir",
        metavar="OUT_DIR",
        nargs="?",
        help="folder to create (must be empty unless --force)",
    )
    p.add_argument(
        "--subjects",
        type=_options.int_at_least(1),
        default=1,
        metavar="N",
        help="subjects (default: 1)",
    )
    p.add_argument(
        "--seed", type=_options.int_at_least(0), default=0, metavar="S", help="seed (default: 0)"
    )
    p.add_argument(
        "--n-train-categories",
        type=_options.int_at_least(2),
        default=None,
        metavar="N",
        help="training categories (default: every category that shares no photo with a "
        "test category: 54 with the Debian photos, 13 without)",
    )
    p.add_argument(
        "--images-per-category",
        type=_options.int_at_least(1),
        default=8,
        metavar="N",
        help="training images per category, one per training run (default: 8, as GOD)",
    )
    p.add_argument(
        "--n-test-categories",
        type=_options.int_at_least(2),
        default=None,
        metavar="N",
        help="test categories, one image each (default: 10 when at least 40 categories "
        "are available, else 6; GOD: 50)",
    )
    p.add_argument(
        "--n-test-repeats",
        type=_options.int_at_least(1),
        default=5,
        metavar="R",
        help="presentations of each test image, one per run (default: 5; GOD: 35)",
    )
    p.add_argument(
        "--n-imagery-repeats",
        type=_options.int_at_least(0),
        default=2,
        metavar="R",
        help="imagery trials per test category (default: 2; GOD: 10)",
    )
    p.add_argument(
        "--n-voxels",
        type=_options.int_at_least(14),
        default=1500,
        metavar="N",
        help="voxels per subject over V1-PPA (default: 1500; GOD: 4133-4643)",
    )
    p.add_argument(
        "--snr",
        type=_float(positive=True),
        default=1.0,
        metavar="X",
        help="single-trial signal-to-noise variance ratio per voxel (default: 1)",
    )
    p.add_argument(
        "--drift",
        type=_float(positive=False),
        default=0.5,
        metavar="X",
        help="standard deviation of per-run voxel offsets, in signal units (default: 0.5)",
    )
    p.add_argument(
        "--imagery-gain",
        type=_float(positive=False),
        default=0.5,
        metavar="X",
        help="scale of the high-level signal in imagery trials (default: 0.5)",
    )
    p.add_argument(
        "--image-size",
        type=_options.int_at_least(32),
        default=256,
        metavar="PX",
        help="longer side of the stimulus and database images (default: 256)",
    )
    p.add_argument(
        "--database-images",
        type=_options.int_at_least(0),
        default=4,
        metavar="N",
        help="images per category in OUT_DIR/database/<wnid>/, other crops than the "
        "stimuli, of every available category (default: 4; 0: no database)",
    )
    p.add_argument(
        "--encoder",
        default="effnet-lite0",
        metavar="NAME",
        help="encoder whose features drive the high-level ROIs (default: effnet-lite0)",
    )
    p.add_argument(
        "--pip-photos-only",
        action="store_true",
        help="use only the photos of the scikit-image / scikit-learn wheels (19 "
        "categories), as on a machine without the Debian photo packages",
    )
    p.add_argument(
        "--photo-root",
        action="append",
        type=_photo_root,
        default=None,
        metavar="PACKAGE=DIR",
        help="look for PACKAGE's photos in DIR (repeatable; default: the Debian install "
        "folders, e.g. darknet=/usr/share/darknet/data)",
    )
    p.add_argument(
        "--list-categories",
        action="store_true",
        help="print the photo catalogue (installed or not, and the split of each "
        "category) and exit",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUT_DIR, replacing an earlier demo dataset's files",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def _photo_roots(args: argparse.Namespace):
    from fmri2image.demo import DEBIAN_PHOTO_ROOTS

    if args.pip_photos_only and args.photo_root:
        from fmri2image.errors import ConfigError

        raise ConfigError(
            "--pip-photos-only and --photo-root contradict each other; pass one of them."
        )
    if args.pip_photos_only:
        return {}
    if not args.photo_root:
        return None
    roots: dict[str, list[str]] = {k: list(v) for k, v in DEBIAN_PHOTO_ROOTS.items()}
    for package, folder in args.photo_root:
        roots[package] = [folder]
    return roots


def _list_categories(args: argparse.Namespace, photo_roots) -> int:
    import json

    from fmri2image.demo import CATALOGUE, available_categories, split_categories
    from fmri2image.imagenet import imagenet1k_wnids

    avail = {c.wnid: c for c in available_categories(photo_roots)}
    split = split_categories(tuple(avail.values()), args.n_test_categories, args.n_train_categories)
    role = {c.wnid: "training" for c in split.train}
    role |= {c.wnid: "test" for c in split.test}
    role |= {c.wnid: "database" for c in split.distractors}
    in1k = set(imagenet1k_wnids())
    rows = []
    for cat in CATALOGUE:
        have = avail.get(cat.wnid)
        rows.append(
            {
                "wnid": cat.wnid,
                "name": cat.name,
                "imagenet1k": cat.wnid in in1k,
                "role": role.get(cat.wnid, "not installed"),
                "photos": [r.source for r in (have.regions if have else cat.regions)],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'wnid':<11}{'name':<24}{'1k':<4}{'role':<15}photos")
    for r in rows:
        print(
            f"{r['wnid']:<11}{r['name'][:23]:<24}{'yes' if r['imagenet1k'] else '':<4}"
            f"{r['role']:<15}{', '.join(r['photos'])}"
        )
    n = {k: sum(r["role"] == k for r in rows) for k in ("training", "test", "database")}
    print(
        f"\n{len(avail)} of {len(CATALOGUE)} categories installed: {n['training']} training, "
        f"{n['test']} test, {n['database']} database-only."
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Handler of ``make-demo-data``: write the dataset and print its summary."""
    import json

    from fmri2image.errors import ConfigError

    photo_roots = _photo_roots(args)
    if args.list_categories:
        return _list_categories(args, photo_roots)
    if args.out_dir is None:
        raise ConfigError(
            "make-demo-data needs OUT_DIR, the folder to write (or --list-categories)."
        )

    from fmri2image.demo import write_demo_dataset

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
        drift=args.drift,
        imagery_gain=args.imagery_gain,
        image_size=args.image_size,
        database_images_per_category=args.database_images,
        encoder=args.encoder,
        photo_roots=photo_roots,
        overwrite=args.force,
        progress=not getattr(args, "quiet", False),
    )
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
    else:
        print(info.summary())
    return 0
