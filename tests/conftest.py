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
