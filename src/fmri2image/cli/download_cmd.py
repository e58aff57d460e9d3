"""``fmri2image download``: fetch the public GOD fMRI files from figshare, resumably."""

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
        help="fetch the public GOD fMRI files from figshare (resumable, checksummed)",
        description=(
            "Download the fMRI files of GOD subjects (Horikawa & Kamitani 2017) from "
            "figshare article 7387130 into a folder that `fmri2image decode --god` reads: "
            "SubjectN.h5 (SPM release) or SubjectN_ImageNetTraining.h5, "
            "SubjectN_ImageNetTest.h5 and SubjectN_Imagery.h5 (fmriprep release). "
            "Transfers resume after an interruption and are checked against the "
            "article's sizes and MD5s."
        ),
        epilog=_EPILOG,
        formatter_class=_options.HelpFormatter,
    )
    p.add_argument(
        "dataset", choices=("god",),
        help="the data set: god (Generic Object Decoding, figshare article 7387130)",
    )  # fmt: skip
    p.add_argument(
        "--subjects", nargs="+", required=True, metavar="N",
        help="subject numbers (1-5), e.g. --subjects 3 or --subjects 1 2 3 4 5",
    )  # fmt: skip
    p.add_argument(
        "--dest", required=True, metavar="DIR",
        help="folder to download into (created; pass it to decode as --god)",
    )  # fmt: skip
    p.add_argument(
        "--release", choices=("spm", "fmriprep"), default="spm",
        help="spm: SubjectN.h5; fmriprep: SubjectN_ImageNetTraining.h5, "
        "SubjectN_ImageNetTest.h5, SubjectN_Imagery.h5 (other voxel counts)",
    )  # fmt: skip
    p.add_argument(
        "--article", type=_options.positive_int, default=DEFAULTS["article"], metavar="ID",
        help="figshare article that holds the files",
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
    from fmri2image.data.download import download_god, stimulus_note

    result = download_god(
        args.subjects,
        args.dest,
        release=args.release,
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
