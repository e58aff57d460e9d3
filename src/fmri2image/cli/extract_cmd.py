"""``fmri2image extract``: embed an image database with one or more encoders.

Heavy imports (torch, the models, Ray) happen inside the handler, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fmri2image.cli import _options

__all__ = ["register", "run"]

_EPILOG = """\
examples:
  # the demo's labelled image database, offline
  fmri2image extract --model effnet-lite0 --images demo-output/data/database \\
      --out features/demo-db
  # the folder again, e.g. after images were added to it: only the shards whose
  # images changed are computed, the others are copied from the earlier --out
  fmri2image extract --model effnet-lite0 --images demo-output/data/database \\
      --out features/demo-db-2 --seed-from features/demo-db
  # the ImageNet-1k classifier rows as a one-row-per-class database
  fmri2image extract --model effnet-lite0 --prototypes --out features/prototypes
  # ILSVRC train (1.28 M images) with two encoders, on a GPU
  fmri2image extract --model effnet-lite0 --model effnet-lite2 \\
      --images /data/ILSVRC/train --device cuda --out features/imagenet
  RAY_ADDRESS=auto fmri2image extract --model clip --images /data/imagenet-256 \\
      --class-map classes.csv --out features/in256 --executor ray --device cuda

Each model writes <out>/<model>/shard-NNNNN.npy + images.parquet + manifest.json.
Re-running the same command resumes an interrupted extraction.
"""


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("--workers must be >= 0")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "extract",
        help="embed an image folder with one or more encoders (sharded, resumable)",
        description=(
            "Embed every image of an ImageNet-style folder (wnid folders, Tiny ImageNet,\n"
            "class-name folders, or a flat folder) with one or more encoders. Each image is\n"
            "decoded once for all encoders. Output is sharded, written atomically and\n"
            "resumable; unreadable images are skipped and listed in the manifest."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="NAME",
        help="encoder registry name (repeat for several: one decode feeds all)",
    )
    p.add_argument("--images", type=Path, metavar="DIR", help="image folder to embed")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--prototypes",
        action="store_true",
        help="also write each model's ImageNet class prototypes (classifier weights) to "
        "<out>/<model>.prototypes; --images becomes optional",
    )
    g = p.add_argument_group("image folder")
    g.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "wnid", "wnid-images", "class-name", "flat"),
        help="folder layout (default: detect)",
    )
    g.add_argument(
        "--class-map",
        type=Path,
        metavar="FILE",
        help="JSON object or CSV 'folder,wnid' naming the WordNet id of class folders",
    )
    g.add_argument(
        "--skip-unresolved",
        action="store_true",
        help="leave out class folders whose name is ambiguous or unknown instead of failing",
    )
    g.add_argument(
        "--limit",
        type=_options.positive_int,
        metavar="N",
        help="embed only N images, evenly spaced over the sorted list (for quick trials)",
    )
    r = p.add_argument_group("run")
    r.add_argument(
        "--batch-size", type=_options.positive_int, default=64, help="images per forward pass (64)"
    )
    r.add_argument(
        "--workers", type=_workers, default="auto", help="decode workers (default: spare cores)"
    )
    r.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 (cpu)")
    r.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16", "bfloat16"),
        help="inference precision (float32)",
    )
    r.add_argument(
        "--store-dtype",
        default="float32",
        choices=("float32", "float16"),
        help="precision of the stored features (float32)",
    )
    r.add_argument(
        "--shard-size",
        type=_options.positive_int,
        default=4096,
        help="images per shard file (4096)",
    )
    r.add_argument(
        "--full-decode",
        action="store_true",
        help="decode JPEGs at full resolution (default: reduced DCT scale for photos "
        "larger than 2x 512 px)",
    )
    r.add_argument("--executor", default="local", choices=("local", "ray"))
    r.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster (default: $RAY_ADDRESS, else local)"
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="discard existing stores made from another image list or config",
    )
    r.add_argument(
        "--seed-from",
        type=Path,
        metavar="DIR",
        help="the --out of an earlier extraction of this folder (e.g. before images were "
        "added): shards whose images are all unchanged there are copied, not computed",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image._lock import output_lock
    from fmri2image.errors import ConfigError
    from fmri2image.features.extract import _resolve_encoders

    if args.images is None and not args.prototypes:
        raise ConfigError(
            "Nothing to do: pass --images DIR to embed a folder, and/or --prototypes to "
            "write the models' class-prototype stores."
        )
    if args.seed_from is not None and (args.images is None or not args.seed_from.is_dir()):
        raise ConfigError(
            f"--seed-from {args.seed_from}: "
            + (
                "needs --images (it seeds an image extraction)."
                if args.images is None
                else "no such folder; pass the --out folder of an earlier extraction."
            )
        )
    progress = not getattr(args, "quiet", False)
    # Everything that can be refused is checked before --out is touched: the image
    # folder (class-name folders resolved), the model names, and (local executor)
    # the models themselves, so a mistake leaves no empty --out and no lock file.
    db = _scan(args, progress) if args.images is not None else None
    local = args.executor == "local"
    encoders = _resolve_encoders(args.models, args.device, args.dtype, build=local)
    # One writer at a time: two extract runs into one --out would mix their stores
    # (extract_features locks too; this lock also covers the --prototypes stores).
    with output_lock(args.out):
        return _extract(args, db, encoders if local else list(args.models), progress)


def _scan(args: argparse.Namespace, progress: bool) -> Any:
    import numpy as np

    from fmri2image.features.databases import scan_image_folder

    db = scan_image_folder(
        args.images,
        layout=args.layout,
        class_map=args.class_map,
        unresolved="skip" if args.skip_unresolved else "error",
        progress=progress,
    )
    if args.limit and args.limit < len(db):
        idx = np.unique(np.linspace(0, len(db) - 1, args.limit).round().astype(np.int64))
        db = db.select(idx)
    return db


def _extract(args: argparse.Namespace, db: Any, encoders: list[Any], progress: bool) -> int:
    from fmri2image.features.databases import class_prototype_database
    from fmri2image.features.extract import DEFAULT_DECODE_MIN_SIDE, extract_features

    if db is not None:
        print(f"images: {db.summary()}")
        res = extract_features(
            db,
            encoders,
            args.out,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            dtype=args.dtype,
            shard_size=args.shard_size,
            store_dtype=args.store_dtype,
            executor=args.executor,
            address=args.ray_address,
            decode_min_side=None if args.full_decode else DEFAULT_DECODE_MIN_SIDE,
            overwrite=args.overwrite,
            seed_from=args.seed_from,
            progress=progress,
        )
        rate = f"{res.images_per_second:.1f} images/s" if res.n_processed else "nothing to do"
        seeded = f" (copied from --seed-from: {res.shards_seeded})" if args.seed_from else ""
        print(
            f"extracted {res.n_images} images ({res.n_skipped} skipped) in "
            f"{res.seconds:.1f} s, {rate}; shards written {res.shards_written}{seeded}, "
            f"reused {res.shards_reused}"
        )
        for name, store in res.stores.items():
            print(f"  {name}: {store.path} ({store.n} x {store.dim}, {store.dtype})")
    if args.prototypes:
        for name in args.models:
            store = class_prototype_database(
                name, args.out, device=args.device, dtype=args.dtype, store_dtype=args.store_dtype
            )
            print(f"  {name} prototypes: {store.path} ({store.n} classes x {store.dim})")
    return 0
