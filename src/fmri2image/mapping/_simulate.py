r"""Planted-signal data with the design of the GOD perception experiment.

Used by ``bench/bench_cv.py`` (at GOD's size) and by the mapping tests (small), so
that the cross-validation scheme is chosen and checked on the same generator.

Design (Horikawa & Kamitani 2017; FIELD.md §1)
----------------------------------------------
``n_train_categories × images_per_category`` training images, each seen once, in
``images_per_category`` runs: run *r* shows the *r*-th image of every category,
in shuffled order, and the training rows are in that (temporal) order, as in a
GOD file.  Test images are either one new image of each of ``n_test_categories``
*other* categories (``test_from_training=False``, as GOD) or new images of
``n_test_categories`` distinct *training* categories (``True``); each test
pattern is the mean of ``n_test_repeats`` trials, so its noise is lower.

Embeddings (targets)
--------------------
A latent vector per image, :math:`z_i = \sqrt{b}\, m_{c(i)} + \sqrt{1-b}\, e_i`,
with category mean :math:`m_c` and within-category part :math:`e_i`, both
Gaussian with covariance :math:`Q\,\mathrm{diag}(\lambda)\,Q^\top`, a random
orthogonal :math:`Q` and a decaying spectrum :math:`\lambda_k \propto
k^{-\mathrm{decay}}` (``b`` = ``between_share``, the share of variance explained
by category).  The embedding is :math:`y_i = \mathrm{softplus}(z_i / \sigma)`
(:math:`\sigma` the overall latent scale), non-negative like pooled CNN
features.

fMRI (inputs)
-------------
Each voxel reads a random rank-``rank`` projection of the centred embedding,
:math:`u_v(i) = b_v^\top C^\top (y_i - \bar y)` (entries of :math:`C` and
:math:`b_v` standard normal), standardized over the training images.  A trial
is :math:`x_{tv} = u_v(i) + \epsilon_{tv}` with noise of variance
``1 / snr`` per voxel, of which the share ``shared_noise`` comes from 10 common
factors (global fluctuations) and the rest is independent; ``drift`` adds a
per-run offset :math:`d_{rv} \sim \mathcal N(0, \mathrm{drift}^2)` to every trial of
run *r*.  Voxels get random baselines and gains (so standardization matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmri2image.errors import ConfigError

__all__ = ["PlantedGOD", "simulate_god_like"]


@dataclass(frozen=True)
class PlantedGOD:
    """Planted GOD-like data (see the module docstring).

    Attributes
    ----------
    X_train : ndarray of shape (n_train, n_voxels), float32
        Single trials in run order.
    Y_train : ndarray of shape (n_train, n_dims), float32
    groups : ndarray of shape (n_train,), int64
        Category of each training sample.
    runs : ndarray of shape (n_train,), int64
        Run of each training sample (0-based).
    X_test : ndarray of shape (n_test, n_voxels), float32
        Mean of ``n_test_repeats`` trials per test image.
    Y_test : ndarray of shape (n_test, n_dims), float32
    test_groups : ndarray of shape (n_test,), int64
        Category of each test image (training categories when
        ``test_from_training``, else ``n_train_categories + k``).
    params : dict
        The generator's arguments.
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    groups: np.ndarray
    runs: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    test_groups: np.ndarray
    params: dict


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)


def simulate_god_like(
    *,
    n_train_categories: int = 150,
    images_per_category: int = 8,
    n_test_categories: int = 50,
    test_from_training: bool = False,
    n_test_repeats: int = 35,
    n_dims: int = 1280,
    n_voxels: int = 4500,
    rank: int = 64,
    between_share: float = 0.5,
    decay: float = 1.0,
    mixed_dims: bool = True,
    snr: float = 0.005,
    shared_noise: float = 0.3,
    drift: float = 0.0,
    seed: int = 0,
) -> PlantedGOD:
    """Draw planted GOD-like training and test data.

    Parameters
    ----------
    n_train_categories, images_per_category : int
        Training design (GOD: 150 × 8).
    n_test_categories : int
        Test images, one per category (GOD: 50).
    test_from_training : bool
        Draw the test images from training categories (new images of
        ``n_test_categories`` distinct training categories) instead of new ones.
    n_test_repeats : int
        Trials averaged into each test pattern (GOD: 35).
    n_dims : int
        Embedding dimensions (EfficientNet-Lite: 1280).
    n_voxels : int
        Voxels (GOD ROI_VC: about 4500).
    rank : int
        Dimension of the embedding subspace the voxels read.
    between_share : float
        Share of embedding variance explained by category, in [0, 1].
    decay : float
        Exponent of the embedding covariance spectrum ``k ** -decay``.
    mixed_dims : bool
        True: every dimension mixes all latent axes (random orthogonal ``Q``), so
        all dimensions are about equally predictable.  False (``Q = I``): dimension
        ``k`` is the ``k``-th latent axis, with variance ``k ** -decay``, so
        predictability falls along the dimensions (targets of very unequal SNR).
    snr : float
        Single-trial signal-to-noise variance ratio per voxel.
    shared_noise : float
        Share of the noise variance from 10 factors common to all voxels.
    drift : float
        Standard deviation of per-run voxel offsets, in signal units.
    seed : int
        Seed of every draw.

    Returns
    -------
    PlantedGOD
    """
    params = dict(locals())
    rng = np.random.default_rng(seed)
    n_cat, n_img = n_train_categories, images_per_category
    if test_from_training and n_test_categories > n_cat:
        raise ConfigError(
            f"test_from_training draws each test image from a distinct training category, so "
            f"n_test_categories ({n_test_categories}) must not exceed n_train_categories ({n_cat})."
        )

    # Training rows in run order: run r shows image r of every category, shuffled.
    order = np.concatenate([rng.permutation(n_cat) for _ in range(n_img)])
    runs = np.repeat(np.arange(n_img), n_cat)
    test_cats = (
        np.sort(rng.choice(n_cat, n_test_categories, replace=False))
        if test_from_training
        else n_cat + np.arange(n_test_categories)
    )
    n_all_cats = n_cat + (0 if test_from_training else n_test_categories)

    # Latent embedding: category means + within-category parts, decaying spectrum.
    if mixed_dims:
        Q, _ = np.linalg.qr(rng.standard_normal((n_dims, n_dims)))
    else:
        Q = np.eye(n_dims)
    mix = np.sqrt(np.arange(1, n_dims + 1, dtype=np.float64) ** -decay)[:, None] * Q.T

    def latent(n: int) -> np.ndarray:
        return rng.standard_normal((n, n_dims)) @ mix

    means = latent(n_all_cats)
    cats = np.concatenate([order, test_cats])
    Z = np.sqrt(between_share) * means[cats] + np.sqrt(1 - between_share) * latent(cats.size)
    Z /= np.sqrt(np.mean(np.square(mix).sum(axis=0)))  # unit latent variance on average
    Y = _softplus(Z)
    n_train = order.size
    Y_train, Y_test = Y[:n_train], Y[n_train:]

    # Voxels read a low-rank projection of the centred embedding.
    C = rng.standard_normal((n_dims, rank)) / np.sqrt(n_dims)
    B = rng.standard_normal((rank, n_voxels)) / np.sqrt(rank)
    U = (Y - Y_train.mean(axis=0)) @ C @ B
    U = (U - U[:n_train].mean(axis=0)) / U[:n_train].std(axis=0)

    noise_sd = np.sqrt(1.0 / snr)
    loadings = rng.standard_normal((10, n_voxels)) / np.sqrt(10)

    def trials(n: int) -> np.ndarray:
        own = rng.standard_normal((n, n_voxels))
        common = rng.standard_normal((n, 10)) @ loadings
        return noise_sd * (np.sqrt(1 - shared_noise) * own + np.sqrt(shared_noise) * common)

    X_train = U[:n_train] + trials(n_train)
    if drift > 0:
        X_train += drift * rng.standard_normal((n_img, n_voxels))[runs]
    n_test = test_cats.size
    X_test = U[n_train:].copy()
    test_noise = np.zeros((n_test, n_voxels))
    for _ in range(n_test_repeats):  # one trial per repeat run
        test_noise += trials(n_test)
        if drift > 0:
            test_noise += drift * rng.standard_normal(n_voxels)
    X_test += test_noise / n_test_repeats

    gain = rng.uniform(5, 20, n_voxels)
    base = rng.uniform(500, 1500, n_voxels)
    X_train, X_test = X_train * gain + base, X_test * gain + base
    return PlantedGOD(
        X_train=X_train.astype(np.float32),
        Y_train=Y_train.astype(np.float32),
        groups=order.astype(np.int64),
        runs=runs.astype(np.int64),
        X_test=X_test.astype(np.float32),
        Y_test=Y_test.astype(np.float32),
        test_groups=test_cats.astype(np.int64),
        params=params,
    )
