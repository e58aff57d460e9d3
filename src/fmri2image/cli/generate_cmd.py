"""``fmri2image generate``: pictures for a run's test images, one generator at a time.

``generate --from RUN`` reads the run's resolved configuration (``RUN/config.toml``),
sets its generator and lets the engine reuse every stage upstream of the pictures
from the run's cache: nothing is decoded twice.
"""

from __future__ import annotations

import argparse
from typing import Any

from fmri2image.cli import _options

_EPILOG = """\
examples:
  # offline, on the demo: the nearest image of the demo's image database
  fmri2image generate --from demo-output/results --generator retrieve --out gen-retrieve/

  # feature inversion of each predicted embedding through its own encoder
  fmri2image generate --from demo-output/results --generator invert \\
      --option iterations=8 --option size=64 --out gen-invert/

  # the bounds: the same generator fed the true embedding / label, and a random one
  fmri2image generate --from demo-output/results --generator retrieve --condition true \\
      --condition random --out gen-bounds/

  # the generator's options and their defaults
  fmri2image generate --generator invert --list-options

  # the original pipeline: Stable Diffusion 1.5 from the retrieved label, on a GPU
  fmri2image generate --from results/ --generator sd15 --device cuda --out gen-sd15/

  # label semantics on top of the decoded low-level structure (img2img)
  fmri2image generate --from results/ --generator sd-turbo --init invert \\
      --option strength=0.6 --device cuda --out gen-turbo/

  # from the predicted CLIP ViT-L/14 embedding itself (decode with --model clip-l14)
  fmri2image generate --from results/ --generator unclip --device cuda --out gen-unclip/

RUN is the output folder of `run`, `compare`, `decode` or `generate` (of `demo`:
OUT/results).  OUT is a run folder like theirs: images/s<S>-<ROI>/<model>/<mapper>/
<generator>/<condition>/<stem>.png with a <stem>.json record each (prompt or conditioning, seed,
flagged, seconds), the scores of the pictures (tables/, report.html), config.toml.
The run's stage cache is shared (--cache to choose another): a rerun skips pictures
already made with the same options, and a killed run resumes.  Pictures the safety
checker flagged on every attempt are marked flagged.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="make a picture for every test image of a run (decode, run, compare, demo)",
        description=(
            "Read a run's configuration and make one picture per test image and encoder "
            "with one generator: Stable Diffusion from the retrieved label (sd15, "
            "sd-turbo, diffusers:<id or folder>), unCLIP / IP-Adapter from the predicted "
            "embedding itself, or, offline, the feature inversion of the predicted "
            "embedding (invert) or the nearest image of the run's image database "
            "(retrieve); then score them like the run does."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "--from", dest="run_dir", metavar="RUN",
        help="the output folder of `decode`, `run`, `compare` or `generate` (of a demo: "
        "OUT/results)",
    )  # fmt: skip
    p.add_argument("--generator", required=True, metavar="NAME", help="generator (see examples)")
    _options.add_output_options(p)
    p.add_argument(
        "--set", action="append", dest="overrides", metavar="KEY=VALUE",
        help="override one value of the run's configuration, e.g. --set "
        "'evaluation.metrics=[\"ssim\"]' (repeatable; TOML values)",
    )  # fmt: skip
    p.add_argument(
        "--encoder", "--model", action="append", dest="encoders", metavar="NAME",
        help="encoder of the run to generate for (repeatable; default: all of them)",
    )  # fmt: skip
    p.add_argument(
        "--condition", action="append", dest="conditions",
        choices=("predicted", "true", "random"),
        help="feed the generator the decoded embedding and label (predicted: the method), "
        "the true stimulus's (true: the ceiling) or a random training stimulus's (random: "
        "the floor); repeatable (default: predicted)",
    )  # fmt: skip
    p.add_argument(
        "--option", "-O", action="append", dest="options", metavar="KEY=VALUE", default=[],
        help="a generator option (repeatable), e.g. --option steps=30 --option "
        "prompt='a photo of a {name}'; --list-options shows them with defaults",
    )  # fmt: skip
    p.add_argument(
        "--list-options", action="store_true", help="print the generator's options and exit"
    )
    _options.add_generation_options(p, generators=False)
    g = p.add_argument_group("runtime")
    g.add_argument("--device", help="torch device: cpu, cuda, cuda:N or mps (default: the run's)")
    g.add_argument(
        "--batch-size", dest="generation_batch_size", type=_options.positive_int, metavar="N",
        help="images per generator call, at least the generator's own batch (invert: its "
        "batch_size option) (generation.batch_size; default: the run's)",
    )  # fmt: skip
    g.add_argument(
        "--seed", dest="generation_seed", type=_options.non_negative_int, metavar="S",
        help="seed of the pictures (generation.seed; each image's derives from it and the "
        "stimulus stem; default: the run's seed)",
    )  # fmt: skip
    _options.add_force_option(p)
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
    if entry.needs.inputs:
        from fmri2image.generation import PIPELINE_INPUTS

        for name in entry.needs.inputs:
            lines.append(f"  --option {name}=... is given by the run: {PIPELINE_INPUTS[name]}")
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


def generate_config(args: argparse.Namespace):
    """The run's resolved configuration with this command's generator and flags."""
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.config import load_config
    from fmri2image.pipeline.results import load_run

    run_ = load_run(args.run_dir)
    if run_.config is None:
        raise ConfigError(
            f"--from {args.run_dir}: its config.toml is not a configuration of this "
            "fmri2image version; rerun the command that made it."
        )
    config = run_.config
    if args.overrides:
        config = load_config(run_.root / "config.toml", args.overrides)
    gen = args.generator
    options = {**config.generation.options_for(gen), **parse_options(args.options, gen)}
    models = tuple(args.encoders) if args.encoders else config.models
    unknown = [m for m in models if m not in config.models]
    if unknown:
        raise ConfigError(
            f"--encoder {', '.join(unknown)} is not in the run {args.run_dir}; it has: "
            f"{', '.join(config.models)}."
        )
    cache = args.cache or (str(run_.cache) if run_.cache else None)
    config = config.replace(
        models=models,
        out=args.out,
        cache=cache,
        visualize=True,
        generation__generators=(gen,),
        # The other generators' tables stay: the one that makes the initial images
        # (--init lowlevel) must make them as the run did.
        generation__options={
            **{k: v for k, v in config.generation.options.items() if isinstance(v, dict)},
            **({gen: options} if options else {}),
        },
        generation__conditions=tuple(dict.fromkeys(args.conditions or ("predicted",))),
        generation__seed=args.generation_seed,
        generation__batch_size=args.generation_batch_size,
    )
    return _options.config_from_args(args, base=config)


def run(args: argparse.Namespace) -> int:
    from fmri2image.cli.run_cmd import print_result
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.experiment import run_experiment

    if args.list_options:
        print(_list_options(args.generator))
        return 0
    missing = [f for f, v in (("--from", args.run_dir), ("--out", args.out)) if not v]
    if missing:
        raise ConfigError(f"generate needs {' and '.join(missing)} (or --list-options).")
    result = run_experiment(
        generate_config(args), force=tuple(args.force or ()), progress=not args.quiet
    )
    print(f"\nGenerated with {args.generator} into {result.out_dir}:")
    print(result.format_pictures())
    print_result(result)
    return 0
