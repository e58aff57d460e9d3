"""What the dataset tests share: a tiny encoder (``pool48``, the planted data's
pooling 'network') and the command line run as a user runs it (``cli``).

Each dataset module (Deeprecon, THINGS-fMRI, NSD) writes fixtures in its exact release
format (``write_<name>_fixture``); these tests read them through the dataset seam and
through ``fmri2image`` commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pipeline"))  # _planted: PoolEncoder, GOD-layout data


@pytest.fixture
def pool48():
    """The pooling 'network' registered as an encoder named pool48."""
    from _planted import PoolEncoder

    from fmri2image.features import ENCODERS, register_encoder

    register_encoder("pool48", lambda **kw: PoolEncoder(), overwrite=True)
    yield "pool48"
    ENCODERS.unregister("pool48")


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit status, stdout, stderr)`` of ``fmri2image -q ARGV`` run in
    this process (argparse's own errors as their exit status)."""
    from fmri2image.cli.main import main

    def run(*argv: object) -> tuple[int, str, str]:
        try:
            rc = main(["-q", *map(str, argv)])
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = capsys.readouterr()
        return rc, out, err

    return run
