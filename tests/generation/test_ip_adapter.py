"""ip-adapter: the tiny SD with a tiny 1024-d IP-Adapter file, both under their real ids."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fmri2image.errors import ConfigError, ModelUnavailableError
from fmri2image.generation import EmbeddingStats, GenerationRequest, get_generator, image_seed

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

DIM = 1024
VIT_H = "open_clip:ViT-H-14:laion2b_s32b_b79k"
FAST = {"size": 64, "steps": 2}


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def stats_and_preds():
    rng = np.random.default_rng(0)
    stats = EmbeddingStats.from_embeddings(1.5 + rng.normal(size=(40, DIM)))
    preds = stats.mean + 0.3 * rng.normal(size=(2, DIM))
    return stats, preds


@pytest.fixture(scope="module")
def ipa(diffusion_hub_cache):
    return get_generator("ip-adapter", cache_dir=str(diffusion_hub_cache), **FAST)


def req(stem, emb, stats, **kw):
    return GenerationRequest(stem=stem, seed=0, embedding=emb, encoder=VIT_H, stats=stats, **kw)


def test_check_names_the_vit_h_encoder_before_loading(ipa):
    assert ipa.embedding_dim == DIM and ipa._pipe is None  # from the file's header
    with pytest.raises(ConfigError, match=rf"ViT-H/14.*'clip-l14' gives 768-d.*{VIT_H}"):
        ipa.check("clip-l14")
    ipa.check(VIT_H)
    ipa.check("hf:laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    assert ipa._pipe is None


def test_the_prediction_is_the_image_prompt(ipa, stats_and_preds):
    stats, preds = stats_and_preds
    a, b = req("n01443537_1", preds[0], stats), req("n01443537_1", preds[1], stats)
    [ra] = ipa.generate([a])
    assert ra.seed == image_seed(0, a.stem) and not ra.flagged
    assert ra.conditioning.startswith(f"ip_adapter_image_embeds of {VIT_H}")
    assert ra.extra["safety_checker"] == "on" and ra.extra["scale"] == 1.0
    assert 2.0 < ra.extra["rescale_factor"] < 6.0
    assert px(ipa.generate([a])[0].image).tolist() == px(ra.image).tolist()
    # Same stem (same noise), only the embedding differs. diffusers repeats one image
    # prompt over a whole call, so each request gets calls of its own: exact equality.
    rb, ra2 = ipa.generate([b, a])
    assert px(ra2.image).tolist() == px(ra.image).tolist()
    assert np.abs(px(rb.image) - px(ra.image)).max() > 4
    # img2img through the same adapted UNet.
    [ri] = ipa.generate(
        [req("n01443537_1", preds[0], stats, init_image=Image.new("RGB", (64, 64)))]
    )
    assert ri.extra["mode"] == "img2img"
    assert ipa.img2img_pipeline().unet is ipa.pipeline.unet


def test_refusals(diffusion_hub_cache, tiny_sd_dir, tiny_ip_adapter_dir, ipa, tmp_path):
    with pytest.raises(ConfigError, match="--option adapter_weights="):
        get_generator("ip-adapter", adapter_weights="models/ip-adapter_sd15.bin")
    with pytest.raises(ModelUnavailableError, match="HF_HUB_OFFLINE=1"):
        get_generator("ip-adapter", model=str(tiny_sd_dir), cache_dir=str(tmp_path))
    local = get_generator("ip-adapter", model=str(tiny_sd_dir), adapter=str(tiny_ip_adapter_dir))
    assert local.embedding_dim == DIM
    with pytest.raises(ConfigError, match="carries none"):
        ipa.generate([GenerationRequest(stem="n01443537_1")])
    with pytest.raises(ConfigError, match="16-d but the IP-Adapter takes 1024-d"):
        ipa.generate([GenerationRequest(stem="n01443537_1", embedding=np.zeros(16))])
