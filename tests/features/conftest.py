"""Fixtures for the encoder tests: real photos, tiny models saved like real ones.

Tiny models are built from configs with random weights, written with
``save_pretrained(..., safe_serialization=True)`` (or as a torch hub checkpoint),
and then loaded through exactly the code path a user's hub id takes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Fake 40-hex commit: HF cache snapshots are keyed by commit hash.
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    """scikit-image's photo of Chelsea the cat (300 x 451 RGB)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def odd_images() -> list[Image.Image]:
    """Random RGB/L/RGBA images of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    shapes = [(97, 131, 3), (240, 180, 3), (64, 64, 4), (150, 90)]
    modes = ["RGB", "RGB", "RGBA", "L"]
    return [
        Image.fromarray(rng.integers(0, 256, size=s, dtype=np.uint8), mode=m)
        for s, m in zip(shapes, modes)
    ]


def _write_hf_cache(cache_dir: Path, repo_id: str, source_dir: Path) -> Path:
    """Lay ``source_dir`` out as the hub cache entry of ``repo_id`` (main -> FAKE_COMMIT)."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in source_dir.iterdir():
        shutil.copy2(f, snapshot / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return snapshot


@pytest.fixture(scope="session")
def write_hf_cache() -> Callable[[Path, str, Path], Path]:
    return _write_hf_cache


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> Path:
    """ViT with the real ViT-B width (768) but one layer, plus a ViT processor (mean/std 0.5)."""
    pytest.importorskip("transformers")
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-vit")
    config = ViTConfig(
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=224,
        patch_size=16,
    )
    ViTModel(config).save_pretrained(path, safe_serialization=True)
    ViTImageProcessor(
        size={"height": 224, "width": 224}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """Full CLIPModel (text + vision, 512-d projection like ViT-B/16) + CLIP processor."""
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={
            **small,
            "num_attention_heads": 2,
            "vocab_size": 99,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**small, "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
        projection_dim=512,
    )
    CLIPModel(config).save_pretrained(path, safe_serialization=True)
    CLIPImageProcessor().save_pretrained(path)  # library defaults = OpenAI CLIP's
    return path
