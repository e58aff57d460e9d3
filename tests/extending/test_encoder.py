"""A new encoder: one class and one ``register_encoder`` call, then ``run --model``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _cli import run

from fmri2image.features import ENCODERS, Encoder, EncoderSpec, register_encoder
from fmri2image.registry import Needs


class ToPatches:
    """Picklable preprocessing: 8 x 8 RGB in [0, 1]."""

    def __call__(self, image):
        import torch
        from PIL import Image

        arr = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
        return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


class ColourHistogram(Encoder):
    """A 'network' that embeds an image as its 2 x 2 mean colours and their spread."""

    spec = EncoderSpec(
        name="toy-colour", weights="none", layer="2x2 mean and std", dim=24, image_size=8,
        preprocessing="resize 8x8, /255", license="none",
    )  # fmt: skip
    needs = Needs(weights="none: computed from the pixels")

    def __init__(self, *, device="cpu", dtype="float32", cache_dir=None, local_files_only=None):
        self.device, self.dtype = device, dtype
        self._transform = ToPatches()

    @property
    def preprocess(self):
        return self._transform

    def embed(self, batch):
        import torch

        mean = torch.nn.functional.avg_pool2d(batch, 4).flatten(1)
        std = (torch.nn.functional.avg_pool2d(batch**2, 4).flatten(1) - mean**2).clamp(min=0)
        return torch.cat([mean, std.sqrt()], dim=1).float()


@pytest.fixture
def toy_encoder():
    register_encoder("toy-colour", ColourHistogram)
    yield "toy-colour"
    ENCODERS.unregister("toy-colour")


def test_a_registered_encoder_runs_end_to_end(god, toy_encoder, tmp_path):
    root, db = god
    out = tmp_path / "out"
    assert run("run", "--data", str(root), "--model", toy_encoder, "--cv", "3",
               "--database", str(db), "--generators", "retrieve", "--metrics", "pixcorr",
               "ssim", "--out", str(out)) == 0  # fmt: skip
    (row,) = json.loads((out / "summary.json").read_text())["encoders"]
    assert row["encoder"] == "toy-colour" and row["dim"] == 24
    assert 0.0 <= row["pairwise_id"] <= 1.0 and row["pairwise_id_chance"] == 0.5
    # its features of the image database are what `retrieve` searched
    pictures = out / "images" / "s1-ROI_VC" / "toy-colour" / "ridge" / "retrieve" / "predicted"
    assert len(list(pictures.glob("*.png"))) == 4
    rec = json.loads(next(pictures.glob("*.json")).read_text())
    assert "imagenet" in rec["extra"]["path"]
    assert "toy-colour" in (out / "report.html").read_text()
    # the registry knows what it needs, for `doctor` and `models`
    assert ENCODERS.get("toy-colour").needs.weights.startswith("none")
