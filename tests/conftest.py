"""Shared test configuration.

Tests never touch the network: the hub is forced offline for every test session.
"""

from __future__ import annotations

import os

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
