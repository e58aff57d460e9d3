"""Hugging Face encoders: tiny models saved to disk, loaded through the hub-id code path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError
from fmri2image.features import embed_images, encoder_spec, get_encoder
from fmri2image.features.encoders._common import CLIP_MEAN, CLIP_STD

pytest.importorskip("transformers")

VIT_ID = "google/vit-base-patch16-224-in21k"
CLIP_ID = "openai/clip-vit-base-patch16"


def gray(value: int, size=(320, 240)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def test_missing_hub_model_offline_raises_model_unavailable():
    with pytest.raises(ModelUnavailableError, match="huggingface-cli download org/does-not-exist"):
        get_encoder("hf:org/does-not-exist")


def test_named_vit_missing_from_empty_cache(tmp_path):
    with pytest.raises(ModelUnavailableError, match=VIT_ID):
        get_encoder("vit", cache_dir=str(tmp_path))


def test_missing_local_dir_is_reported(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        get_encoder(f"hf:{tmp_path / 'nope'}")


def test_vit_from_hub_cache_uses_cls_token_and_half_statistics(hub_cache, tiny_vit_dir, chelsea):
    from transformers import ViTModel

    enc = get_encoder("vit", cache_dir=str(hub_cache))
    assert enc.name == "vit"
    assert enc.dim == encoder_spec("vit").dim == 768
    assert enc.spec.extra["revision"] == "0123456789abcdef0123456789abcdef01234567"
    # Preprocessing: the repo's ViT processor, mean = std = 0.5, 224x224.
    x = enc.preprocess(gray(51))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x.numpy(), (51 / 255 - 0.5) / 0.5, atol=1e-6)
    # Embedding: CLS token of last_hidden_state (after the final LayerNorm).
    ref = ViTModel.from_pretrained(tiny_vit_dir, add_pooling_layer=False).eval()
    with torch.inference_mode():
        expected = ref(pixel_values=enc.preprocess(chelsea)[None]).last_hidden_state[:, 0]
    got = embed_images(enc, [chelsea], progress=False)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_hub_id_and_local_dir_give_the_same_encoder(hub_cache, tiny_vit_dir, chelsea):
    by_id = get_encoder("vit", cache_dir=str(hub_cache))
    by_dir = get_encoder(f"hf:{tiny_vit_dir}")
    assert by_dir.name == f"hf:{tiny_vit_dir}" and by_dir.dim == 768
    batch = by_id.preprocess(chelsea)[None]
    torch.testing.assert_close(by_id.embed(batch), by_dir.embed(batch))
    spec = encoder_spec(f"hf:{tiny_vit_dir}")  # config + processor only
    assert (spec.dim, spec.image_size, spec.layer) == (768, 224, by_dir.spec.layer)


def test_clip_projected_embedding_with_clip_statistics(hub_cache, tiny_clip_dir, chelsea):
    from transformers import CLIPModel

    enc = get_encoder("clip", cache_dir=str(hub_cache))
    assert enc.dim == encoder_spec("clip").dim == 512
    x = enc.preprocess(gray(128))
    assert x.shape == (3, 224, 224)
    expected_px = (128 / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected_px, atol=1e-5)
    assert "bicubic" in enc.spec.preprocessing
    # Same vector as CLIPModel.get_image_features (what CLIP compares with text).
    full = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    batch = enc.preprocess(chelsea)[None]
    with torch.inference_mode():
        ref = full.get_image_features(pixel_values=batch)
    ref = getattr(ref, "pooler_output", ref)  # transformers 5 returns a model output
    torch.testing.assert_close(enc.embed(batch), ref, rtol=1e-4, atol=1e-5)
    assert encoder_spec(f"hf:{tiny_clip_dir}").dim == 512


def test_clip_l14_loads_its_repo_and_checks_768_d(tmp_path, write_hf_cache, tiny_clip_dir):
    """``clip-l14`` (the space Stable unCLIP-small takes) goes through the hub-id path."""
    from _tiny_models import save_tiny_clip

    repo = "openai/clip-vit-large-patch14"
    cache = tmp_path / "hub"
    write_hf_cache(cache, repo, save_tiny_clip(tmp_path / "l14", projection_dim=768))
    enc = get_encoder("clip-l14", cache_dir=str(cache))
    assert enc.name == "clip-l14" and enc.dim == encoder_spec("clip-l14").dim == 768
    assert enc.has_text_tower and enc.class_prototypes() is None
    assert enc.spec.extra["revision"] is not None and repo in enc.spec.weights
    wrong = tmp_path / "hub-512"
    write_hf_cache(wrong, repo, tiny_clip_dir)  # a 512-d CLIP under the L/14 id
    with pytest.raises(DataFormatError, match="768-d"):
        get_encoder("clip-l14", cache_dir=str(wrong))


def test_hf_preprocess_pickles_without_the_model(hub_cache, chelsea):
    enc = get_encoder("clip", cache_dir=str(hub_cache))
    blob = pickle.dumps(enc.preprocess)
    assert len(blob) < 50_000
    torch.testing.assert_close(pickle.loads(blob)(chelsea), enc.preprocess(chelsea))


def test_pickled_weights_are_refused(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=32,
        patch_size=16,
    )
    model = ViTModel(cfg)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    with pytest.raises(ModelUnavailableError, match="safetensors"):
        get_encoder(f"hf:{tmp_path}")


def test_checkpoint_without_projection_is_refused(tmp_path):
    """A vision-only CLIP checkpoint would leave the projection random: refuse it."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=16,
    )
    CLIPVisionModel(cfg).save_pretrained(tmp_path, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(tmp_path)
    with pytest.raises(DataFormatError, match="visual_projection"):
        get_encoder(f"hf:{tmp_path}")


def test_named_entry_rejects_a_different_model(tmp_path, write_hf_cache):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    src = tmp_path / "src"
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        image_size=32,
        patch_size=16,
    )
    ViTModel(cfg).save_pretrained(src, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(src)
    write_hf_cache(tmp_path / "cache", VIT_ID, src)
    with pytest.raises(DataFormatError, match="768"):
        get_encoder("vit", cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("family", ["dinov2", "convnext"])
def test_other_backbones_pool_sensibly(tmp_path, family, chelsea):
    import transformers as tf

    if family == "dinov2":
        cfg = tf.Dinov2Config(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            image_size=32,
            patch_size=8,
        )
        model = tf.Dinov2Model(cfg)
        proc = tf.BitImageProcessor(
            size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}
        )
    else:
        cfg = tf.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
        model = tf.ConvNextModel(cfg)
        proc = tf.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0)
    model.save_pretrained(tmp_path, safe_serialization=True)
    proc.save_pretrained(tmp_path)
    enc = get_encoder(f"hf:{tmp_path}")
    batch = enc.preprocess(chelsea)[None]
    with torch.inference_mode():
        expected = model.eval()(pixel_values=batch).pooler_output.flatten(1)
    torch.testing.assert_close(enc.embed(batch), expected, rtol=1e-4, atol=1e-5)
    assert enc.dim == encoder_spec(f"hf:{tmp_path}").dim == expected.shape[1]


# --------------------------------------------------------------------- CLIP text tower

PROMPTS = ["a photo of a tabby cat", "a photo of a great white shark", "a photo of a hot-dog"]


def _reference_text_features(folder, prompts):
    """CLIPModel.get_text_features on the repo's own tokenizer (padding to the longest)."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tokens = AutoTokenizer.from_pretrained(folder)(prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = model.get_text_features(**tokens)
    return getattr(ref, "pooler_output", ref).numpy()  # transformers 5 returns a model output


def test_clip_text_embeddings_equal_get_text_features(hub_cache, tiny_clip_dir):
    enc = get_encoder("clip", cache_dir=str(hub_cache))  # the hub-id code path
    assert enc.has_text_tower and enc.spec.text_tower and not enc.spec.classifier_head
    assert enc._text_encode is None  # the text tower loads only when asked
    got = enc.embed_text(PROMPTS)
    assert got.dtype == np.float32 and got.shape == (3, 512)
    np.testing.assert_allclose(got, _reference_text_features(tiny_clip_dir, PROMPTS), atol=1e-5)
    # Padding is at the end and attention is causal: batching does not change a prompt.
    one_by_one = np.concatenate([enc.embed_text([p]) for p in PROMPTS])
    np.testing.assert_allclose(enc.embed_text(PROMPTS, batch_size=2), one_by_one, atol=1e-5)
    assert enc.embed_text([]).shape == (0, 512)


def test_clip_text_and_vision_share_a_non_default_projection(tmp_path, chelsea):
    """A checkpoint saved with projection_dim=24: both halves must use 24, not the
    sub-configs' stale default of 512."""
    from _tiny_models import save_tiny_clip
    from transformers import CLIPModel

    folder = save_tiny_clip(tmp_path / "clip24", projection_dim=24)
    enc = get_encoder(f"hf:{folder}")
    assert enc.dim == encoder_spec(f"hf:{folder}").dim == 24
    full = CLIPModel.from_pretrained(folder).eval()
    batch = enc.preprocess(chelsea)[None]
    with torch.inference_mode():
        ref = full.get_image_features(pixel_values=batch)
    torch.testing.assert_close(enc.embed(batch), getattr(ref, "pooler_output", ref))
    np.testing.assert_allclose(
        enc.embed_text(PROMPTS), _reference_text_features(folder, PROMPTS), atol=1e-5
    )


def test_clip_without_tokenizer_says_which_files_are_missing(tmp_path):
    from _tiny_models import save_tiny_clip

    folder = save_tiny_clip(tmp_path / "clip-no-tok", tokenizer=False)
    enc = get_encoder(f"hf:{folder}")  # images still work
    with pytest.raises(ModelUnavailableError, match="tokenizer"):
        enc.embed_text(PROMPTS)


def test_vision_only_models_have_no_text_tower(hub_cache):
    enc = get_encoder("vit", cache_dir=str(hub_cache))
    assert not enc.has_text_tower and enc.spec.text_tower is False
    with pytest.raises(ConfigError, match="no text tower"):
        enc.embed_text(PROMPTS)


def test_cached_model_loads_when_the_hub_is_unreachable(hub_cache, unreachable_hub):
    """Downloads allowed by the settings, hub down: the cache is used without retries."""
    import time

    t0 = time.monotonic()
    enc = get_encoder("clip", cache_dir=str(hub_cache))
    assert enc.embed_text(PROMPTS[:1]).shape == (1, 512)
    assert time.monotonic() - t0 < 30  # no back-off (it was ~23 s per missing file)
