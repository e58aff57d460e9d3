"""Tiny but real torch encoders and image writers shared by the feature tests.

The fake encoders are small seeded conv nets with their own picklable preprocessing,
so the engine's worker / main-process split is exercised exactly as with a
pretrained model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmri2image.features.base import Encoder, EncoderSpec

#: The encoder spec of stores written without a model (store tests).
TOY_SPEC = {
    "name": "toy",
    "weights": "w",
    "layer": "l",
    "dim": 3,
    "image_size": 8,
    "preprocessing": "p",
    "license": "none",
    "extra": {},
}


class ResizeToTensor:
    """Picklable preprocessing: resize to size x size, scale to [-1, 1], (3, H, W)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.size == self.size

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, image):
        import torch
        from PIL import Image

        img = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class TinyConvEncoder(Encoder):
    """A two-layer conv net with seeded weights; records the batches it embeds."""

    def __init__(self, name: str = "tiny-a", size: int = 24, dim: int = 8, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, dim, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.copy_(torch.randn(dim, generator=g) * 0.1)
        self.conv.eval()
        self.spec = EncoderSpec(
            name=name,
            weights=f"random seed {seed}",
            layer="relu+avgpool",
            dim=dim,
            image_size=size,
            preprocessing=f"resize {size}x{size}, [-1, 1]",
            license="none",
        )
        self._transform = ResizeToTensor(size)
        self.calls: list[int] = []
        self.on_embed = None  # optional hook(batch) for structural tests

    @property
    def preprocess(self):  # same pattern as the real encoders: a picklable object
        return self._transform

    def embed(self, batch):
        import torch

        if self.on_embed is not None:
            self.on_embed(batch)
        self.calls.append(int(batch.shape[0]))
        return torch.relu(self.conv(batch)).mean(dim=(2, 3))

    def __getstate__(self):  # Ray ships encoders to actors; hooks stay behind
        state = dict(self.__dict__)
        state["on_embed"] = None
        return state

    def class_prototypes(self):
        rng = np.random.default_rng(1)
        return rng.standard_normal((5, self.dim)).astype(np.float32), [
            "n01440764",
            "n01443537",
            "n01484850",
            "n01491361",
            "n01494475",
        ]


def write_images(folder: Path, n: int, *, size=(60, 45), seed=0, prefix="img") -> list[Path]:
    """``n`` random-texture JPEGs (deterministic) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = rng.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BICUBIC))
        noise = rng.integers(-20, 20, size=arr.shape)
        arr = np.clip(arr.astype(int) + noise, 0, 255).astype(np.uint8)
        p = folder / f"{prefix}_{i:03d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        out.append(p)
    return out


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def shard_bytes(store_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store_dir.glob("shard-*.npy"))}
