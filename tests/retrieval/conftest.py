"""Small planted databases for retrieval tests."""

from __future__ import annotations

import numpy as np
import pytest
from _retrieval_helpers import clustered


@pytest.fixture
def planted():
    x, labels, centres = clustered(20, 30, 32, noise=0.6, seed=0)
    rng = np.random.default_rng(1)
    queries = centres[rng.integers(0, 20, size=15)] + 0.6 * rng.normal(size=(15, 32))
    return x, labels, queries.astype(np.float32)
