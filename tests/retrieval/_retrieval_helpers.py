"""Helpers shared by the retrieval tests (planted data, brute-force reference)."""

from __future__ import annotations

import numpy as np


def clustered(n_classes: int, per_class: int, dim: int, *, noise: float, seed: int):
    """Vectors around ``n_classes`` random centres; labels ``n%08d`` of the class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    cls = np.repeat(np.arange(n_classes), per_class)
    x = centres[cls] + noise * rng.normal(size=(cls.size, dim))
    labels = np.array([f"n{c:08d}" for c in cls])
    return x.astype(np.float32), labels, centres


def brute_force_cosine(queries: np.ndarray, database: np.ndarray, k: int):
    """Reference k-NN: cosine similarity in float64, stable descending sort."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    x = database / np.linalg.norm(database, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ x.astype(np.float64).T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx
