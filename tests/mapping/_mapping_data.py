"""Planted data generator shared by the mapping tests."""

from __future__ import annotations

import numpy as np


def planted(
    n_samples: int,
    n_features: int,
    n_targets: int,
    *,
    n_informative: int = 5,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Y = X[:, :k] @ B + noise`` with voxels of unequal means and scales.

    Returns ``X`` (n_samples, n_features), ``Y`` (n_samples, n_targets) and ``B``.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    B = rng.standard_normal((n_informative, n_targets))
    Y = X[:, :n_informative] @ B + noise * rng.standard_normal((n_samples, n_targets))
    # Unequal voxel offsets/scales and non-zero target means make standardization matter.
    X = X * rng.uniform(0.5, 3.0, n_features) + rng.uniform(-2, 2, n_features)
    Y = Y * rng.uniform(0.5, 2.0, n_targets) + rng.uniform(0, 3, n_targets)
    return X, Y, B
