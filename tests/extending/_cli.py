"""The command line as a user runs it, in this process."""

from __future__ import annotations


def run(*argv: str) -> int:
    """``fmri2image -q ARGV`` in this process (argparse's own errors as their exit code)."""
    from fmri2image.cli.main import main

    try:
        return main(["-q", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)
