"""``fmri2image doctor``: what is installed, what is missing, and how to fix each problem."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options
from fmri2image.cli._options import HelpFormatter

__all__ = ["register", "run"]

_EPILOG = """\
checks (JSON keys of "sections"):
  system           Python, platform, fmri2image, torch (CUDA devices, MPS), torchvision
  packages         core dependencies and each optional extra (pip install 'fmri2image[X]')
  plugins          installed plugin packages: each one that fails to load, with the fix
  encoders         each --model: weights available offline now, or how to get them
  mappers          each mapping model (mapping.mappers) and the packages it needs
  generators       each --generator: offline or downloads weights, and the extra it needs
  metric_networks  each metric network of `evaluate`: standard weights file present or not
  metrics          the metrics that need packages beyond the core (one line for the rest)
  datasets         each --dataset and the packages it needs
  wordnet          WordNet 3.0 files (Wu-Palmer similarity of retrieved labels)
  god              with --data (or --god): the --dataset folder's subjects and their fMRI
                   files (GOD: SPM / fmriprep release), training and test stimuli, images
                   present; an unreadable file fails with the chmod that fixes it (the
                   key is "god" whatever the dataset)
  disk             free space at the download caches (or --cache) and the current folder

What each component needs (optional extra, packages, weights) is what its registry
entry declares, so components of plugins are checked like the built-in ones.

It reads only local files (package metadata, the Hugging Face hub cache, the torch hub
checkpoint folder, WordNet, the data folder): no network access, no weights loaded.
Optional packages count as installed when their metadata and module are found; they
are not imported (installed plugins are, to report those that fail to load).

exit status:
  0  no check failed (warnings, such as less than 10 GB free, do not count)
  1  at least one check failed; each failed check is printed with its fix
  2  usage error

examples:
  fmri2image doctor
  fmri2image doctor --data demo-output/data --json
  fmri2image doctor --dataset god --god demo-output/data
  fmri2image doctor --cache demo-output/results/cache
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check what is installed and what is missing (each problem with its fix)",
        description=(
            "Check this machine for everything fmri2image uses: Python, torch and its\n"
            "devices, the optional extras, the encoders' and metric networks' weights,\n"
            "the generators, mapping models, metrics, datasets and installed plugins,\n"
            "WordNet, a data folder and free disk space. Every failed check says how to\n"
            "fix it."
        ),
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one strict JSON object: {"sections": {KEY: [{"name", "ok", "detail", '
        '"fix", "warning"}, ...]}, "problems": N, "warnings": N}',
    )
    p.add_argument(
        "--data",
        "--god",
        dest="data",
        metavar="DIR",
        help="a data folder of --dataset to check: subjects found and their fMRI files (GOD: "
        "SPM / fmriprep release), the training and test stimuli and how many of their "
        "images are present, each file readable by this user (default: not checked); "
        "--god is an alias",
    )
    p.add_argument(
        "--dataset",
        metavar="NAME",
        default="god",
        help="the registered dataset --data holds (default: god; the datasets section of "
        "the report lists them)",
    )
    _options.add_dataset_option_flag(p)
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="folder whose free space to check (default: the Hugging Face hub cache, "
        "HF_HOME/hub, and the torch checkpoint folder, TORCH_HOME/hub/checkpoints: the two "
        "caches fmri2image downloads weights to)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.doctor import diagnose

    report = diagnose(
        data=args.data, dataset=args.dataset, cache=args.cache,
        options=_options.dataset_options(args.dataset_options),
    )  # fmt: skip
    print(report.to_json() if args.json else report.format())
    return report.exit_status
