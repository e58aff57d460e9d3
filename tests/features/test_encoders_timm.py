"""timm and open_clip encoders with tiny random-weight models saved as safetensors."""

from __future__ import annotations

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


def test_open_clip_text_embeddings_equal_encode_text(tiny_open_clip):
    """The text tower is rebuilt from the same checkpoint on first use; its embeddings
    are model.encode_text of open_clip's own tokenizer (the packaged BPE)."""
    import open_clip

    model, path = tiny_open_clip
    enc = get_encoder(f"open_clip:fmri2image-tiny-clip:{path}")
    assert getattr(enc.model, "transformer", None) is None  # images only, until asked
    assert enc.has_text_tower and enc.spec.text_tower and not enc.spec.classifier_head
    prompts = ["a photo of a tabby cat", "a photo of a great white shark"]
    got = enc.embed_text(prompts)
    tokenizer = open_clip.get_tokenizer("fmri2image-tiny-clip")
    with torch.inference_mode():
        expected = model.encode_text(tokenizer(prompts)).numpy()
    assert got.shape == (2, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc.embed_text(prompts, batch_size=1), got, atol=1e-5)
