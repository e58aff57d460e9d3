"""``fmri2image make-fixture``: a small folder in a dataset's exact release format.

A user without the real files (or before downloading gigabytes) can see what a
release looks like, try ``data-info`` / ``doctor`` / ``run --dataset`` on it, and
check the loaders: the pictures are coloured blobs and the simulated brain reads their
coarse colour layout (``--noise``: reads nothing).  That layout is what a pixel-pooling
encoder sees; a deep encoder such as the EfficientNet-Lites barely does, so a fixture
run with one exercises the loaders and the pipeline, not the decoding (the demo data is
made for that).  Heavy imports happen in the handler.
"""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

__all__ = ["FORMATS", "register", "run"]

#: Dataset -> (writer, its releases: the first is the default).
FORMATS = {
    "deeprecon": ("fmri2image.data.deeprecon:write_deeprecon_fixture", ("original", "fmriprep")),
    "things": ("fmri2image.data.things:write_things_fixture", ("table", "bdata")),
    "nsd": ("fmri2image.data.nsd:write_nsd_fixture", ()),
}

_EPILOG = """\
examples:
  fmri2image make-fixture deeprecon --out deeprecon-fixture
  fmri2image make-fixture things --release bdata --out things-bdata-fixture
  fmri2image make-fixture nsd --subjects 1 2 --out nsd-two-subjects
  fmri2image data-info --dataset nsd --data nsd-two-subjects --subject 2 --option sessions=2

The files have the release's names, keys, dtypes and layout (docs/datasets.md), with
few voxels, few images and few repetitions; the BData files are written by bdpy. An
NSD fixture holds 2 sessions per subject (the release 30-40): read it with the dataset
option sessions = 2 (data-info --option sessions=2; run --set
'data.options={ sessions = 2 }').
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-fixture",
        help="write a small folder in a dataset's release format (Deeprecon, THINGS, NSD)",
        description=(
            "Write a small, simulated folder in the exact release format of a dataset: "
            "deeprecon (BData .h5, original or fmriprep release, and the images), things "
            "(THINGS-fMRI's table release or its BData conversion, and images/<concept>/), "
            "nsd (MindEye2's hdf5 / npy / webdataset tars). The simulated brain reads the "
            "pictures' coarse colour layout (4 x 4 mean colours; --noise: nothing): it "
            "exercises the loaders and the pipeline. Deep encoders barely see that layout, "
            "so for decoding results use the demo data (fmri2image demo)."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument("dataset", choices=tuple(FORMATS), help="the release format")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created)")
    p.add_argument(
        "--subjects", nargs="+", type=_options.positive_int, default=[1], metavar="N",
        help="subjects to write (default: 1)",
    )  # fmt: skip
    p.add_argument(
        "--release", metavar="NAME",
        help="deeprecon: original (default) or fmriprep; things: table (default) or bdata",
    )  # fmt: skip
    p.add_argument("--noise", action="store_true", help="voxels that read nothing (chance)")
    p.add_argument("--seed", type=_options.non_negative_int, default=0, help="(default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fmri2image.data.fixtures import noise_response, planted_response
    from fmri2image.errors import ConfigError
    from fmri2image.registry import import_target

    target, releases = FORMATS[args.dataset]
    kwargs = {}
    if args.release is not None:
        if args.release not in releases:
            raise ConfigError(
                f"--release {args.release!r}: {args.dataset} fixtures come in "
                f"{', '.join(releases) or 'one release'}."
            )
        kwargs["release"] = args.release
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; pass a new folder.")
    n_voxels = 120
    respond = noise_response(n_voxels) if args.noise else planted_response(n_voxels, seed=args.seed)
    write = import_target(target)
    write(out, subjects=tuple(args.subjects), respond=respond, n_voxels=n_voxels,
          seed=args.seed, **kwargs)  # fmt: skip
    print(f"{args.dataset} fixture ({'noise' if args.noise else 'planted signal'}) in {out}")
    # An NSD fixture holds 2 sessions of the release's 30-40: say so to the reader.
    option = " --option sessions=2" if args.dataset == "nsd" else ""
    setting = " --set 'data.options={ sessions = 2 }'" if args.dataset == "nsd" else ""
    print(f"  try: fmri2image data-info --dataset {args.dataset} --data {out} --subject "
          f"{args.subjects[0]}{option}")  # fmt: skip
    print(
        f"       fmri2image decode --dataset {args.dataset} --data {out}{setting} "
        "--model effnet-lite0 --database prototypes --out DIR"
    )
    return 0
