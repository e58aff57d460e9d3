r"""A GOD-shaped demo dataset: real photographs, simulated fMRI, zero downloads.

:func:`write_demo_dataset` writes a folder with exactly the layout of the
Generic Object Decoding release (Horikawa & Kamitani 2017)::

    <out_dir>/Subject1.h5 ... SubjectN.h5     BData (bdpy format)
    <out_dir>/training/n02123045_1003.JPEG ... training stimuli
    <out_dir>/test/...                         test stimuli
    <out_dir>/imageID_training.csv             "2123045.001003,n02123045_1003.JPEG"
    <out_dir>/imageID_test.csv
    <out_dir>/demo_dataset.json                provenance (not part of the GOD release)

so every loader, command and notebook that runs on GOD runs on it unchanged.

Stimuli
-------
The photographs ship inside installed wheels (scikit-image ``skimage/data`` and
scikit-learn ``sklearn/datasets/images``); each catalogue entry (:data:`CATALOGUE`)
is a region of one photo labelled with the WordNet id of what it shows.  Several
images per category come from random crops (area 40–100 % of the largest crop
with aspect in [3/4, 4/3] that fits the region), horizontal flips and
brightness / contrast / saturation jitter (factors in [0.8, 1.25]).  As in GOD,
training and test categories are disjoint; in addition, categories cut from the
same photo never straddle the split, so no test pixel is ever seen in training.

Design (mirrors GOD)
--------------------
* ``DataType == 1``: ``n_train_categories × images_per_category`` training images,
  each shown once, in ``images_per_category`` runs (run *r* shows the *r*-th image
  of every category, shuffled).
* ``DataType == 2``: one image per test category, shown ``n_test_repeats`` times,
  one presentation per run, shuffled within run.
* ``DataType == 3``: imagery of each test category, ``n_imagery_repeats`` runs;
  ``stimulus_id`` is the category id (integer part only, e.g. ``2123045.0``).

``Run`` numbers are unique over the file (training runs first); ``Block`` is the
1-based trial position within the run.  ``image_index`` is the 1-based row of the
image in its id file (NaN for imagery); ``category_index`` the 1-based index of
the category in the sorted category list of its split.

Simulated encoding model
------------------------
Each subject has its own random voxel model, drawn from ``seed`` and the subject
number.  Seven disjoint ROIs (V1, V2, V3, V4, LOC, FFA, PPA; ``ROI_LVC`` =
V1 ∪ V2 ∪ V3, ``ROI_HVC`` = LOC ∪ FFA ∪ PPA, ``ROI_VC`` = all) share the
``n_voxels`` voxels in the proportions of :data:`ROI_FRACTIONS`.

*Low-level drive* (V1, V2, V3 and half of V4).  The stimulus is centre-cropped,
converted to luminance and resized to :math:`P \times P` (``P = 64``).  Complex
Gabor filters :math:`g_{f\theta}` at 3 spatial frequencies × 4 orientations give
energy maps :math:`E_k = |I * g_k|`, plus a local-luminance map; each channel
is divided by its mean over the training stimuli.  Voxel :math:`v` has a
Gaussian receptive field :math:`G_v` (centre uniform over the central 80 % of
the image, width :math:`\sigma_v` growing from V1 to V4, see
:data:`_RF_SIGMA`) and non-negative channel weights :math:`w_{vk}`:

.. math:: \ell_v(s) = \sum_k w_{vk} \, \frac{\langle G_v, E_k(s) \rangle}{\langle G_v, 1 \rangle}

*High-level drive* (V4, LOC, FFA, PPA).  :math:`\phi(s) \in \mathbb{R}^{1280}`
are the pooled EfficientNet-Lite0 features (real ImageNet weights, via
:func:`fmri2image.features.get_encoder`) of the decoded JPEG, rounded to 1e-4
so the result does not depend on the BLAS thread count.  Each ROI :math:`r`
reads a random rank-:math:`q_r` subspace of the centred features
(:data:`_ROI_RANK`):

.. math:: h_v(s) = b_v^\top C_r \, (\phi(s) - \bar\phi), \quad
   C_r \in \mathbb{R}^{q_r \times 1280},\ b_v \in \mathbb{R}^{q_r},\ \text{entries} \sim \mathcal N(0, 1)

where :math:`\bar\phi` is the mean over training stimuli.  V4 voxels take
:math:`(\ell_v + h_v) / 2` after both are standardized.

*Measurement.*  The noise-free response :math:`u_v(s)` (:math:`\ell_v` or
:math:`h_v`) is standardized to zero mean and unit variance over the training
stimuli.  A single trial :math:`t` of stimulus :math:`s` in run :math:`r` gives

.. math:: y_{tv} = \beta_v + \gamma_v \left( u_v(s) + d_{rv} + \varepsilon_{tv} \right),
   \quad d_{rv} \sim \mathcal N(0, \delta^2),
   \quad \varepsilon_{tv} \sim \mathcal N(0, 1 / \mathrm{SNR})

with a baseline :math:`\beta_v \sim U(500, 1500)` and gain
:math:`\gamma_v \sim U(5, 20)` (raw scanner-like units, so normalization is
needed, as with real data), run drift :math:`\delta` = ``drift`` and
``snr`` the single-trial signal-to-noise variance ratio of every voxel.
Imagery trials carry :math:`g_\mathrm{im} \, u_v(s^\ast)` (``imagery_gain``,
default 0.5) in V4/LOC/FFA/PPA, where :math:`s^\ast` is the category's test
image, and no stimulus-driven signal in V1–V3.

Everything is deterministic given ``seed``: the same seed gives byte-identical
images and identical voxel arrays.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from fmri2image.features.base import Encoder

__all__ = [
    "CATALOGUE",
    "ROI_FRACTIONS",
    "DemoCategory",
    "DemoDatasetInfo",
    "available_categories",
    "write_demo_dataset",
]

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class DemoCategory:
    """One demo category: a region of a photograph that ships with a pip package.

    Attributes
    ----------
    wnid : str
        WordNet 3.0 noun id (ImageNet-21k synset) of what the region shows.
    package : {"skimage", "sklearn"}
        Package whose data folder holds the photo.
    file : str
        Photo file name inside that folder.
    box : tuple of int
        ``(left, top, right, bottom)`` pixel box of the region in the photo.
    test_eligible : bool
        True if the photo yields no other category, so the category can be a
        test category without sharing pixels with training images.
    """

    wnid: str
    package: str
    file: str
    box: tuple[int, int, int, int]
    test_eligible: bool = True


_PACKAGE_DATA_DIRS = {"skimage": ("data",), "sklearn": ("datasets", "images")}

#: Photos and the synsets they show. Test categories are taken from the front of
#: the test-eligible entries (object photos whose synsets are ImageNet-1k
#: classes come first), training categories from what remains, in this order.
CATALOGUE: tuple[DemoCategory, ...] = (
    DemoCategory("n02123045", "skimage", "chelsea.png", (40, 0, 451, 300)),  # tabby cat
    DemoCategory("n07920052", "skimage", "coffee.png", (90, 0, 560, 400)),  # espresso
    DemoCategory("n03877845", "sklearn", "china.jpg", (0, 0, 380, 427)),  # palace
    DemoCategory("n04485082", "skimage", "camera.png", (60, 0, 420, 512)),  # tripod
    DemoCategory("n04265904", "skimage", "rocket.jpg", (180, 0, 460, 427)),  # space rocket
    DemoCategory("n03790512", "skimage", "motorcycle_left.png", (40, 110, 741, 500)),  # motorcycle
    DemoCategory("n11960245", "sklearn", "flower.jpg", (150, 0, 500, 427)),  # dahlia
    # Four regions of one photo: training only.
    DemoCategory("n09818022", "skimage", "astronaut.png", (40, 0, 350, 512), False),  # astronaut
    DemoCategory("n04266014", "skimage", "astronaut.png", (350, 0, 478, 280), False),  # shuttle
    DemoCategory("n04265428", "skimage", "astronaut.png", (285, 335, 512, 512), False),  # helmet
    DemoCategory("n03354903", "skimage", "astronaut.png", (0, 0, 100, 330), False),  # flag
    DemoCategory("n09344324", "skimage", "moon.png", (0, 0, 512, 512)),  # lunar crater
    DemoCategory("n09436708", "skimage", "hubble_deep_field.jpg", (0, 0, 1000, 872)),  # sky
    DemoCategory("n14698884", "skimage", "gravel.png", (0, 0, 512, 512)),  # gravel
    DemoCategory("n12102133", "skimage", "grass.png", (0, 0, 512, 512)),  # grass
    DemoCategory("n02898369", "skimage", "brick.png", (0, 0, 512, 512)),  # brickwork
    DemoCategory("n03927091", "skimage", "ihc.png", (0, 0, 512, 512)),  # photomicrograph
    DemoCategory("n06470073", "skimage", "page.png", (0, 0, 384, 191)),  # document
)

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
_LOW_ROIS = ("V1", "V2", "V3")
_HIGH_ROIS = ("LOC", "FFA", "PPA")
#: Receptive-field width range (fraction of the image side) per low-level ROI.
_RF_SIGMA = {"V1": (0.04, 0.08), "V2": (0.07, 0.12), "V3": (0.10, 0.18), "V4": (0.15, 0.30)}
#: Rank of the feature subspace each high-level ROI reads.
_ROI_RANK = {"V4": 16, "LOC": 32, "FFA": 32, "PPA": 32}
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
_ROI_KEYS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
_OWNED_GLOBS = (
    "Subject*.h5",
    "imageID_training.csv",
    "imageID_test.csv",
    "demo_dataset.json",
    "training/*.JPEG",
    "test/*.JPEG",
)


def _photo_path(cat: DemoCategory) -> Path | None:
    spec = find_spec(cat.package)  # locate the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)))
    path = path.joinpath(*_PACKAGE_DATA_DIRS[cat.package], cat.file)
    return path if path.is_file() else None


def available_categories() -> tuple[DemoCategory, ...]:
    """Catalogue entries whose photo is present in the installed packages."""
    return tuple(c for c in CATALOGUE if _photo_path(c) is not None)


# -------------------------------------------------------------------------- result


@dataclass(frozen=True)
class DemoDatasetInfo:
    """What :func:`write_demo_dataset` wrote.

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder (pass it wherever a GOD folder is expected).
    subject_files : tuple of pathlib.Path
        ``Subject1.h5`` ... ``SubjectN.h5``.
    training_dir, test_dir : pathlib.Path
        Stimulus image folders.
    training_id_file, test_id_file : pathlib.Path
        Header-less id files.
    manifest : pathlib.Path
        ``demo_dataset.json`` (parameters, catalogue, ROI sizes).
    train_wnids, test_wnids : tuple of str
        Training and test categories (sorted, disjoint).
    n_train_images, n_test_images : int
        Stimulus images per split.
    n_samples : dict of str to int
        Samples per subject by kind (``training``, ``test``, ``imagery``, ``total``).
    n_voxels : int
        Voxels per subject.
    roi_sizes : dict of str to int
        Voxels in each ``ROI_*`` key.
    snr, drift, imagery_gain : float
        Noise model (see the module docstring).
    seed : int
        Seed that reproduces the dataset.
    encoder : str
        Encoder whose features drive the high-level ROIs.
    n_bytes : int
        Bytes written.
    seconds : float
        Wall time of the call.
    """

    root: Path
    subject_files: tuple[Path, ...]
    training_dir: Path
    test_dir: Path
    training_id_file: Path
    test_id_file: Path
    manifest: Path
    train_wnids: tuple[str, ...]
    test_wnids: tuple[str, ...]
    n_train_images: int
    n_test_images: int
    n_samples: dict[str, int]
    n_voxels: int
    roi_sizes: dict[str, int]
    snr: float
    drift: float
    imagery_gain: float
    seed: int
    encoder: str
    n_bytes: int = 0
    seconds: float = field(default=0.0, compare=False)

    @property
    def n_subjects(self) -> int:
        return len(self.subject_files)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (paths as strings)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, Path):
                out[k] = str(v)
            elif isinstance(v, tuple):
                out[k] = [str(x) for x in v]
        return out

    def summary(self) -> str:
        """Multi-line human-readable summary."""
        s = self.n_samples
        lines = [
            f"GOD-layout demo dataset in {self.root}",
            f"  subjects        {self.n_subjects} ({', '.join(p.name for p in self.subject_files)})",
            f"  categories      {len(self.train_wnids)} training, {len(self.test_wnids)} test "
            "(disjoint)",
            f"  images          {self.n_train_images} training, {self.n_test_images} test",
            f"  samples/subject {s['total']} = {s['training']} training + {s['test']} test "
            f"+ {s['imagery']} imagery",
            f"  voxels/subject  {self.n_voxels} ("
            + ", ".join(f"{k} {v}" for k, v in self.roi_sizes.items())
            + ")",
            f"  noise           single-trial SNR {self.snr:g}, run drift sd {self.drift:g}, "
            f"imagery gain {self.imagery_gain:g}",
            f"  encoder         {self.encoder} (drives V4/LOC/FFA/PPA)",
            f"  seed            {self.seed}",
            f"  size on disk    {self.n_bytes / 1e6:.1f} MB",
            f"  took            {self.seconds:.1f} s",
        ]
        return "\n".join(lines)


# ------------------------------------------------------------------------- stimuli


@dataclass(frozen=True)
class _Stimulus:
    wnid: str
    number: int  # ImageNet-style image number
    split: str  # "training" | "test"
    jpeg: bytes

    @property
    def name(self) -> str:
        return f"{self.wnid}_{self.number}"

    @property
    def stimulus_id(self) -> float:
        from fmri2image.data.ids import image_name_to_stimulus_id

        return image_name_to_stimulus_id(self.name)


def _augment(
    photo: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator, size: int
) -> Image.Image:
    """One random crop / flip / colour jitter of ``box`` in ``photo``; longer side ``size``."""
    from PIL import Image as PILImage
    from PIL import ImageEnhance

    left, top, right, bottom = box
    w, h = right - left, bottom - top
    aspect = float(np.clip(w / h * np.exp(rng.uniform(-0.2, 0.2)), 0.75, 4 / 3))
    # Largest crop of this aspect inside the region, then 40-100 % of its area.
    cw, ch = (w, w / aspect) if w / aspect <= h else (h * aspect, h)
    scale = np.sqrt(rng.uniform(0.4, 1.0))
    cw, ch = max(16.0, cw * scale), max(16.0, ch * scale)
    x0 = left + rng.uniform(0, max(w - cw, 0))
    y0 = top + rng.uniform(0, max(h - ch, 0))
    crop = photo.crop((round(x0), round(y0), round(x0 + cw), round(y0 + ch)))
    out_w, out_h = (size, round(size * ch / cw)) if cw >= ch else (round(size * cw / ch), size)
    img = crop.resize((out_w, out_h), PILImage.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(np.exp(rng.uniform(-0.22, 0.22))))
    return img


def _make_stimuli(
    train_cats: Sequence[DemoCategory],
    test_cats: Sequence[DemoCategory],
    images_per_category: int,
    image_size: int,
    rng: np.random.Generator,
) -> list[_Stimulus]:
    from PIL import Image as PILImage

    photos: dict[Path, Image.Image] = {}
    stimuli: list[_Stimulus] = []
    plan = [(c, "training", images_per_category) for c in train_cats]
    plan += [(c, "test", 1) for c in test_cats]
    for cat, split, n in plan:
        path = _photo_path(cat)
        assert path is not None  # filtered by available_categories()
        if path not in photos:
            with PILImage.open(path) as im:
                photos[path] = im.convert("RGB")
        numbers = np.sort(rng.choice(np.arange(1000, 100000), size=n, replace=False))
        for number in numbers:
            img = _augment(photos[path], cat.box, rng, image_size)
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            stimuli.append(_Stimulus(cat.wnid, int(number), split, buf.getvalue()))
    return stimuli


def _decode(jpeg: bytes) -> Image.Image:
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(jpeg)) as im:
        return im.convert("RGB")


# ------------------------------------------------------------- feature extraction


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


def _low_level_maps(images: Sequence[Image.Image]) -> np.ndarray:
    """Gabor energy + luminance maps, shape (n_images, n_channels, P, P)."""
    from PIL import Image as PILImage
    from scipy.signal import fftconvolve

    bank = _gabor_bank(_LOW_SIZE)
    out = np.empty((len(images), len(bank) + 1, _LOW_SIZE, _LOW_SIZE))
    for i, img in enumerate(images):
        w, h = img.size
        side = min(w, h)
        sq = img.crop(
            ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        )
        lum = (
            np.asarray(
                sq.convert("L").resize((_LOW_SIZE, _LOW_SIZE), PILImage.Resampling.BILINEAR),
                dtype=np.float64,
            )
            / 255.0
        )
        centred = lum - lum.mean()
        for k, kern in enumerate(bank):
            out[i, k] = np.abs(fftconvolve(centred, kern, mode="same"))
        out[i, -1] = lum
    return out


def _encoder_features(
    encoder: Encoder, images: Sequence[Image.Image], progress: bool
) -> np.ndarray:
    from fmri2image.features import embed_images

    feats = embed_images(encoder, images, batch_size=16, progress=progress)
    # Rounding makes the simulation independent of BLAS thread count / CPU kind.
    return np.round(feats.astype(np.float64), 4)


# ------------------------------------------------------------------ voxel model


def _roi_sizes(n_voxels: int) -> dict[str, int]:
    """Largest-remainder split of ``n_voxels`` into the ROIs of :data:`ROI_FRACTIONS`."""
    raw = {k: f * n_voxels for k, f in ROI_FRACTIONS.items()}
    sizes = {k: int(np.floor(v)) for k, v in raw.items()}
    order = sorted(raw, key=lambda k: raw[k] - sizes[k], reverse=True)
    for k in order[: n_voxels - sum(sizes.values())]:
        sizes[k] += 1
    return sizes


def _voxel_coordinates(sizes: dict[str, int], rng: np.random.Generator) -> np.ndarray:
    """Distinct voxel centres (mm) on a 3 mm grid around each ROI's centre, (n_voxels, 3)."""
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


def _noise_free_responses(
    low_maps: np.ndarray,
    feats: np.ndarray,
    train_rows: np.ndarray,
    sizes: dict[str, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Standardized noise-free responses to every stimulus.

    Returns
    -------
    u : ndarray of shape (n_stimuli, n_voxels)
        Responses, zero mean / unit variance over training stimuli per voxel.
    high : ndarray of shape (n_stimuli, n_voxels)
        Only the high-level part (zero for V1-V3), used for imagery.
    """
    n_stim, n_chan = low_maps.shape[:2]
    maps = low_maps / low_maps[train_rows].mean(axis=(0, 2, 3))[None, :, None, None]
    maps = maps.reshape(n_stim, n_chan, -1)
    pix = (np.arange(_LOW_SIZE) + 0.5) / _LOW_SIZE
    yy, xx = np.meshgrid(pix, pix, indexing="ij")
    centred = feats - feats[train_rows].mean(0)

    def low(n: int, roi: str) -> np.ndarray:
        cx, cy = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n)
        sigma = rng.uniform(*_RF_SIGMA[roi], n)
        rf = np.exp(
            -((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2)
            / (2 * sigma[:, None, None] ** 2)
        ).reshape(n, -1)
        rf /= rf.sum(1, keepdims=True)
        w = np.abs(rng.standard_normal((n, n_chan)))
        pooled = np.einsum("vp,scp->svc", rf, maps)  # (n_stim, n, n_chan)
        return _standardize(np.einsum("svc,vc->sv", pooled, w), train_rows)

    def high(n: int, roi: str) -> np.ndarray:
        basis = rng.standard_normal((_ROI_RANK[roi], feats.shape[1]))
        b = rng.standard_normal((n, _ROI_RANK[roi]))
        return _standardize(centred @ basis.T @ b.T, train_rows)

    u_parts, h_parts = [], []
    for roi, n in sizes.items():
        if roi in _LOW_ROIS:
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


# ------------------------------------------------------------------------- design


@dataclass(frozen=True)
class _Design:
    """Per-sample design of one subject, all arrays of shape (n_samples,)."""

    data_type: np.ndarray
    run: np.ndarray
    block: np.ndarray
    stim_row: np.ndarray  # index into the stimulus list (test image for imagery)


def _design(
    stimuli: Sequence[_Stimulus],
    images_per_category: int,
    n_test_repeats: int,
    n_imagery_repeats: int,
    rng: np.random.Generator,
) -> _Design:
    train_rows = [i for i, s in enumerate(stimuli) if s.split == "training"]
    test_rows = [i for i, s in enumerate(stimuli) if s.split == "test"]
    by_cat: dict[str, list[int]] = {}
    for i in train_rows:
        by_cat.setdefault(stimuli[i].wnid, []).append(i)
    runs: list[tuple[int, list[int]]] = []
    # Training: run r shows one (random) image of every category.
    assignment = {c: rng.permutation(rows) for c, rows in by_cat.items()}
    for r in range(images_per_category):
        runs.append((1, [int(assignment[c][r]) for c in by_cat]))
    runs += [(2, list(test_rows)) for _ in range(n_test_repeats)]
    runs += [(3, list(test_rows)) for _ in range(n_imagery_repeats)]
    dt, run, block, rows = [], [], [], []
    for run_no, (data_type, members) in enumerate(runs, start=1):
        order = rng.permutation(np.asarray(members, dtype=np.int64))
        dt += [data_type] * len(order)
        run += [run_no] * len(order)
        block += list(range(1, len(order) + 1))
        rows += order.tolist()
    return _Design(
        data_type=np.asarray(dt, dtype=np.int64),
        run=np.asarray(run, dtype=np.int64),
        block=np.asarray(block, dtype=np.int64),
        stim_row=np.asarray(rows, dtype=np.int64),
    )


# ------------------------------------------------------------------------- writer


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bound}, got {value}.")
    return int(value)


def _check_float(name: str, value: Any, *, positive: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{name} must be a finite {kind} number, got {value!r}.")
    return v


def _select_categories(n_train: int, n_test: int) -> tuple[list[DemoCategory], list[DemoCategory]]:
    cats = available_categories()
    eligible = [c for c in cats if c.test_eligible]
    if n_test > len(eligible):
        raise ConfigError(
            f"n_test_categories={n_test} but only {len(eligible)} categories can be test "
            "categories (test categories must come from photos that yield no training "
            f"category; the catalogue has {len(cats)} categories from the photos installed "
            "with scikit-image and scikit-learn). Lower --n-test-categories; raise "
            "--n-test-repeats or --images-per-category for a larger dataset."
        )
    test = eligible[:n_test]
    rest = [c for c in cats if c not in test]
    if n_train > len(rest):
        raise ConfigError(
            f"n_train_categories={n_train} with n_test_categories={n_test} needs "
            f"{n_train + n_test} categories, but the photos installed with scikit-image "
            f"and scikit-learn give {len(cats)}. Use at most {len(rest)} training "
            "categories (or fewer test categories); raise --images-per-category for more "
            "training images."
        )
    return rest[:n_train], test


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder. Choose another OUT_DIR.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{out} is not empty. Choose a new or empty folder, or pass --force "
                "(overwrite=True) to replace a demo dataset written there before (only "
                "the demo's own files are removed)."
            )
        for pattern in _OWNED_GLOBS:
            for p in out.glob(pattern):
                if p.is_file():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_id_file(path: Path, stimuli: Sequence[_Stimulus]) -> None:
    from fmri2image._io import atomic_write

    with atomic_write(path, "w", encoding="ascii", newline="\n") as fh:
        for s in stimuli:
            fh.write(f"{int(s.wnid[1:])}.{s.number:06d},{s.name}.JPEG\n")


def write_demo_dataset(
    out_dir: str | os.PathLike,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    n_train_categories: int = 10,
    images_per_category: int = 8,
    n_test_categories: int = 6,
    n_test_repeats: int = 5,
    n_imagery_repeats: int = 2,
    n_voxels: int = 500,
    snr: float = 0.5,
    drift: float = 0.5,
    imagery_gain: float = 0.5,
    image_size: int = 256,
    encoder: str | Encoder = "effnet-lite0",
    overwrite: bool = False,
    progress: bool = True,
) -> DemoDatasetInfo:
    """Write a GOD-layout dataset from packaged photos and a simulated brain.

    The folder holds ``Subject1.h5`` ... ``SubjectN.h5`` (BData; same keys as the
    GOD release), ``training/`` and ``test/`` JPEG folders, the header-less id
    files ``imageID_training.csv`` / ``imageID_test.csv`` and a provenance file
    ``demo_dataset.json``.  The encoding model is described in the module
    docstring and in ``docs/demo-dataset.md``.

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder; created if missing, must be empty unless ``overwrite``.
    n_subjects : int, default 1
        Subjects (each with its own random voxel model and noise; same stimuli).
    seed : int, default 0
        Seed of every random choice (augmentation, design, voxel model, noise).
    n_train_categories : int, default 10
        Training categories (disjoint from the test categories).
    images_per_category : int, default 8
        Training images per category (GOD: 8); also the number of training runs.
    n_test_categories : int, default 6
        Test categories, one image each (GOD: 50).
    n_test_repeats : int, default 5
        Presentations of each test image, one per run (GOD: 35).
    n_imagery_repeats : int, default 2
        Imagery trials per test category, one per run (GOD: 10); 0 for none.
    n_voxels : int, default 500
        Voxels per subject, split over V1..PPA by :data:`ROI_FRACTIONS`.
    snr : float, default 0.5
        Single-trial signal-to-noise variance ratio of every voxel.
    drift : float, default 0.5
        Standard deviation of the per-run voxel offsets, in signal units.
    imagery_gain : float, default 0.5
        Scale of the high-level signal in imagery trials.
    image_size : int, default 256
        Longer side of the stimulus images in pixels.
    encoder : str or Encoder, default "effnet-lite0"
        Model whose pooled features drive V4/LOC/FFA/PPA (a registry name or an
        instance from :func:`fmri2image.features.get_encoder`).
    overwrite : bool, default False
        Replace the demo files in a non-empty ``out_dir`` (other files are kept).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    DemoDatasetInfo

    Raises
    ------
    ConfigError
        Bad sizes, more categories than the packaged photos allow, or a non-empty
        ``out_dir`` without ``overwrite``.
    """
    t0 = time.perf_counter()
    n_subjects = _check_int("n_subjects", n_subjects, 1, 100)
    seed = _check_int("seed", seed, 0)
    n_train_categories = _check_int("n_train_categories", n_train_categories, 2)
    images_per_category = _check_int("images_per_category", images_per_category, 1, 500)
    n_test_categories = _check_int("n_test_categories", n_test_categories, 2)
    n_test_repeats = _check_int("n_test_repeats", n_test_repeats, 1, 1000)
    n_imagery_repeats = _check_int("n_imagery_repeats", n_imagery_repeats, 0, 1000)
    n_voxels = _check_int("n_voxels", n_voxels, len(ROI_FRACTIONS) * 2, 100_000)
    image_size = _check_int("image_size", image_size, 32, 2048)
    snr = _check_float("snr", snr, positive=True)
    drift = _check_float("drift", drift, positive=False)
    imagery_gain = _check_float("imagery_gain", imagery_gain, positive=False)
    train_cats, test_cats = _select_categories(n_train_categories, n_test_categories)
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    from tqdm.auto import tqdm

    from fmri2image import __version__
    from fmri2image._io import atomic_write, save_json
    from fmri2image.data.bdata import BDataBuilder
    from fmri2image.imagenet import wnid_name

    seeds = np.random.SeedSequence(seed).spawn(2 + n_subjects)
    stim_rng, design_rng = np.random.default_rng(seeds[0]), np.random.default_rng(seeds[1])

    # Sort by stimulus id within each split: the id files' row order.
    stimuli = _make_stimuli(train_cats, test_cats, images_per_category, image_size, stim_rng)
    stimuli.sort(key=lambda s: (s.split != "training", s.wnid, s.number))
    train_stim = [s for s in stimuli if s.split == "training"]
    test_stim = [s for s in stimuli if s.split == "test"]
    for split, group in (("training", train_stim), ("test", test_stim)):
        folder = out / split
        folder.mkdir(exist_ok=True)
        for s in group:
            with atomic_write(folder / f"{s.name}.JPEG", "wb") as fh:
                fh.write(s.jpeg)
    _write_id_file(out / "imageID_training.csv", train_stim)
    _write_id_file(out / "imageID_test.csv", test_stim)

    # Everything downstream sees the decoded JPEGs, exactly as a user's loader does.
    images = [_decode(s.jpeg) for s in stimuli]
    if isinstance(encoder, str):
        from fmri2image.features import get_encoder

        encoder_name, enc = encoder, get_encoder(encoder)
    else:
        encoder_name, enc = encoder.name, encoder
    feats = _encoder_features(enc, images, progress)
    low_maps = _low_level_maps(images)
    train_rows = np.array([s.split == "training" for s in stimuli])

    design = _design(stimuli, images_per_category, n_test_repeats, n_imagery_repeats, design_rng)
    n_samples = len(design.run)
    sizes = _roi_sizes(n_voxels)
    roi_index = np.repeat(np.arange(len(sizes)), list(sizes.values()))
    roi_names = list(sizes)

    stim_ids = np.array([s.stimulus_id for s in stimuli])
    train_index = {s.name: i + 1 for i, s in enumerate(train_stim)}
    test_index = {s.name: i + 1 for i, s in enumerate(test_stim)}
    train_cat_index = {w: i + 1 for i, w in enumerate(sorted(c.wnid for c in train_cats))}
    test_cat_index = {w: i + 1 for i, w in enumerate(sorted(c.wnid for c in test_cats))}
    per_sample_id = np.empty(n_samples)
    image_index = np.empty(n_samples)
    category_index = np.empty(n_samples)
    for t, (dt, row) in enumerate(zip(design.data_type, design.stim_row)):
        s = stimuli[row]
        if dt == 1:
            per_sample_id[t], image_index[t] = stim_ids[row], train_index[s.name]
            category_index[t] = train_cat_index[s.wnid]
        elif dt == 2:
            per_sample_id[t], image_index[t] = stim_ids[row], test_index[s.name]
            category_index[t] = test_cat_index[s.wnid]
        else:
            per_sample_id[t], image_index[t] = float(int(s.wnid[1:])), np.nan
            category_index[t] = test_cat_index[s.wnid]

    subject_files = []
    for subj in tqdm(
        range(1, n_subjects + 1), desc="simulate subjects", disable=not progress or None
    ):
        rng = np.random.default_rng(seeds[1 + subj])
        u, high = _noise_free_responses(low_maps, feats, train_rows, sizes, rng)
        signal = np.where(
            (design.data_type == 3)[:, None],
            imagery_gain * high[design.stim_row],
            u[design.stim_row],
        )
        run_offsets = rng.normal(0.0, drift, (int(design.run.max()), n_voxels))
        noise = rng.normal(0.0, np.sqrt(1.0 / snr), (n_samples, n_voxels))
        baseline = rng.uniform(500.0, 1500.0, n_voxels)
        gain = rng.uniform(5.0, 20.0, n_voxels)
        voxels = baseline + gain * (signal + run_offsets[design.run - 1] + noise)
        xyz = _voxel_coordinates(sizes, rng)

        b = BDataBuilder()
        b.add(voxels, "VoxelData")
        b.add_metadata("VoxelData", np.ones(n_voxels), "1 = voxel data", where="VoxelData")
        for k, roi in enumerate(roi_names):
            member = np.where(roi_index == k, 1.0, np.nan)
            b.add_metadata(f"ROI_{roi}", member, f"1 = ROI {roi} voxel", where="VoxelData")
        for key, members in (("LVC", _LOW_ROIS), ("HVC", _HIGH_ROIS), ("VC", tuple(roi_names))):
            idx = [roi_names.index(r) for r in members]
            member = np.where(np.isin(roi_index, idx), 1.0, np.nan)
            b.add_metadata(
                f"ROI_{key}",
                member,
                f"1 = ROI {key} voxel ({' + '.join(members)})",
                where="VoxelData",
            )
        for axis, col in zip("xyz", xyz.T):
            b.add_metadata(f"voxel_{axis}", col, f"Voxel {axis} coordinate (mm)", where="VoxelData")
        columns = (
            ("DataType", design.data_type, "1 = training, 2 = test, 3 = imagery"),
            ("Run", design.run, "Run number (unique over the file)"),
            ("Block", design.block, "Trial position within the run (1-based)"),
            (
                "stimulus_id",
                per_sample_id,
                "ImageNet stimulus id (category.image; imagery: category)",
            ),
            ("image_index", image_index, "1-based row in imageID_<split>.csv (NaN for imagery)"),
            ("category_index", category_index, "1-based category index within the split"),
        )
        for key, values, desc in columns:
            b.add(np.asarray(values, dtype=np.float64), key)
            b.add_metadata(key, np.ones(1), f"1 = {key}: {desc}", where=key)
        path = out / f"Subject{subj}.h5"
        b.write(path, header={"fmri2image_demo": f"seed={seed} subject={subj}"})
        subject_files.append(path)

    roi_sizes = {f"ROI_{k}": v for k, v in sizes.items()}
    roi_sizes["ROI_LVC"] = sum(sizes[r] for r in _LOW_ROIS)
    roi_sizes["ROI_HVC"] = sum(sizes[r] for r in _HIGH_ROIS)
    roi_sizes["ROI_VC"] = n_voxels
    counts = {
        "training": int((design.data_type == 1).sum()),
        "test": int((design.data_type == 2).sum()),
        "imagery": int((design.data_type == 3).sum()),
        "total": n_samples,
    }
    manifest = out / "demo_dataset.json"
    info_kwargs: dict[str, Any] = dict(
        root=out,
        subject_files=tuple(subject_files),
        training_dir=out / "training",
        test_dir=out / "test",
        training_id_file=out / "imageID_training.csv",
        test_id_file=out / "imageID_test.csv",
        manifest=manifest,
        train_wnids=tuple(sorted(c.wnid for c in train_cats)),
        test_wnids=tuple(sorted(c.wnid for c in test_cats)),
        n_train_images=len(train_stim),
        n_test_images=len(test_stim),
        n_samples=counts,
        n_voxels=n_voxels,
        roi_sizes=roi_sizes,
        snr=snr,
        drift=drift,
        imagery_gain=imagery_gain,
        seed=seed,
        encoder=encoder_name,
    )
    save_json(
        manifest,
        {
            "description": "fmri2image demo dataset: packaged photographs, simulated fMRI "
            "(see docs/demo-dataset.md)",
            "fmri2image_version": __version__,
            "parameters": {
                "n_subjects": n_subjects,
                "seed": seed,
                "n_train_categories": n_train_categories,
                "images_per_category": images_per_category,
                "n_test_categories": n_test_categories,
                "n_test_repeats": n_test_repeats,
                "n_imagery_repeats": n_imagery_repeats,
                "n_voxels": n_voxels,
                "snr": snr,
                "drift": drift,
                "imagery_gain": imagery_gain,
                "image_size": image_size,
                "encoder": encoder_name,
            },
            "categories": [
                {
                    "wnid": c.wnid,
                    "name": wnid_name(c.wnid),
                    "split": split,
                    "photo": f"{c.package}:{'/'.join(_PACKAGE_DATA_DIRS[c.package])}/{c.file}",
                    "box": list(c.box),
                }
                for split, group in (("training", train_cats), ("test", test_cats))
                for c in group
            ],
            "roi_sizes": roi_sizes,
            "n_samples": counts,
        },
    )
    n_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info = DemoDatasetInfo(**info_kwargs, n_bytes=n_bytes, seconds=time.perf_counter() - t0)
    logger.debug("wrote demo dataset to %s in %.1f s", out, info.seconds)
    return info
