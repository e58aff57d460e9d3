"""GOD-layout datasets with a planted brain, for end-to-end pipeline tests.

Images of a category share a random colour layout (a 4 x 4 palette, upsampled)
and differ by jitter, shifts and pixel noise; :class:`PoolEncoder` embeds an image
as its 4 x 4 average-pooled RGB (48 non-negative dimensions, like pooled CNN
features, with category structure).  The "brain" reads a random linear map of the
embedding of each decoded stimulus JPEG, plus per-trial noise, so a correct ridge
map can identify held-out images.  Written with the data layer's GOD-layout
writer, so every loader sees the real file formats.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmri2image.features.base import Encoder, EncoderSpec


class PoolToTensor:
    """Picklable preprocessing: 16 x 16 RGB in [0, 1], shape (3, 16, 16)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, image):
        import torch
        from PIL import Image

        arr = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
        return torch.from_numpy(arr / 255.0).permute(2, 0, 1).contiguous()


class PoolEncoder(Encoder):
    """4 x 4 average pooling of the RGB image: a 48-d deterministic 'network'."""

    def __init__(self, name: str = "pool48", *, prototypes: bool = True) -> None:
        self.spec = EncoderSpec(
            name=name,
            weights="none (average pooling)",
            layer="avgpool 4x4",
            dim=48,
            image_size=16,
            preprocessing="resize 16x16 (bilinear), /255",
            license="none",
        )
        self._transform = PoolToTensor()
        self._prototypes = prototypes

    @property
    def preprocess(self):
        return self._transform

    def embed(self, batch):
        import torch

        return torch.nn.functional.avg_pool2d(batch, 4).flatten(1).float()

    @property
    def supports_pixels(self) -> bool:  # differentiable, so `invert` works through it
        return True

    def embed_pixels(self, pixels):
        import torch

        x = torch.nn.functional.interpolate(pixels.float(), size=(16, 16), mode="bilinear",
                                            antialias=True, align_corners=False)  # fmt: skip
        return self.embed(x)

    def class_prototypes(self):
        if not self._prototypes:
            return None
        from fmri2image.imagenet import imagenet1k_wnids

        rng = np.random.default_rng(7)
        return rng.random((1000, 48)).astype(np.float32), list(imagenet1k_wnids())


@dataclass(frozen=True)
class PlantedGOD:
    root: Path
    train_wnids: tuple[str, ...]
    test_wnids: tuple[str, ...]
    n_voxels: int
    palettes: dict[str, np.ndarray]

    def write_database(self, folder: Path, *, per_category: int = 3, seed: int = 1) -> Path:
        """An ImageNet-style folder (``<wnid>/<wnid>_<n>.JPEG``) of other images of every
        category, training and test alike, as ImageNet holds GOD's categories."""
        rng = np.random.default_rng(seed)
        for w, palette in sorted(self.palettes.items()):
            (folder / w).mkdir(parents=True, exist_ok=True)
            for i in range(per_category):
                (folder / w / f"{w}_{i + 1}.JPEG").write_bytes(_category_image(palette, rng))
        return folder


def _category_image(palette: np.ndarray, rng: np.random.Generator) -> bytes:
    from PIL import Image

    jitter = np.clip(palette + rng.normal(0, 18, palette.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(jitter).resize((40, 40), Image.Resampling.BICUBIC)
    dx, dy = rng.integers(0, 9, 2)
    arr = np.asarray(img.crop((dx, dy, dx + 32, dy + 32)), dtype=np.float64)
    arr = np.clip(arr + rng.normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def write_planted_god(
    root: Path,
    *,
    n_train_categories: int = 30,
    images_per_category: int = 8,
    n_test_categories: int = 15,
    test_from_training_categories: bool = False,
    n_test_repeats: int = 4,
    n_voxels: int = 120,
    snr: float = 0.5,
    seed: int = 0,
    planted: bool = True,
) -> PlantedGOD:
    """Write ``root/Subject1.h5``, ``training/``, ``test/`` and the id files.

    With ``test_from_training_categories`` the test images are further images of
    the first ``n_test_categories`` training categories (else, as in GOD, of other
    categories).  ``planted=False`` writes pure-noise voxels (no signal).
    """
    from fmri2image.data.ids import image_name_to_stimulus_id
    from fmri2image.data.layout import write_god_subject, write_stimulus_set
    from fmri2image.imagenet import imagenet1k_wnids

    rng = np.random.default_rng(seed)
    pool = list(imagenet1k_wnids())
    picks = rng.choice(len(pool), n_train_categories + n_test_categories, replace=False)
    wnids = [pool[i] for i in sorted(picks)]
    train_w = wnids[:n_train_categories]
    test_w = (
        train_w[:n_test_categories] if test_from_training_categories else wnids[n_train_categories:]
    )
    palettes = {w: rng.integers(20, 235, (4, 4, 3)).astype(np.float64) for w in wnids}
    numbers = iter(rng.permutation(np.arange(1000, 90000)))
    train = {
        f"{w}_{next(numbers)}": _category_image(palettes[w], rng)
        for w in train_w
        for _ in range(images_per_category)
    }
    test = {f"{w}_{next(numbers)}": _category_image(palettes[w], rng) for w in test_w}
    write_stimulus_set(root, "training", train)
    write_stimulus_set(root, "test", test)

    from PIL import Image

    enc = PoolEncoder()
    names = list(train) + list(test)
    batch = np.stack(
        [
            enc.preprocess(Image.open(io.BytesIO(b)).convert("RGB")).numpy()
            for b in [*train.values(), *test.values()]
        ]
    )
    import torch

    feats = enc.embed(torch.from_numpy(batch)).numpy().astype(np.float64)
    n_train = len(train)
    mu, sd = feats[:n_train].mean(0), feats[:n_train].std(0) + 1e-9
    A = rng.standard_normal((feats.shape[1], n_voxels))
    signal = ((feats - mu) / sd) @ A
    signal /= signal[:n_train].std(0)
    if not planted:
        signal = np.zeros_like(signal)

    # GOD design: training run r shows the r-th image of every category; each test
    # repeat is one run showing every test image once.
    by_cat: dict[str, list[int]] = {}
    for i, name in enumerate(list(train)):
        by_cat.setdefault(name.split("_")[0], []).append(i)
    rows, runs, dtypes = [], [], []
    for r in range(images_per_category):
        order = rng.permutation([by_cat[w][r] for w in train_w])
        rows += order.tolist()
        runs += [r + 1] * len(order)
        dtypes += [1] * len(order)
    for r in range(n_test_repeats):
        order = rng.permutation(np.arange(n_train, len(names)))
        rows += order.tolist()
        runs += [images_per_category + r + 1] * len(order)
        dtypes += [2] * len(order)
    rows_a = np.asarray(rows)
    noise = rng.normal(0, np.sqrt(1 / snr), (len(rows), n_voxels))
    voxels = 1000 + 10 * (signal[rows_a] + noise)
    half = n_voxels // 2
    rois = {"V1": np.arange(n_voxels) < half, "LOC": np.arange(n_voxels) >= half}
    write_god_subject(
        root / "Subject1.h5",
        voxels,
        data_type=np.asarray(dtypes),
        run=np.asarray(runs),
        stimulus_id=np.array([image_name_to_stimulus_id(names[i]) for i in rows]),
        rois=rois,
    )
    return PlantedGOD(root, tuple(train_w), tuple(test_w), n_voxels, palettes)
