"""Entry point of the ``fmri2image`` console script."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from fmri2image import __version__
from fmri2image._malloc import tune_allocator
from fmri2image.errors import Fmri2ImageError

# One module per command group, in the order they appear in --help.
COMMAND_MODULES = (
    "fmri2image.cli.demo_cmd",
    "fmri2image.cli.demo_data_cmd",
    "fmri2image.cli.fixture_cmd",
    "fmri2image.cli.data_cmds",
    "fmri2image.cli.download_cmd",
    "fmri2image.cli.extract_cmd",
    "fmri2image.cli.decode_cmd",
    "fmri2image.cli.generate_cmd",
    "fmri2image.cli.evaluate_cmd",
    "fmri2image.cli.run_cmd",
    "fmri2image.cli.report_cmd",
    "fmri2image.cli.doctor_cmd",
    "fmri2image.cli.models_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fmri2image",
        description=(
            "Reconstruct seen images from fMRI (Generic Object Decoding dataset) and "
            "compare how the visual embedding model changes the result."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or info messages"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


@contextlib.contextmanager
def _warnings_as_log_lines() -> Iterator[None]:
    """Print Python warnings as one log line ("warning: ..."), not as a source dump."""
    log = logging.getLogger("fmri2image")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        log.warning("warning: %s", message)

    saved = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own messages at INFO; third-party libraries (faiss, ray, ...) only warn.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("fmri2image").setLevel(logging.WARNING if args.quiet else logging.INFO)
    if args.quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")
    tune_allocator()  # big activations reused, not page-faulted in again (fmri2image._malloc)
    try:
        with _warnings_as_log_lines():
            rc = args.func(args)
    except Fmri2ImageError as exc:
        if args.debug:
            raise
        print(f"fmri2image {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; completed work is kept and a rerun resumes", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fmri2image ... | head`: the reader left; not an error
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:
        message = environment_error(exc)
        if message is None or args.debug:
            raise
        print(f"fmri2image {args.command}: error: {message}", file=sys.stderr)
        return 2
    return int(rc or 0)


#: What the machine did wrong (not the program), and what the user can do about it.
_ENVIRONMENT_FIXES = {
    errno.ENOSPC: "the disk is full; free some space (or choose another output folder) and "
    "run the command again: finished work is kept and the rerun resumes",
    errno.EDQUOT: "the disk quota is exceeded; free some space (or choose another output "
    "folder) and run the command again: finished work is kept and the rerun resumes",
    errno.EROFS: "the file system is read-only; choose an output folder on a writable disk",
    errno.EACCES: "permission denied; check the permissions of the file and its folder, or "
    "choose another output folder",
    errno.EPERM: "the operation is not permitted; check the permissions of the file and its "
    "folder, or choose another output folder",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n) or use fewer --workers",
}


def environment_error(exc: OSError) -> str | None:
    """One paragraph for an OSError the environment caused (full disk, read-only, ...).

    ``None`` for other OSErrors: those are program errors and keep their traceback.
    """
    fix = _ENVIRONMENT_FIXES.get(exc.errno)
    if fix is None:
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}: {fix}. Run with --debug for the traceback."


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
