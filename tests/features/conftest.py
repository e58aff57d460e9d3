"""Fixtures for the encoder tests: real photos, tiny models saved like real ones.

Tiny models are built from configs with random weights, written with
``save_pretrained(..., safe_serialization=True)`` (or as a torch hub checkpoint),
and then loaded through exactly the code path a user's hub id takes.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _tiny_models import (
    CLIP_ID,
    VIT_ID,
    save_tiny_clip,
    save_tiny_open_clip,
    write_hf_cache,
)
from PIL import Image


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


@pytest.fixture(scope="session", name="write_hf_cache")
def write_hf_cache_fixture() -> Callable[[Path, str, Path], Path]:
    return write_hf_cache


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
    """Full CLIPModel (text + vision, 512-d projection like ViT-B/16), CLIP processor and a
    character-level CLIP tokenizer (``_tiny_models.write_clip_tokenizer``)."""
    pytest.importorskip("transformers")
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory):
    """``(model, safetensors path)`` of a tiny open_clip CLIP registered as
    ``fmri2image-tiny-clip`` (text vocabulary of the real size, for SimpleTokenizer)."""
    pytest.importorskip("open_clip")
    return save_tiny_open_clip(tmp_path_factory.mktemp("open-clip"))


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Downloads allowed by settings, but the hub endpoint is a closed local port.

    ``HF_HUB_OFFLINE`` is removed from the environment (the libraries themselves were
    imported offline, so they still never touch the network) and ``HF_ENDPOINT``
    points at 127.0.0.1:<a port nothing listens on>, so fmri2image's probe gets
    "connection refused" at once. Yields the endpoint URL.
    """
    from fmri2image.features.encoders import _net

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    _net.clear_probe_cache()
    yield endpoint
    _net.clear_probe_cache()


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory, write_hf_cache, tiny_vit_dir, tiny_clip_dir):
    """An HF hub cache holding tiny stand-ins under the real ``vit`` / ``clip`` repo ids."""
    cache = tmp_path_factory.mktemp("hf-cache")
    write_hf_cache(cache, VIT_ID, tiny_vit_dir)
    write_hf_cache(cache, CLIP_ID, tiny_clip_dir)
    return cache


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory):
    """A TORCH_HOME whose hub cache holds a random-weight ResNet-50 under the real file name."""
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    from fmri2image.features.encoders._torchvision import checkpoint_path

    home = tmp_path_factory.mktemp("torch-home")
    torch.manual_seed(0)
    model = resnet50(weights=None)
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    path = checkpoint_path(ResNet50_Weights.IMAGENET1K_V2, folder)
    torch.save(model.state_dict(), path)
    return home, model.eval()
