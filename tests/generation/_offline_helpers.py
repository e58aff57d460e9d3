"""Helpers of the offline-generator tests (invert, retrieve): a tiny differentiable encoder."""

from __future__ import annotations

import numpy as np

from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import ImageTransform, TorchEncoder


def tiny_encoder(name: str = "tiny-conv", *, dim: int = 32, seed: int = 0, head: bool = False):
    """A seeded two-layer conv net (ReLU, global average pool) behind an ImageTransform.

    Its preprocessing is an :class:`ImageTransform` (resize 72, crop 64, ImageNet
    mean/std), so it has the differentiable pixel path; ``head=True`` adds a random
    ImageNet-1k "classifier" so it can write a prototype database.
    """
    import torch

    from fmri2image.imagenet import imagenet1k_wnids

    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, dim, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    transform = ImageTransform(resize=72, crop=64, interpolation="bilinear")
    spec = EncoderSpec(
        name=name,
        weights=f"random seed {seed}",
        layer="relu + global average pool",
        dim=dim,
        image_size=64,
        preprocessing=transform.describe(),
        license="none",
        classifier_head=head,
        text_tower=False,
    )
    protos = None
    if head:
        rng = np.random.default_rng(seed)
        protos = (rng.standard_normal((1000, dim)).astype(np.float32), list(imagenet1k_wnids()))
    return TorchEncoder(spec, model, transform, head=protos)


def photos(size: int | None = None):
    """Real photos (scikit-image / scikit-learn), optionally resized to ``size`` x ``size``."""
    from PIL import Image
    from skimage import data
    from sklearn.datasets import load_sample_images

    arrays = [data.chelsea(), data.coffee(), data.astronaut(), *load_sample_images().images]
    images = [Image.fromarray(a) for a in arrays]
    if size:
        images = [im.resize((size, size), Image.Resampling.BICUBIC) for im in images]
    return images
