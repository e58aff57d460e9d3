"""Voxel normalization and the train / validation / test / imagery splits of GOD.

Normalization modes (``make_splits(normalization=...)``):

``"run"`` (default, the official GOD preprocessing)
    Every run is z-scored with its own mean and standard deviation over the
    run's samples, per voxel.  This removes slow drifts and session offsets.  It
    uses no label and no statistic across runs, but note that test runs are
    normalized with statistics of their own (unlabelled) samples.
``"train"``
    Per-voxel mean and standard deviation are computed from the *training*
    samples only (after the validation categories are removed) and applied to
    every split.  No statistic touches validation, test or imagery data.
``"none"``
    Raw values.

Test samples are averaged per image over all repetitions (35 in GOD) *after*
normalization, the field's standard protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Literal

import numpy as np

from fmri2image.data.ids import stimulus_id_keys
from fmri2image.errors import ConfigError, DataFormatError

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.data.god import GODSubject

__all__ = ["GODSplits", "NormalizationStats", "make_splits", "zscore_by_run"]

Normalization = Literal["run", "train", "none"]


def _safe_std(std: np.ndarray) -> np.ndarray:
    # A constant voxel carries no information; dividing by 1 keeps it at 0
    # instead of producing NaN.
    return np.where(std > 0, std, 1.0)


def zscore_by_run(X: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Z-score each voxel within each run.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_voxels)
        Voxel responses.
    runs : ndarray of shape (n_samples,)
        Run label of each sample (any hashable numeric labels; use
        :attr:`GODSubject.run_groups` for GOD, whose run numbers restart per data
        type).

    Returns
    -------
    ndarray of shape (n_samples, n_voxels)
        Same dtype as ``X`` if floating, else float64.  For each run ``r`` and voxel
        ``v``: ``(X[r, v] - mean_r(X[:, v])) / std_r(X[:, v])`` with the population
        standard deviation (``ddof=0``); voxels constant within a run become 0.
    """
    X = np.asarray(X)
    runs = np.asarray(runs)
    if X.ndim != 2 or runs.shape != (X.shape[0],):
        raise ConfigError(
            f"zscore_by_run needs X of shape (n_samples, n_voxels) and runs of shape "
            f"(n_samples,); got {X.shape} and {runs.shape}."
        )
    dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.float64
    out = np.empty(X.shape, dtype=dtype)
    for r in np.unique(runs):
        sel = runs == r
        block = X[sel].astype(np.float64)
        mean = block.mean(axis=0)
        std = _safe_std(block.std(axis=0))
        out[sel] = (block - mean) / std
    return out


@dataclass(frozen=True, eq=False)
class NormalizationStats:
    """Statistics used to normalize the voxels.

    Attributes
    ----------
    mode : {"run", "train", "none"}
    mean : ndarray of shape (n_voxels,) or None
        Training mean (``"train"`` mode only).
    std : ndarray of shape (n_voxels,) or None
        Training standard deviation, constant voxels set to 1 (``"train"`` only).
    """

    mode: str
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the ``"train"`` statistics to new samples, shape (n, n_voxels)."""
        if self.mean is None or self.std is None:
            raise ConfigError(
                f"NormalizationStats(mode={self.mode!r}) holds no global statistics; only "
                "'train' mode can normalize new samples."
            )
        return ((np.asarray(X, dtype=np.float64) - self.mean) / self.std).astype(np.float32)


@dataclass(frozen=True, eq=False)
class GODSplits:
    """Train / validation / test / imagery arrays of one subject, ready to fit.

    All ``X_*`` arrays are float32 with ``n_voxels`` columns; all arrays are
    read-only.

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels)
    train_ids : ndarray of shape (n_train,), float64
    train_wnids : ndarray of shape (n_train,), object
    train_runs : ndarray of shape (n_train,), int64
        Run group (see :attr:`GODSubject.run_groups`); use it for grouped CV.
    X_val : ndarray of shape (n_val, n_voxels)
        Training samples of held-out *categories* (empty if none requested);
        no category is in both train and val.
    val_ids, val_wnids, val_runs : ndarray of shape (n_val,)
    X_test : ndarray of shape (n_test_images, n_voxels)
        Mean over the repetitions of each test image.
    test_ids : ndarray of shape (n_test_images,), float64
        Test images in increasing stimulus-id order.
    test_wnids : ndarray of shape (n_test_images,), object
    test_n_repeats : ndarray of shape (n_test_images,), int64
    X_test_trials : ndarray of shape (n_test_trials, n_voxels)
        The single test trials, to average predictions instead of inputs.
    test_trial_index : ndarray of shape (n_test_trials,), int64
        Row of ``X_test`` / ``test_ids`` each trial belongs to.
    X_imagery : ndarray of shape (n_imagery, n_voxels)
    imagery_categories : ndarray of shape (n_imagery,), int64
        Imagined category (WordNet offset, the integer part of the stimulus id).
    imagery_wnids : ndarray of shape (n_imagery,), object
    imagery_test_index : ndarray of shape (n_imagery,), int64
        Row in ``test_ids`` of the test image of the imagined category, -1 if the
        category has no (or more than one) test image.
    normalization : NormalizationStats
    subject : int
    roi : str
    seed : int
    """

    X_train: np.ndarray
    train_ids: np.ndarray
    train_wnids: np.ndarray
    train_runs: np.ndarray
    X_val: np.ndarray
    val_ids: np.ndarray
    val_wnids: np.ndarray
    val_runs: np.ndarray
    X_test: np.ndarray
    test_ids: np.ndarray
    test_wnids: np.ndarray
    test_n_repeats: np.ndarray
    X_test_trials: np.ndarray
    test_trial_index: np.ndarray
    X_imagery: np.ndarray
    imagery_categories: np.ndarray
    imagery_wnids: np.ndarray
    imagery_test_index: np.ndarray
    normalization: NormalizationStats
    subject: int
    roi: str
    seed: int

    def __post_init__(self) -> None:
        for f in fields(self):
            val = getattr(self, f.name)
            if isinstance(val, np.ndarray):
                val.setflags(write=False)
        for arr in (self.normalization.mean, self.normalization.std):
            if arr is not None:
                arr.setflags(write=False)

    def __repr__(self) -> str:
        return (
            f"GODSplits(subject={self.subject}, roi={self.roi!r}, n_voxels={self.n_voxels}, "
            f"n_train={len(self.train_ids)}, n_val={len(self.val_ids)}, "
            f"n_test_images={len(self.test_ids)}, n_test_trials={len(self.test_trial_index)}, "
            f"n_imagery={len(self.imagery_categories)}, normalization={self.normalization.mode!r})"
        )

    @property
    def n_voxels(self) -> int:
        return int(self.X_train.shape[1])


def _n_val_categories(n_categories: int, n_val_categories: int, val_fraction: float | None) -> int:
    if val_fraction is not None:
        if n_val_categories:
            raise ConfigError("Give n_val_categories or val_fraction, not both.")
        if not 0.0 <= val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        n = round(val_fraction * n_categories)
        n = max(n, 1) if val_fraction > 0 else 0
    else:
        n = int(n_val_categories)
    if n < 0 or n >= n_categories:
        raise ConfigError(
            f"Cannot hold out {n} of {n_categories} training categories for validation; "
            f"choose between 0 and {n_categories - 1}."
        )
    return n


def make_splits(
    subject: GODSubject,
    normalization: Normalization = "run",
    n_val_categories: int = 0,
    val_fraction: float | None = None,
    seed: int = 0,
) -> GODSplits:
    """Split a GOD subject into train / validation / test / imagery arrays.

    Parameters
    ----------
    subject : GODSubject
        Loaded subject (:func:`fmri2image.data.load_god_subject`).
    normalization : {"run", "train", "none"}, default "run"
        See the module docstring.  ``"train"`` computes its statistics on the
        final training samples only (validation categories excluded).
    n_val_categories : int, default 0
        Number of training categories held out, with all their samples, as a
        validation set.
    val_fraction : float, optional
        Alternative to ``n_val_categories``: the fraction of categories held out.
    seed : int, default 0
        Seed of the validation-category draw (``numpy.random.default_rng``).

    Returns
    -------
    GODSplits

    Raises
    ------
    DataFormatError
        No training or no test samples.
    ConfigError
        Bad parameters.
    """
    if normalization not in ("run", "train", "none"):
        raise ConfigError(f"normalization must be 'run', 'train' or 'none', got {normalization!r}.")
    dt = subject.data_types
    is_train, is_test, is_imag = dt == 1, dt == 2, dt == 3
    for name, m in (("training (DataType 1)", is_train), ("test (DataType 2)", is_test)):
        if not m.any():
            raise DataFormatError(
                f"Subject {subject.subject} has no {name} samples in "
                f"{', '.join(str(s) for s in subject.sources)}. make_splits needs both "
                "training and test samples; check that all split-release files are present."
            )
    keys = stimulus_id_keys(subject.stimulus_ids)
    cats = keys // 1_000_000
    run_groups = subject.run_groups

    # Validation: whole categories, drawn with an explicit seed.
    train_cats = np.unique(cats[is_train])
    n_val = _n_val_categories(train_cats.size, n_val_categories, val_fraction)
    rng = np.random.default_rng(seed)
    val_cats = np.sort(rng.permutation(train_cats)[:n_val])
    is_val = is_train & np.isin(cats, val_cats)
    is_fit = is_train & ~is_val

    X = subject.voxels
    if normalization == "run":
        Xn = zscore_by_run(X, run_groups).astype(np.float32, copy=False)
        stats = NormalizationStats("run")
    elif normalization == "train":
        fit = X[is_fit].astype(np.float64)
        stats = NormalizationStats("train", fit.mean(axis=0), _safe_std(fit.std(axis=0)))
        Xn = stats.transform(X)
    else:
        Xn = np.asarray(X, dtype=np.float32)
        stats = NormalizationStats("none")

    # Test: average repetitions per image; images in increasing id order.
    test_keys, trial_index, n_rep = np.unique(
        keys[is_test], return_inverse=True, return_counts=True
    )
    trial_index = trial_index.reshape(-1)
    X_trials = Xn[is_test]
    sums = np.zeros((test_keys.size, Xn.shape[1]), dtype=np.float64)
    np.add.at(sums, trial_index, X_trials)
    X_test = (sums / n_rep[:, None]).astype(np.float32)
    test_ids = test_keys / 1e6
    test_cats = test_keys // 1_000_000

    # Imagery: the imagined category is the integer part of the id.
    imag_cats = cats[is_imag]
    uniq_tc, tc_counts = np.unique(test_cats, return_counts=True)
    imag_index = np.full(imag_cats.size, -1, dtype=np.int64)
    for i, c in enumerate(imag_cats):
        j = np.searchsorted(uniq_tc, c)
        if j < uniq_tc.size and uniq_tc[j] == c and tc_counts[j] == 1:
            imag_index[i] = int(np.flatnonzero(test_cats == c)[0])

    wn = subject.wnids
    return GODSplits(
        X_train=np.ascontiguousarray(Xn[is_fit]),
        train_ids=subject.stimulus_ids[is_fit].copy(),
        train_wnids=wn[is_fit].copy(),
        train_runs=run_groups[is_fit],
        X_val=np.ascontiguousarray(Xn[is_val]),
        val_ids=subject.stimulus_ids[is_val].copy(),
        val_wnids=wn[is_val].copy(),
        val_runs=run_groups[is_val],
        X_test=X_test,
        test_ids=test_ids,
        test_wnids=np.array([f"n{c:08d}" for c in test_cats.tolist()], dtype=object),
        test_n_repeats=n_rep.astype(np.int64),
        X_test_trials=np.ascontiguousarray(X_trials),
        test_trial_index=trial_index.astype(np.int64),
        X_imagery=np.ascontiguousarray(Xn[is_imag]),
        imagery_categories=imag_cats.astype(np.int64),
        imagery_wnids=wn[is_imag].copy(),
        imagery_test_index=imag_index,
        normalization=stats,
        subject=subject.subject,
        roi=subject.roi,
        seed=seed,
    )
