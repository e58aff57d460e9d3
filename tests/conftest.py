"""Shared test configuration.

Tests never touch the network: the hub is forced offline for every test session.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
# Keep BLAS from oversubscribing the 2-core CI machine when torch is also busy.
os.environ.setdefault("OMP_NUM_THREADS", "2")


import pytest


@pytest.fixture(scope="session")
def default_demo(tmp_path_factory):
    """The dataset ``fmri2image demo`` writes (real photos, EfficientNet-Lite0), once per
    session, as ``<folder>/data`` so that ``fmri2image demo --out <folder>`` reuses it."""
    from fmri2image.demo import write_demo_dataset

    out = tmp_path_factory.mktemp("demo-default") / "data"
    return write_demo_dataset(out, progress=False)


@pytest.fixture(scope="session")
def demo_run(request):
    """``fmri2image demo`` run once per session on :func:`default_demo`: its folder holds
    ``data/`` and ``results/`` (what ``demo-output`` holds after ``make demo``)."""
    from fmri2image.cli.main import main

    ready = os.environ.get("FMRI2IMAGE_TEST_DEMO_OUTPUT")  # a demo folder made earlier
    if ready:  # (to iterate on the docs' examples without the 4-minute demo each time;
        return Path(ready)  # the examples write into it, as into the session's)
    default_demo = request.getfixturevalue("default_demo")
    out = default_demo.root.parent  # the session's default dataset is reused as out/data
    assert main(["-q", "demo", "--out", str(out)]) == 0
    return out
