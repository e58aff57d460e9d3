"""``fmri2image download``: fetch a dataset's public fMRI files, resumably: GOD and
Deeprecon from figshare, THINGS-fMRI from figshare+, NSD (MindEye2's distribution)
from the Hugging Face hub."""

from __future__ import annotations

import argparse

from fmri2image.cli import _options

__all__ = ["DEFAULTS", "register", "run"]

#: Equal to ``fmri2image.data.download``'s constants (a test checks it), written out
#: so that building the parser imports neither urllib nor the data layer.
DEFAULTS = {"article": 7387130, "api_url": "https://api.figshare.com/v2"}

_EPILOG = """\
examples:
  # subject 3, the SPM release (Subject3.h5), into god/
  fmri2image download god --subjects 3 --dest god/

  # all five subjects: first what would be fetched, with sizes (nothing is written)
  fmri2image download god --subjects 1 2 3 4 5 --dest god/ --dry-run

  # the fmriprep release: Subject3_ImageNetTraining.h5, _ImageNetTest.h5, _Imagery.h5
  fmri2image download god --subjects 3 --release fmriprep --dest god-fmriprep/

  # Deeprecon (fmriprep release, md5-checked), THINGS-fMRI's table release, NSD as
  # MindEye2 distributes it: what each would fetch
  fmri2image download deeprecon --subjects 1 --dest deeprecon/ --dry-run
  fmri2image download things --subjects 1 --dest things/ --dry-run
  fmri2image download nsd --subjects 1 --dest nsd/ --dry-run

An interrupted download resumes where it stopped: run the same command again.
Transfers in progress live in DEST/.partial/; a file gets its final name only once
its size and MD5 match the article's, and files already complete are skipped.  A
failed run keeps only what a rerun can resume (a DEST it created and left empty is
removed again); the next run resumes those parts and removes any other leftovers
from DEST/.partial/.  The file list is read from the figshare API at run time and
checked: only plain file names, real sizes and http(s) URLs are used.  The stimulus
images are not on figshare (ImageNet licence): request them from the dataset's
authors; the note printed at the end shows where `fmri2image decode` expects them.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download",
        help="fetch a dataset's public fMRI files (GOD, Deeprecon, THINGS, NSD; resumable)",
        description=(
            "Download the fMRI files of a dataset's subjects into a folder that "
            "`fmri2image decode --dataset NAME --data DIR` reads. god: GOD (Horikawa & "
            "Kamitani 2017) from figshare article 7387130, SubjectN.h5 (SPM release) or "
            "SubjectN_ImageNetTraining.h5, SubjectN_ImageNetTest.h5 and "
            "SubjectN_Imagery.h5 (fmriprep release). deeprecon: Shen et al. 2019 from "
            "figshare (fmriprep release, md5-checked; --release original for the "
            "*_original_VC.h5 files). things: THINGS-fMRI's table release from figshare+. "
            "nsd: MindEye2's distribution of NSD from the Hugging Face hub "
            "(pscotti/mindeyev2). Transfers resume after an interruption and are "
            "checked against the published sizes and MD5s."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "dataset", choices=("god", "deeprecon", "things", "nsd"),
        help="the data set: god (Generic Object Decoding), deeprecon, things (THINGS-fMRI) "
        "or nsd (as MindEye2 distributes it)",
    )  # fmt: skip
    p.add_argument(
        "--subjects", nargs="+", required=True, metavar="N",
        help="subject numbers (GOD 1-5, Deeprecon and THINGS 1-3, NSD 1-8), e.g. "
        "--subjects 3 or --subjects 1 2 3 4 5",
    )  # fmt: skip
    p.add_argument(
        "--dest", required=True, metavar="DIR",
        help="folder to download into (created; pass it to decode as --data)",
    )  # fmt: skip
    p.add_argument(
        "--release", choices=("spm", "fmriprep", "original"),
        help="GOD: spm (SubjectN.h5, the default) or fmriprep (SubjectN_ImageNetTraining.h5, "
        "SubjectN_ImageNetTest.h5, SubjectN_Imagery.h5; other voxel counts); Deeprecon: "
        "fmriprep (the default) or original",
    )  # fmt: skip
    p.add_argument(
        "--article", type=_options.positive_int, default=DEFAULTS["article"], metavar="ID",
        help="figshare article that holds GOD's files",
    )  # fmt: skip
    p.add_argument(
        "--api-url", default=DEFAULTS["api_url"], metavar="URL",
        help="base of the figshare API (a mirror, or a test server)",
    )  # fmt: skip
    p.add_argument(
        "--dry-run", action="store_true",
        help="list the files that would be fetched, with their sizes; fetch nothing",
    )  # fmt: skip
    p.add_argument(
        "--timeout", type=_seconds, default=60.0, metavar="SECONDS",
        help="give up on a connection that stays silent this long",
    )  # fmt: skip
    p.add_argument(
        "--retries", type=_options.non_negative_int, default=3, metavar="N",
        help="resume a transfer that broke off (dropped connection, timeout, HTTP 5xx) up "
        "to N times before stopping",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fmri2image.data.download import download_dataset, download_god, stimulus_note

    if args.dataset != "god":
        result = download_dataset(
            args.dataset, args.subjects, args.dest, release=args.release,
            api_url=args.api_url, dry_run=args.dry_run, progress=not args.quiet,
            timeout=args.timeout, retries=args.retries,
        )  # fmt: skip
        print(result.format())
        from fmri2image.data.dataset import dataset_class

        where = dataset_class(args.dataset).where_to_get
        if where:
            print()
            print(where)
        return 0
    if args.release == "original":
        from fmri2image.errors import ConfigError

        raise ConfigError("--release original is Deeprecon's; GOD has spm and fmriprep.")
    result = download_god(
        args.subjects,
        args.dest,
        release=args.release or "spm",
        article=args.article,
        api_url=args.api_url,
        dry_run=args.dry_run,
        progress=not args.quiet,
        timeout=args.timeout,
        retries=args.retries,
    )
    print(result.format())
    print()
    print(stimulus_note(args.dest, result.files[0].name if result.files else "Subject3.h5"))
    return 0
