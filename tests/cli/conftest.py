from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from _planted import write_planted_god


@pytest.fixture(scope="session")
def small_god(tmp_path_factory):
    """A small GOD-layout folder (random voxels; the CLI error tests never fit)."""
    root = tmp_path_factory.mktemp("god")
    write_planted_god(root, n_train_categories=6, n_test_categories=3, n_voxels=20, planted=False)
    return root
