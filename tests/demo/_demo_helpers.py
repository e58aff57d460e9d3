"""Helpers of the demo-dataset tests: a tiny encoder and fake Debian photo folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmri2image.demo import CATALOGUE, PIP_PACKAGES
from fmri2image.features.base import Encoder, EncoderSpec

#: Size of a fake photo whose catalogue region is the whole photo.
WHOLE_PHOTO_SIZE = (320, 240)


class _Resize:
    """Picklable preprocessing: resize to size x size, scale to [-1, 1], (3, H, W)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image):
        import torch
        from PIL import Image

        arr = np.asarray(image.resize((self.size, self.size), Image.Resampling.BILINEAR))
        arr = arr.astype(np.float32) / 127.5 - 1.0
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class TinyEncoder(Encoder):
    """A seeded one-layer conv net (ReLU, average pool): cheap, deterministic features.

    Stands in for EfficientNet-Lite0 as the encoder that drives the simulated brain,
    so property tests need no pretrained weights and take seconds.
    """

    def __init__(self, dim: int = 24, size: int = 32, seed: int = 0) -> None:
        import torch

        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, dim, 5, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.copy_(torch.randn(dim, generator=g) * 0.1)
        self.conv.eval()
        self.spec = EncoderSpec(
            name="tiny-demo",
            weights=f"random seed {seed}",
            layer="relu+avgpool",
            dim=dim,
            image_size=size,
            preprocessing=f"resize {size}x{size}, [-1, 1]",
            license="none",
        )
        self._transform = _Resize(size)

    @property
    def preprocess(self):
        return self._transform

    def embed(self, batch):
        import torch

        with torch.no_grad():
            return torch.relu(self.conv(batch)).mean(dim=(2, 3))


def write_fake_debian_photos(root: Path) -> dict[str, list[str]]:
    """Random-texture stand-ins for every Debian photo of the catalogue.

    Each file is big enough for every region cut from it, and its texture is seeded
    by its name, so categories differ.

    Returns
    -------
    dict
        ``photo_roots`` for :func:`fmri2image.demo.write_demo_dataset`: every Debian
        package -> its fake folder (pip packages are found in their installs).
    """
    from PIL import Image

    sizes: dict[tuple[str, str], tuple[int, int]] = {}
    for cat in CATALOGUE:
        for r in cat.regions:
            if r.package in PIP_PACKAGES:
                continue
            w, h = WHOLE_PHOTO_SIZE if r.box is None else (r.box[2], r.box[3])
            old = sizes.get((r.package, r.file), (0, 0))
            sizes[(r.package, r.file)] = (max(old[0], w), max(old[1], h))
    roots: dict[str, list[str]] = {}
    for (package, file), (w, h) in sorted(sizes.items()):
        path = root / package / file
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(sum(map(ord, file)) + 1000 * len(file))
        base = rng.integers(0, 255, size=(6, 6, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        noise = rng.integers(-25, 25, size=(h, w, 3))
        arr = np.clip(np.asarray(img).astype(int) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(path, quality=90)
        roots[package] = [str(root / package)]
    return roots
