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


# --------------------------------------------------------------- low-level pathway
def blob_images(n: int, size: int = 64, *, seed: int = 0):
    """``n`` RGB pictures of smooth colour blobs on a coloured ground (varied layout/colour).

    Each has a random background colour and 2-5 Gaussian blobs (centre anywhere in
    the picture, width 6-25 % of the side, random colour, opacity 0.7-1), so coarse
    layout and colour differ from picture to picture, as in the low-level content
    of natural stimuli.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    images = []
    for _ in range(n):
        canvas = np.broadcast_to(rng.uniform(0, 1, 3), (size, size, 3)).copy()
        for _ in range(int(rng.integers(2, 6))):
            cx, cy = rng.uniform(0, 1, 2)
            sigma = rng.uniform(0.06, 0.25)
            alpha = rng.uniform(0.7, 1.0) * np.exp(
                -((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)
            )
            canvas = canvas * (1 - alpha[..., None]) + rng.uniform(0, 1, 3) * alpha[..., None]
        images.append(Image.fromarray((canvas * 255).round().astype(np.uint8)))
    return images


def planted_early_visual(
    n_train: int = 200,
    n_test: int = 20,
    *,
    n_voxels: int = 300,
    snr: float = 1.0,
    side: int = 16,
    signal: bool = True,
    seed: int = 0,
):
    """A planted low-level experiment: blob pictures and "early visual" voxels.

    Voxels are a fixed random linear map of the pictures' ``side`` x ``side`` RGB pixels
    (centred on the training mean), scaled to unit signal variance over the training
    pictures, plus independent Gaussian noise of variance ``1 / snr``.  With
    ``signal=False`` the voxels are the noise alone (the floor).

    Returns
    -------
    train_images, test_images : list of PIL.Image.Image
    X_train, X_test : ndarray of shape (n, n_voxels)
    """
    from fmri2image.generation.lowlevel import square_pixels

    images = blob_images(n_train + n_test, seed=seed)
    rng = np.random.default_rng(seed + 1)
    pix = square_pixels(images, side).reshape(len(images), -1).astype(np.float64)
    W = rng.standard_normal((pix.shape[1], n_voxels))
    drive = (pix - pix[:n_train].mean(0)) @ W
    drive /= drive[:n_train].std(0)
    noise = rng.normal(0.0, np.sqrt(1.0 / snr), drive.shape)
    X = (drive if signal else 0.0) + noise
    return images[:n_train], images[n_train:], X[:n_train], X[n_train:]
