"""embed_images: paths and PIL images, batching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fmri2image.errors import ConfigError, DataFormatError, MissingImageError
from fmri2image.features import Encoder, EncoderSpec, embed_images
from fmri2image.features.encoders._common import ImageTransform


class MeanColour(Encoder):
    """Tiny deterministic encoder: embedding = per-channel mean of the 8x8 input."""

    def __init__(self) -> None:
        self.spec = EncoderSpec("mean-colour", "none", "mean", 3, 8, "resize 8x8", "CC0")
        self._t = ImageTransform(resize=(8, 8), crop=None, scale=1.0, mean=(0, 0, 0), std=(1, 1, 1))
        self.batches: list[int] = []

    def preprocess(self, image):
        return self._t(image)

    def embed(self, batch):
        self.batches.append(batch.shape[0])
        return batch.mean(dim=(2, 3)).to(torch.float32)


def test_embeds_paths_and_images_in_order_with_batches(tmp_path):
    colours = [(10, 20, 30), (200, 100, 0), (0, 0, 255), (7, 7, 7), (90, 80, 70)]
    images = []
    for i, c in enumerate(colours):
        img = Image.new("RGB", (20 + i, 11), c)
        if i % 2:
            path = tmp_path / f"im{i}.png"
            img.save(path)
            images.append(path if i == 1 else str(path))
        else:
            images.append(img if i else img.convert("RGBA"))
    enc = MeanColour()
    out = embed_images(enc, images, batch_size=2, progress=False)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    np.testing.assert_allclose(out, np.array(colours, dtype=np.float32), atol=1e-4)
    assert enc.batches == [2, 2, 1]


def test_empty_input_gives_empty_matrix():
    assert embed_images(MeanColour(), [], progress=False).shape == (0, 3)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(MissingImageError, match=r"nope\.jpg"):
        embed_images(MeanColour(), [tmp_path / "nope.jpg"], progress=False)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match=r"bad\.jpg"):
        embed_images(MeanColour(), [bad], progress=False)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="batch_size"):
        embed_images(MeanColour(), [], batch_size=0)
    with pytest.raises(ConfigError, match="PIL image or a file path"):
        embed_images(MeanColour(), [np.zeros((4, 4, 3))], progress=False)
