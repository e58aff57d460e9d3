r"""The demo's simulated brain: a documented linear-nonlinear encoding model.

Seven disjoint ROIs (V1, V2, V3, V4, LOC, FFA, PPA) share ``n_voxels`` voxels in
the proportions of :data:`ROI_FRACTIONS`; ``ROI_LVC`` = V1 ∪ V2 ∪ V3,
``ROI_HVC`` = LOC ∪ FFA ∪ PPA and ``ROI_VC`` = all are added by the writer.

*Low-level drive* (V1, V2, V3 and half of V4).  The stimulus is centre-cropped
and resized to :math:`P \times P` (``P = 64``).  Complex Gabor filters at 3 spatial
frequencies × 4 orientations of its luminance give contrast-energy maps
:math:`E_k = |I * g_k|` (each divided by its mean over the training stimuli).  Three
local-mean maps :math:`M_c` carry luminance and colour opponency: luminance,
red–green :math:`R - G` and blue–yellow :math:`B - (R + G)/2` (each standardized with
its mean and sd over the training stimuli and pixels).  Voxel :math:`v` has a
Gaussian receptive field :math:`G_v` (centre uniform over the central 80 % of the
image, width growing from V1 to V4, :data:`RF_SIGMA`), non-negative energy weights
:math:`w_{vk} = |z|` and local-mean weights :math:`a_{vc} = z` (:math:`|z|` for
luminance), :math:`z \sim \mathcal N(0, 1)`:

.. math:: e_v(s) = \sum_k w_{vk} \, \frac{\langle G_v, E_k(s) \rangle}{\langle G_v, 1 \rangle},
   \quad m_v(s) = \sum_c a_{vc} \, \frac{\langle G_v, M_c(s) \rangle}{\langle G_v, 1 \rangle},
   \quad \ell_v(s) = \tilde e_v(s) + \kappa \, \tilde m_v(s)

where the tilde standardizes over the training stimuli and :math:`\kappa = 0.7`
(:data:`LOCAL_MEAN_GAIN`): about a third of a low-level voxel's variance follows the
luminance and colour at its receptive field, so a linear map from V1–V3 recovers a
low-resolution picture's coarse layout and colour (the low-level pathway of
:mod:`fmri2image.generation.lowlevel`), the rest its local contrast energy.

*High-level drive* (V4, LOC, FFA, PPA).  :math:`\phi(s)` are the pooled features
of an encoder (EfficientNet-Lite0 by default) of the decoded JPEG, rounded to
1e-4 so the result does not depend on the BLAS thread count.  The brain keeps
their :data:`N_COMPONENTS` leading principal components over the training stimuli,
:math:`z(s) = V_K (\phi(s) - \bar\phi)` (:func:`feature_components`; unwhitened, so
the components keep their variance), and discards the directions in which only
single images vary.  Each ROI :math:`r` reads a random rank-:math:`q_r` mix of them
(:data:`ROI_RANK`; :math:`q_r \ge K` means every kept direction):

.. math:: h_v(s) = b_v^\top C_r \, z(s), \quad
   C_r \in \mathbb{R}^{q_r \times K},\ b_v \in \mathbb{R}^{q_r},\ \text{entries} \sim \mathcal N(0, 1)

V4 voxels take :math:`(\ell_v + h_v)` standardized.

*Measurement.*  The noise-free response :math:`u_v(s)` is standardized to zero
mean and unit variance over the training stimuli.  A trial :math:`t` of stimulus
:math:`s` in run :math:`r` gives

.. math:: y_{tv} = \beta_v + \gamma_v \left( u_v(s) + d_{rv} + \varepsilon_{tv} \right),
   \quad d_{rv} \sim \mathcal N(0, \delta^2),
   \quad \varepsilon_{tv} \sim \mathcal N(0, 1 / \mathrm{SNR})

with baseline :math:`\beta_v \sim U(500, 1500)` and gain :math:`\gamma_v \sim U(5, 20)`.
Imagery trials carry :math:`g_\mathrm{im} h_v(s^\ast)` in V4/LOC/FFA/PPA (the
category's test image :math:`s^\ast`) and no stimulus-driven signal in V1–V3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from fmri2image.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from fmri2image.demo.design import Design
    from fmri2image.features.base import Encoder

__all__ = [
    "HIGH_ROIS",
    "LOCAL_MEAN_CHANNELS",
    "LOCAL_MEAN_GAIN",
    "LOW_ROIS",
    "N_COMPONENTS",
    "RF_SIGMA",
    "ROI_FRACTIONS",
    "ROI_RANK",
    "encoder_features",
    "feature_components",
    "low_level_maps",
    "roi_sizes",
    "simulate_subject",
]

#: Share of ``n_voxels`` in each (disjoint) ROI.
ROI_FRACTIONS: dict[str, float] = {
    "V1": 0.20,
    "V2": 0.19,
    "V3": 0.15,
    "V4": 0.13,
    "LOC": 0.13,
    "FFA": 0.11,
    "PPA": 0.09,
}
LOW_ROIS = ("V1", "V2", "V3")
HIGH_ROIS = ("LOC", "FFA", "PPA")
#: Receptive-field width range (fraction of the image side) per low-level ROI.
RF_SIGMA = {"V1": (0.04, 0.08), "V2": (0.07, 0.12), "V3": (0.10, 0.18), "V4": (0.15, 0.30)}
#: Rank of the random subspace of the feature components each high-level ROI reads
#: (at least N_COMPONENTS: every direction the brain keeps).
ROI_RANK = {"V4": 32, "LOC": 128, "FFA": 128, "PPA": 128}
#: Leading principal components of the encoder features that the brain keeps.
N_COMPONENTS = 128
#: ROI centres (mm, left hemisphere; mirrored in x for the right) for voxel_x/y/z.
_ROI_CENTRE_MM = {
    "V1": (-8, -96, 0),
    "V2": (-14, -90, 18),
    "V3": (-22, -88, -18),
    "V4": (-30, -80, 30),
    "LOC": (-44, -70, -2),
    "FFA": (-40, -50, -24),
    "PPA": (-26, -44, -8),
}
_VOXEL_MM = 3
_LOW_SIZE = 64  # pixels of the luminance image the Gabor bank sees
_GABOR_FREQS = (0.0625, 0.125, 0.25)  # cycles / pixel
_GABOR_ORIENTATIONS = 4
#: The local-mean channels of :func:`low_level_maps`, after the 12 Gabor energy maps.
LOCAL_MEAN_CHANNELS = ("luminance", "red-green", "blue-yellow")
#: Weight of a low-level voxel's standardized local-mean drive (luminance and colour
#: opponency) relative to its standardized contrast-energy drive.
LOCAL_MEAN_GAIN = 0.7


# ------------------------------------------------------------------ stimulus side


def _gabor_bank(size: int) -> list[np.ndarray]:
    """Complex Gabor kernels (one-octave bandwidth), frequencies × orientations."""
    kernels = []
    for f in _GABOR_FREQS:
        sigma = 0.56 / f
        half = min(int(np.ceil(3 * sigma)), size // 2)
        y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
        envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
        for i in range(_GABOR_ORIENTATIONS):
            theta = np.pi * i / _GABOR_ORIENTATIONS
            carrier = np.exp(2j * np.pi * f * (x * np.cos(theta) + y * np.sin(theta)))
            k = envelope * carrier
            k -= envelope * (k.sum() / envelope.sum())  # zero DC: energy ignores luminance
            kernels.append(k / np.abs(k).sum())
    return kernels


def low_level_maps(images: Sequence[Image.Image]) -> np.ndarray:
    """Gabor energy, luminance and colour-opponent maps of the stimuli.

    Parameters
    ----------
    images : sequence of PIL.Image.Image
        Decoded RGB stimuli.

    Returns
    -------
    ndarray of shape (n_images, 15, 64, 64)
        12 Gabor energy channels (3 frequencies × 4 orientations), then the
        local-mean channels of :data:`LOCAL_MEAN_CHANNELS`: luminance (PIL ``L``),
        red–green ``R - G`` and blue–yellow ``B - (R + G) / 2`` (RGB in [0, 1]).
    """
    from PIL import Image as PILImage

    p = _LOW_SIZE
    bank = _gabor_bank(p)
    # Linear ("same") convolution through one zero-padded FFT per image.
    n_fft = 2 * p
    spectra = []
    for k in bank:
        pad = np.zeros((n_fft, n_fft), dtype=np.complex128)
        pad[: k.shape[0], : k.shape[1]] = k
        spectra.append((np.fft.fft2(pad), k.shape[0] // 2))
    lum = np.empty((len(images), p, p))
    rgb = np.empty((len(images), p, p, 3))
    for i, img in enumerate(images):
        w, h = img.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        sq = img.crop((left, top, left + side, top + side))
        grey = sq.convert("L").resize((p, p), PILImage.Resampling.BILINEAR)
        small = sq.convert("RGB").resize((p, p), PILImage.Resampling.BILINEAR)
        lum[i] = np.asarray(grey, np.float64) / 255.0
        rgb[i] = np.asarray(small, np.float64) / 255.0
    centred = lum - lum.mean(axis=(1, 2), keepdims=True)
    image_fft = np.fft.fft2(centred, s=(n_fft, n_fft))
    out = np.empty((len(images), len(bank) + len(LOCAL_MEAN_CHANNELS), p, p))
    for c, (spec, half) in enumerate(spectra):
        full = np.fft.ifft2(image_fft * spec)
        out[:, c] = np.abs(full[:, half : half + p, half : half + p])
    out[:, len(bank)] = lum
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    out[:, -2] = r - g  # red-green
    out[:, -1] = b - (r + g) / 2  # blue-yellow
    return out


def encoder_features(
    encoder: Encoder, images: Sequence[Image.Image], *, progress: bool = True
) -> np.ndarray:
    """Pooled encoder features, rounded to 1e-4 (independent of BLAS threads).

    Parameters
    ----------
    encoder : Encoder
    images : sequence of PIL.Image.Image

    Returns
    -------
    ndarray of shape (n_images, encoder.dim), float64
    """
    from fmri2image.features import embed_images

    feats = embed_images(encoder, images, batch_size=16, progress=progress)
    return np.round(feats.astype(np.float64), 4)


def feature_components(feats: np.ndarray, train_rows: np.ndarray, k: int) -> np.ndarray:
    """Scores of the features on the training stimuli's leading principal components.

    Parameters
    ----------
    feats : ndarray of shape (n_stimuli, dim)
    train_rows : ndarray of bool, shape (n_stimuli,)
    k : int
        Components kept (at most the rank of the centred training features).

    Returns
    -------
    ndarray of shape (n_stimuli, k')
        ``(feats - mean_train) @ V_k.T`` with ``V_k`` the leading right singular
        vectors of the centred training features, ``k' <= k``.  Components keep
        their variance (no whitening); each is signed so that its largest loading
        is positive, because SVD signs are arbitrary.
    """
    train = feats[train_rows]
    mean = train.mean(0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    keep = int(min(k, (s > s[0] * 1e-6).sum()))
    vt = vt[:keep]
    signs = np.sign(vt[np.arange(keep), np.abs(vt).argmax(1)])
    return ((feats - mean) @ vt.T) * signs


# -------------------------------------------------------------------- voxel side


def roi_sizes(n_voxels: int) -> dict[str, int]:
    """Largest-remainder split of ``n_voxels`` into the ROIs of :data:`ROI_FRACTIONS`."""
    raw = {k: f * n_voxels for k, f in ROI_FRACTIONS.items()}
    sizes = {k: int(np.floor(v)) for k, v in raw.items()}
    order = sorted(raw, key=lambda k: raw[k] - sizes[k], reverse=True)
    for k in order[: n_voxels - sum(sizes.values())]:
        sizes[k] += 1
    return sizes


def voxel_coordinates(sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """Distinct voxel centres (mm) on a 3 mm grid around each ROI's centre.

    Returns
    -------
    ndarray of shape (n_voxels, 3)
    """
    coords = []
    taken: set[tuple[int, int, int]] = set()
    for roi, n in sizes.items():
        cx, cy, cz = _ROI_CENTRE_MM[roi]
        n_left = (n + 1) // 2
        for hemi, m in ((-1, n_left), (1, n - n_left)):
            if m == 0:
                continue
            side = int(np.ceil((2.0 * m) ** (1 / 3))) + 1
            g = np.arange(side) - side // 2
            grid = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
            # Nearest grid points first, random tie-break: compact blobs.
            d = (grid**2).sum(1) + rng.uniform(0, 1, len(grid))
            cand = grid[np.argsort(d)] * _VOXEL_MM + np.array([hemi * abs(cx), cy, cz])
            picked = 0
            for p in cand:
                t = (int(p[0]), int(p[1]), int(p[2]))
                if t in taken:
                    continue
                taken.add(t)
                coords.append(t)
                picked += 1
                if picked == m:
                    break
            if picked < m:  # pragma: no cover - grid is twice as large as needed
                raise ConfigError(f"Too many voxels for ROI {roi}; lower n_voxels.")
    return np.asarray(coords, dtype=np.float64)


def _standardize(u: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Scale columns of ``u`` with the mean/std of the ``ref`` rows (training stimuli)."""
    mu = u[ref].mean(0)
    sd = u[ref].std(0)
    return (u - mu) / np.where(sd > 0, sd, 1.0)


def noise_free_responses(
    low_maps: np.ndarray,
    components: np.ndarray,
    train_rows: np.ndarray,
    sizes: dict[str, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Standardized noise-free responses to every stimulus.

    Parameters
    ----------
    low_maps : ndarray of shape (n_stimuli, n_channels, P, P)
        :func:`low_level_maps`.
    components : ndarray of shape (n_stimuli, K)
        :func:`feature_components` of the encoder features.
    train_rows : ndarray of bool, shape (n_stimuli,)
    sizes : dict of str to int
        :func:`roi_sizes`.
    rng : numpy.random.Generator
        The subject's stream.

    Returns
    -------
    u : ndarray of shape (n_stimuli, n_voxels)
        Responses, zero mean / unit variance over training stimuli per voxel.
    high : ndarray of shape (n_stimuli, n_voxels)
        Only the high-level part (zero for V1-V3), used for imagery.
    """
    n_stim, n_chan = low_maps.shape[:2]
    n_energy = n_chan - len(LOCAL_MEAN_CHANNELS)
    train = low_maps[train_rows]
    # Energy channels (non-negative) are divided by their training mean; the local-mean
    # channels are standardized with their training mean and sd over stimuli and pixels.
    shift = np.zeros(n_chan)
    scale = train.mean(axis=(0, 2, 3))
    shift[n_energy:] = scale[n_energy:]
    scale[n_energy:] = train[:, n_energy:].std(axis=(0, 2, 3))
    maps = (low_maps - shift[None, :, None, None]) / scale[None, :, None, None]
    maps = maps.reshape(n_stim, n_chan, -1)
    # The colour-opponent weights come from a child stream: ``rng`` draws what it drew
    # before those channels existed, so the high-level voxels, the noise and the voxel
    # coordinates are unchanged by them.
    local_rng = rng.spawn(1)[0]
    pix = (np.arange(_LOW_SIZE) + 0.5) / _LOW_SIZE
    yy, xx = np.meshgrid(pix, pix, indexing="ij")

    def low(n: int, roi: str) -> np.ndarray:
        cx, cy = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n)
        sigma = rng.uniform(*RF_SIGMA[roi], n)
        rf = np.exp(
            -((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2)
            / (2 * sigma[:, None, None] ** 2)
        ).reshape(n, -1)
        rf /= rf.sum(1, keepdims=True)
        # Energy and luminance weights: |z|, drawn as before the colour channels.
        w = np.abs(rng.standard_normal((n, n_energy + 1)))
        a = np.column_stack([w[:, -1], local_rng.standard_normal((n, n_chan - n_energy - 1))])
        w = w[:, :-1]
        pooled = (maps.reshape(n_stim * n_chan, -1) @ rf.T).reshape(n_stim, n_chan, n)
        energy = _standardize((pooled[:, :n_energy] * w.T[None]).sum(axis=1), train_rows)
        local = _standardize((pooled[:, n_energy:] * a.T[None]).sum(axis=1), train_rows)
        return _standardize(energy + LOCAL_MEAN_GAIN * local, train_rows)

    def high(n: int, roi: str) -> np.ndarray:
        basis = rng.standard_normal((ROI_RANK[roi], components.shape[1]))
        b = rng.standard_normal((n, ROI_RANK[roi]))
        return _standardize(components @ basis.T @ b.T, train_rows)

    u_parts, h_parts = [], []
    for roi, n in sizes.items():
        if roi in LOW_ROIS:
            u = low(n, roi)
            h = np.zeros_like(u)
        elif roi == "V4":
            lo, h = low(n, roi), high(n, roi)
            u = _standardize(lo + h, train_rows)
            h = h / np.sqrt(2.0)
        else:
            u = h = high(n, roi)
        u_parts.append(u)
        h_parts.append(h)
    return np.hstack(u_parts), np.hstack(h_parts)


def simulate_subject(
    low_maps: np.ndarray,
    components: np.ndarray,
    train_rows: np.ndarray,
    design: Design,
    sizes: dict[str, int],
    rng: np.random.Generator,
    *,
    snr: float,
    drift: float,
    imagery_gain: float,
) -> np.ndarray:
    """One subject's raw voxel responses to the trials of ``design``.

    Parameters
    ----------
    low_maps, components, train_rows, sizes
        See :func:`noise_free_responses`.
    design : Design
        Trials (:func:`fmri2image.demo.design.make_design`).
    rng : numpy.random.Generator
        The subject's stream (voxel model, then drift and noise).
    snr, drift, imagery_gain : float
        Single-trial signal-to-noise variance ratio, run-offset sd, imagery scale.

    Returns
    -------
    ndarray of shape (n_trials, n_voxels)
        Scanner-like raw values (baseline ~1000, gain 5-20 per voxel).
    """
    u, high = noise_free_responses(low_maps, components, train_rows, sizes, rng)
    n_samples, n_voxels = len(design.run), u.shape[1]
    signal = np.where(
        (design.data_type == 3)[:, None],
        imagery_gain * high[design.stim_row],
        u[design.stim_row],
    )
    run_offsets = rng.normal(0.0, drift, (int(design.run.max()), n_voxels))
    noise = rng.normal(0.0, np.sqrt(1.0 / snr), (n_samples, n_voxels))
    baseline = rng.uniform(500.0, 1500.0, n_voxels)
    gain = rng.uniform(5.0, 20.0, n_voxels)
    return baseline + gain * (signal + run_offsets[design.run - 1] + noise)
