"""Tiny planted data sets for the mapping tests (himalaya-style sizes)."""

from __future__ import annotations

import numpy as np
import pytest
from _mapping_data import planted


@pytest.fixture
def wide() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_samples < n_features, as GOD (kernel form)."""
    return planted(40, 120, 4, seed=1)


@pytest.fixture
def tall() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_samples > n_features (primal form)."""
    return planted(60, 15, 3, seed=2)
