"""``fmri2image models``: the encoders, what each can retrieve against, and what runs offline.

Reads only installed wheels, the Hugging Face hub cache and the torch checkpoint
folder (no weights, no torch import), so it answers in well under a second.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["format_table", "register", "run"]

_EPILOG = """\
databases:
  prototypes        ImageNet-1k classifier-head rows (--database prototypes)
  text-prototypes   CLIP text embeddings of "a photo of a {name}" (--database
                    text-prototypes, or text-prototypes:21k for all ImageNet-21k synsets)
  images            features of an image folder from `fmri2image extract`

offline: where the loaders look is set by HF_HOME / HF_HUB_CACHE (Hugging Face hub
cache) and TORCH_HOME (torchvision checkpoints).
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the encoders, the databases each can use, and which work offline",
        description=(
            "List every registered encoder with its embedding dimension, input size and\n"
            "weights, the retrieval databases it can serve, and whether its files are on\n"
            "this machine now (and how to get them when not). Models found in the Hugging\n"
            "Face hub cache are listed as the --model value that loads them."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--no-cache-scan", dest="cached", action="store_false",
        help="do not list hub-cache models beyond the named encoders",
    )  # fmt: skip
    p.set_defaults(func=run)


def _offline(available: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[available]


def format_table(rows) -> str:
    """Rows of :func:`fmri2image.features.model_catalog` as an aligned text table."""
    header = ("MODEL", "DIM", "INPUT", "DATABASES", "OFFLINE", "WEIGHTS")
    body = [
        (
            r.name,
            str(r.dim) if r.dim else "-",
            str(r.image_size) if r.image_size else "-",
            ", ".join(r.databases),
            _offline(r.available),
            r.weights,
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *body]:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    notes = [(r.name, n) for r in rows for n in r.notes]
    missing = [r for r in rows if r.available is False and r.how_to_get]
    if notes:
        lines += ["", "Notes:"] + [f"  {name}: {note}" for name, note in notes]
    if missing:
        lines += ["", "Not available offline; to get them:"]
        lines += [f"  {r.name}: {r.how_to_get}" for r in missing]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from fmri2image.features import model_catalog
    from fmri2image.features.encoders._net import hf_cache_dir, torch_checkpoint_dir

    rows = model_catalog(cached=args.cached)
    if args.json:
        payload = {
            "hf_hub_cache": hf_cache_dir(),
            "torch_checkpoints": torch_checkpoint_dir(),
            "models": [r.to_dict() for r in rows],
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(format_table(rows))
    print(f"\nHugging Face hub cache: {hf_cache_dir()}")
    print(f"torchvision checkpoints: {torch_checkpoint_dir()}")
    return 0
