"""The demo's trial design, mirroring GOD's.

* ``DataType == 1``: every training image once, in ``images_per_category`` runs;
  run *r* shows one (random) image of every training category, shuffled.
* ``DataType == 2``: every test image once per run, ``n_test_repeats`` runs,
  shuffled within run (GOD: 35 runs' worth of repeats).
* ``DataType == 3``: imagery of every test category once per run,
  ``n_imagery_repeats`` runs, shuffled.

``Run`` numbers are unique over the file (training runs first, then test, then
imagery); ``Block`` is the 1-based trial position within the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Design", "make_design"]


@dataclass(frozen=True)
class Design:
    """Per-trial design, every array of shape (n_trials,), int64.

    Attributes
    ----------
    data_type : ndarray
        1 training, 2 test, 3 imagery.
    run : ndarray
        1-based run number, unique over the file.
    block : ndarray
        1-based trial position within the run.
    stim_row : ndarray
        Index into the stimulus list (for imagery: the category's test image).
    """

    data_type: np.ndarray
    run: np.ndarray
    block: np.ndarray
    stim_row: np.ndarray

    def __len__(self) -> int:
        return len(self.run)


def make_design(
    splits: Sequence[str],
    wnids: Sequence[str],
    images_per_category: int,
    n_test_repeats: int,
    n_imagery_repeats: int,
    rng: np.random.Generator,
) -> Design:
    """Draw the trial order.

    Parameters
    ----------
    splits : sequence of {"training", "test"}, length n_stimuli
        Split of each stimulus.
    wnids : sequence of str, length n_stimuli
        Category of each stimulus; every training category has
        ``images_per_category`` images, every test category one.
    images_per_category, n_test_repeats, n_imagery_repeats : int
    rng : numpy.random.Generator

    Returns
    -------
    Design
    """
    train_rows = [i for i, s in enumerate(splits) if s == "training"]
    test_rows = [i for i, s in enumerate(splits) if s == "test"]
    by_cat: dict[str, list[int]] = {}
    for i in train_rows:
        by_cat.setdefault(wnids[i], []).append(i)
    runs: list[tuple[int, list[int]]] = []
    assignment = {c: rng.permutation(rows) for c, rows in by_cat.items()}
    for r in range(images_per_category):
        runs.append((1, [int(assignment[c][r]) for c in by_cat]))
    runs += [(2, list(test_rows)) for _ in range(n_test_repeats)]
    runs += [(3, list(test_rows)) for _ in range(n_imagery_repeats)]
    dt: list[int] = []
    run: list[int] = []
    block: list[int] = []
    rows: list[int] = []
    for run_no, (data_type, members) in enumerate(runs, start=1):
        order = rng.permutation(np.asarray(members, dtype=np.int64))
        dt += [data_type] * len(order)
        run += [run_no] * len(order)
        block += list(range(1, len(order) + 1))
        rows += order.tolist()
    return Design(
        data_type=np.asarray(dt, dtype=np.int64),
        run=np.asarray(run, dtype=np.int64),
        block=np.asarray(block, dtype=np.int64),
        stim_row=np.asarray(rows, dtype=np.int64),
    )
