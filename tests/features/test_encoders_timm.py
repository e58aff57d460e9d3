"""timm and open_clip encoders with tiny random-weight models saved as safetensors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fmri2image.errors import ConfigError, ModelUnavailableError
from fmri2image.features import embed_images, encoder_spec, get_encoder


def gray(value: int, size=(300, 200)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


# ---------------------------------------------------------------------------------- timm


@pytest.fixture(scope="module")
def timm_vit(tmp_path_factory):
    """timm's ``test_vit`` (64-d, 160 px, mean/std 0.5) with random weights."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False).eval()
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def test_timm_local_file_pooled_features_and_data_config(timm_vit, chelsea):
    model, path = timm_vit
    enc = get_encoder(f"timm:test_vit:{path}")
    assert enc.dim == model.num_features == 64
    spec = encoder_spec(f"timm:test_vit:{path}")  # built on the meta device
    assert (spec.dim, spec.image_size) == (64, 160)
    x = enc.preprocess(gray(102))
    assert x.shape == (3, 160, 160)
    np.testing.assert_allclose(x.numpy(), (102 / 255 - 0.5) / 0.5, atol=1e-6)  # cfg mean/std
    emb = embed_images(enc, [chelsea, gray(3).convert("L")], progress=False)
    batch = torch.stack([enc.preprocess(chelsea), enc.preprocess(gray(3))])
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(batch), pre_logits=True)
    np.testing.assert_allclose(emb, expected.numpy(), rtol=1e-4, atol=1e-5)
    weights, wnids = enc.class_prototypes()
    np.testing.assert_array_equal(weights, model.head.weight.detach().numpy())
    assert len(wnids) == 1000
    assert pickle.loads(pickle.dumps(enc.preprocess))(chelsea).shape == (3, 160, 160)


def test_timm_hub_cache_path(timm_vit, tmp_path, write_hf_cache):
    _, path = timm_vit
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(path.read_bytes())
    write_hf_cache(tmp_path / "cache", "timm/test_vit.r160_in1k", src)
    enc = get_encoder("timm:test_vit", cache_dir=str(tmp_path / "cache"))
    assert enc.dim == 64 and "timm/test_vit.r160_in1k" in enc.spec.weights


def test_timm_errors(tmp_path):
    pytest.importorskip("timm")
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download timm/test_vit"):
        get_encoder("timm:test_vit", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="not a timm model"):
        get_encoder("timm:not_a_model_xyz")
    with pytest.raises(ConfigError, match="safetensors"):
        get_encoder(f"timm:test_vit:{tmp_path / 'w.pth'}")


# ----------------------------------------------------------------------------- open_clip


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open-clip")
    config = {
        "embed_dim": 24,
        "vision_cfg": {
            "image_size": 64,
            "layers": 1,
            "width": 32,
            "patch_size": 16,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1},
    }
    (folder / "fmri2image-tiny-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / "fmri2image-tiny-clip.json")
    torch.manual_seed(0)
    model = open_clip.create_model("fmri2image-tiny-clip").eval()
    path = folder / "tiny.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


def test_open_clip_local_checkpoint(tiny_open_clip, chelsea):
    from fmri2image.features.encoders._common import CLIP_MEAN, CLIP_STD

    model, path = tiny_open_clip
    enc = get_encoder(f"open_clip:fmri2image-tiny-clip:{path}")
    assert enc.dim == 24 and enc.spec.image_size == 64
    x = enc.preprocess(gray(128))
    expected_px = (128 / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected_px, atol=1e-5)
    batch = enc.preprocess(chelsea)[None]
    with torch.inference_mode():
        expected = model.encode_image(batch)
    torch.testing.assert_close(enc.embed(batch), expected, rtol=1e-4, atol=1e-5)
    assert pickle.loads(pickle.dumps(enc.preprocess))(chelsea).shape == (3, 64, 64)


def test_open_clip_errors(tmp_path):
    pytest.importorskip("open_clip")
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download"):
        get_encoder("open_clip:ViT-B-32:laion2b_s34b_b79k", cache_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="names no weights"):
        get_encoder("open_clip:ViT-B-32")
    with pytest.raises(ConfigError, match="safetensors"):
        get_encoder(f"open_clip:ViT-B-32:{tmp_path / 'w.pt'}")
