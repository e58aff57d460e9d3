"""Real photographs written as a ground-truth folder and a reconstruction folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def _photos():
    from skimage import data
    from sklearn.datasets import load_sample_image

    out = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    for name in ("china", "flower"):
        out[name] = Image.fromarray(load_sample_image(f"{name}.jpg"))
    return out


@pytest.fixture(scope="session")
def photo_folders(tmp_path_factory):
    """``(gt_dir, recon_dir)``: 8 real photos and degraded versions of them (blur + noise,
    another size and format), matched by stem."""
    root = tmp_path_factory.mktemp("photos")
    gt, recon = root / "gt", root / "recon"
    gt.mkdir()
    recon.mkdir()
    rng = np.random.default_rng(0)
    for name, im in _photos().items():
        im.save(gt / f"{name}.JPEG", quality=95)
        small = im.resize((256, 256)).filter(ImageFilter.GaussianBlur(3))
        noisy = np.clip(np.asarray(small, float) + rng.normal(0, 20, (256, 256, 3)), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(recon / f"{name}.png")
    return gt, recon


@pytest.fixture(scope="session")
def photo_pairs(photo_folders):
    from fmri2image.evaluation import pair_images

    gt, recon = photo_folders
    return pair_images(recon, gt)
