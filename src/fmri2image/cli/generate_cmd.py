"""``fmri2image generate``: pictures from a decode run, one per test image and encoder."""

from __future__ import annotations

import argparse
from typing import Any

from fmri2image.cli import _options

_EPILOG = """\
examples:
  # offline, on the demo: invert each predicted embedding through its own encoder
  fmri2image generate --from demo-output/results --generator invert --out gen-invert/

  # the original pipeline: Stable Diffusion 1.5 from the retrieved label, on a GPU
  fmri2image generate --from results/ --generator sd15 --device cuda --out gen-sd15/

  # label semantics on top of the decoded low-level structure (img2img)
  fmri2image generate --from results/ --generator sd-turbo --init invert \\
      --option strength=0.6 --device cuda --out gen-turbo/

  # from the predicted CLIP ViT-L/14 embedding itself (decode with --model clip-l14)
  fmri2image generate --from results/ --generator unclip --device cuda --out gen-unclip/

  # the bounds: the same generator fed the true embedding / label, and a random one
  fmri2image generate --from results/ --generator invert --condition true --out gen-true/
  fmri2image generate --from results/ --generator invert --condition random --out gen-random/

  # the generator's options and their defaults
  fmri2image generate --generator sd15 --list-options

Output: OUT/<model>/<stimulus stem>.png, OUT/<model>/generation.parquet (prompt or
conditioning, seed, flagged, seconds per image) and OUT/generation.json (resolved
options).  A rerun skips images already made with the same options; a killed run
resumes.  Images the safety checker flagged on every attempt are marked flagged.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="make a picture for every test image of a decode run",
        description=(
            "Read what `fmri2image decode` (or `demo`) wrote and make one picture per test "
            "image and encoder: Stable Diffusion from the retrieved label (sd15, sd-turbo, "
            "diffusers:<id or folder>), unCLIP from the predicted embedding itself, or, "
            "offline, the feature inversion of the predicted embedding (invert) or the "
            "nearest image of the run's image database (retrieve)."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "--from", dest="decode_dir", metavar="DIR",
        help="the --out of `fmri2image decode` (or a demo folder's results/)",
    )  # fmt: skip
    p.add_argument("--generator", required=True, metavar="NAME", help="generator (see examples)")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument(
        "--encoder", action="append", dest="encoders", metavar="NAME",
        help="encoder of the decode run to generate for (repeatable; default: all)",
    )  # fmt: skip
    p.add_argument(
        "--labels-from", metavar="DB",
        help="database whose retrieved label drives label-based generators (default: the "
        "decode run's first)",
    )  # fmt: skip
    p.add_argument(
        "--condition", choices=("predicted", "true", "random"), default="predicted",
        help="feed the generator the decoded embedding and label (the method), the true "
        "stimulus embedding and label (the ceiling), or a random training stimulus's "
        "(the floor): evaluate all three to see what the brain contributes",
    )  # fmt: skip
    p.add_argument(
        "--init", metavar="invert|DIR",
        help="initial image for img2img: 'invert' (feature inversion of the same "
        "prediction) or the --out of an earlier generate run",
    )  # fmt: skip
    p.add_argument(
        "--option", "-O", action="append", dest="options", metavar="KEY=VALUE", default=[],
        help="a generator option (repeatable), e.g. --option steps=30 --option "
        "prompt='a photo of a {name}'; --list-options shows them with defaults",
    )  # fmt: skip
    p.add_argument(
        "--list-options", action="store_true", help="print the generator's options and exit"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
        help="precision (auto: float16 on CUDA, else float32)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=_options.positive_int, default=4, metavar="N",
        help="images per generator call",
    )  # fmt: skip
    p.add_argument("--seed", type=_options.non_negative_int, default=0, metavar="S",
                   help="run seed (each image's seed derives from it and the stimulus stem)")  # fmt: skip
    p.add_argument(
        "--executor", choices=("local", "ray"), default="local",
        help="ray: one generator replica per Ray actor (one GPU each with --device cuda)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=_options.positive_int, default=None, metavar="N",
        help="Ray actors (default: the cluster's GPUs, or 1 on CPU)",
    )  # fmt: skip
    p.set_defaults(func=run)


def _coerce(value: str, annotation: Any, key: str, generator: str) -> Any:
    """``value`` as the option's type (bool, int, float, str; ``none`` for optional ones)."""
    import types
    import typing

    from fmri2image.errors import ConfigError

    args = typing.get_args(annotation)
    optional = type(None) in args
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next((a for a in args if a is not type(None)), str)
    v = value.strip()
    if optional and v.lower() in ("none", "null"):
        return None
    try:
        if annotation is bool:
            if v.lower() in ("1", "true", "yes", "on"):
                return True
            if v.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(v)
        if annotation in (int, float):
            return annotation(v)
    except ValueError:
        kind = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(
            f"--option {key}={value}: {key} of generator {generator!r} takes a value of type "
            f"{kind}{' (or none)' if optional else ''}."
        ) from None
    return value


def parse_options(items: list[str], generator: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> typed generator options (types from its ``Options``)."""
    import dataclasses
    import typing

    from fmri2image.errors import ConfigError
    from fmri2image.generation import generator_options

    cls = generator_options(generator)
    hints = typing.get_type_hints(cls) if cls is not None else {}
    names = [f.name for f in dataclasses.fields(cls)] if cls is not None else []
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--option {item!r}: expected KEY=VALUE, e.g. --option steps=30.")
        if cls is not None and key not in names:
            raise ConfigError(
                f"--option {key}: generator {generator!r} has no such option; its options: "
                f"{', '.join(names) or '(none)'} (see --list-options)."
            )
        out[key] = _coerce(value, hints.get(key, str), key, generator)
    return out


def _list_options(generator: str) -> str:
    import dataclasses

    from fmri2image.generation import GENERATORS, generator_options

    entry = GENERATORS.get(generator)
    cls = generator_options(generator)
    lines = [f"{generator}: {entry.description} (conditioned on the {entry.conditioning})"]
    if cls is None or not dataclasses.fields(cls):
        lines.append("  no options")
        return "\n".join(lines)
    doc = _field_docs(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  --option {f.name}=...  (default: {default!r})  {doc.get(f.name, '')}")
    return "\n".join(lines)


def _field_docs(cls: type) -> dict[str, str]:
    """``name : type`` / indented description pairs of a numpydoc Attributes section."""
    doc = (cls.__doc__ or "").splitlines()
    out: dict[str, str] = {}
    current = None
    for line in doc:
        stripped = line.strip()
        if " : " in stripped and not line.startswith(" " * 8):
            current = stripped.split(" : ")[0].strip()
            out[current] = ""
        elif current and stripped and line.startswith(" " * 8):
            out[current] = (out[current] + " " + stripped).strip()
        elif not stripped:
            current = None
    return out


def run(args: argparse.Namespace) -> int:
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.generate import GenerateConfig, run_generate

    if args.list_options:
        print(_list_options(args.generator))
        return 0
    missing = [f for f, v in (("--from", args.decode_dir), ("--out", args.out)) if not v]
    if missing:
        raise ConfigError(f"generate needs {' and '.join(missing)} (or --list-options).")
    options = parse_options(args.options, args.generator)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float16" if str(args.device).startswith("cuda") else "float32"
    config = GenerateConfig(
        generator=args.generator,
        encoders=tuple(args.encoders) if args.encoders else None,
        labels_from=args.labels_from,
        init=args.init,
        seed=args.seed,
        device=args.device,
        dtype=dtype,
        batch_size=args.batch_size,
        executor=args.executor,
        workers=args.workers,
        options=options,
        condition=args.condition,
    )
    summary = run_generate(args.decode_dir, args.out, config, progress=not args.quiet)
    print(summary.format())
    return 0
