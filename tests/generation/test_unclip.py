"""unclip: a tiny Stable unCLIP (768-d, like unclip-small) fed predicted embeddings.

The tiny pipeline sits in a fake hub cache under the real default id, so ``unclip``
is built exactly as a user builds it; the embeddings stand for ``clip-l14``
predictions, rescaled with training statistics only.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fmri2image.errors import ConfigError
from fmri2image.generation import (
    EmbeddingStats,
    GenerationRequest,
    get_generator,
    image_seed,
)
from fmri2image.generation.unclip import rescale_embedding

pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("torch_one_thread")

DIM = 768
FAST = {"size": 64, "steps": 2}


def px(img) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


@pytest.fixture(scope="module")
def training():
    """Training embeddings in a cone (a shared mean plus spread), and their statistics."""
    rng = np.random.default_rng(0)
    Y = 2.0 + rng.normal(size=(40, DIM))
    return Y, EmbeddingStats.from_embeddings(Y)


@pytest.fixture(scope="module")
def predictions(training):
    """Held-out 'ridge predictions': true embeddings shrunk 70 % towards the training mean."""
    _, stats = training
    rng = np.random.default_rng(1)
    truth = 2.0 + rng.normal(size=(3, DIM))
    return stats.mean + 0.3 * (truth - stats.mean)


@pytest.fixture(scope="module")
def unclip(diffusion_hub_cache):
    return get_generator("unclip", cache_dir=str(diffusion_hub_cache), **FAST)


def req(stem, embedding, stats, **kw):
    return GenerationRequest(stem=stem, seed=kw.pop("seed", 0), embedding=embedding,
                             encoder=kw.pop("encoder", "clip-l14"), stats=stats, **kw)  # fmt: skip


def test_check_names_the_encoder_it_needs_before_any_work(unclip):
    assert unclip.embedding_dim == DIM  # read from image_normalizer/config.json
    with pytest.raises(ConfigError, match=r"CLIP ViT-L/14.*'resnet50' gives 2048-d.*clip-l14"):
        unclip.check("resnet50")
    with pytest.raises(ConfigError, match=r"'clip' gives 512-d.*--model clip-l14"):
        unclip.check("clip")
    with pytest.raises(ConfigError, match=r"no encoder was named.*clip-l14"):
        unclip.check(None)
    unclip.check("clip-l14")
    unclip.check("hf:openai/clip-vit-large-patch14")
    with pytest.raises(ConfigError, match="Unknown encoder"):
        unclip.check("clip-l15")
    assert unclip._pipe is None  # nothing was loaded


def test_a_model_of_unknown_space_is_checked_by_size(tiny_unclip_dir, tiny_sd_dir):
    gen = get_generator("unclip", model=str(tiny_unclip_dir), **FAST)
    with pytest.raises(ConfigError, match=r"takes 768-d .*'resnet50' gives 2048-d"):
        gen.check("resnet50")
    gen.check("vit")  # 768-d: cannot be told apart by size
    named = get_generator("unclip", model=str(tiny_unclip_dir), encoder="clip-l14", **FAST)
    with pytest.raises(ConfigError, match="clip-l14"):
        named.check("vit")
    with pytest.raises(ConfigError, match=r"StableDiffusionPipeline.*--generator sd15"):
        get_generator("unclip", model=str(tiny_sd_dir))


def test_renders_the_rescaled_prediction_with_a_seed_per_image(unclip, training, predictions):
    _, stats = training
    a, b, c = (req(f"n0144353{i}_1", p, stats) for i, p in enumerate(predictions))
    [alone] = unclip.generate([a])
    assert alone.seed == image_seed(0, a.stem) and not alone.flagged and alone.attempts == 1
    assert alone.image.size == (64, 64) and "image_embeds of clip-l14" in alone.conditioning
    extra = alone.extra
    assert extra["rescale"] == "deviation" and extra["noise_level"] == 0
    assert 2.5 < extra["rescale_factor"] < 4.5  # undoes the 0.3 shrinkage, about 1 / 0.3
    assert extra["safety_checker"] == "absent" and extra["scheduler"] == "DDIMScheduler"
    assert px(unclip.generate([a])[0].image).tolist() == px(alone.image).tolist()
    batch = unclip.generate([c, a, b])
    d = np.abs(px(batch[1].image) - px(alone.image))
    assert d.max() <= 2 and (d == 0).mean() > 0.98  # float rounding of batched kernels only
    assert np.abs(px(batch[0].image) - px(alone.image)).mean() > 2
    # Same stem (same noise), another prediction: the embedding drives the picture.
    [other] = unclip.generate([req(a.stem, predictions[1], stats)])
    assert np.abs(px(other.image) - px(alone.image)).max() > 4


def test_rescaling_uses_training_statistics_only(training, predictions):
    _, stats = training
    p = predictions[0]
    x, factor = rescale_embedding(p, stats, "deviation")
    assert np.linalg.norm(x - stats.mean) == pytest.approx(np.sqrt(np.sum(stats.std**2)))
    np.testing.assert_allclose(x - stats.mean, factor * (p - stats.mean))
    x, factor = rescale_embedding(p, stats, "norm")
    assert np.linalg.norm(x) == pytest.approx(stats.norm) and factor > 1
    np.testing.assert_array_equal(rescale_embedding(p, None, "none")[0], p)
    with pytest.raises(ConfigError, match="--option rescale=none"):
        rescale_embedding(p, None, "deviation")
    with pytest.raises(ConfigError, match="same encoder"):
        rescale_embedding(p[:10], stats, "norm")


def test_rescale_choice_changes_the_picture(diffusion_hub_cache, unclip, training, predictions):
    _, stats = training
    r = req("n01443537_1", predictions[0], stats)
    plain = get_generator("unclip", cache_dir=str(diffusion_hub_cache), rescale="none", **FAST)
    [raw] = plain.generate([r])
    assert raw.extra["rescale_factor"] == 1.0 and "rescaled" not in raw.conditioning
    assert np.abs(px(raw.image) - px(unclip.generate([r])[0].image)).max() > 4


def test_requests_must_carry_a_fitting_embedding(unclip):
    with pytest.raises(ConfigError, match="carries none"):
        unclip.generate([GenerationRequest(stem="n01443537_1")])
    with pytest.raises(ConfigError, match="resnet50"):
        unclip.generate([req("n01443537_1", np.zeros(2048), None, encoder="resnet50")])
    with pytest.raises(ConfigError, match="16-d but unclip"):
        unclip.generate([req("n01443537_1", np.zeros(16), None, encoder=None)])
    with pytest.raises(ConfigError, match="training statistics"):
        unclip.generate([req("n01443537_1", np.zeros(DIM), None)])
    with pytest.raises(ConfigError, match="no initial image"):
        unclip.generate(
            [req("n01443537_1", np.zeros(DIM), None, init_image=Image.new("RGB", (8, 8)))]
        )


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"rescale": "zscore"}, "--option rescale="),
        ({"noise_level": -1}, "--option noise_level="),
        ({"steps": 0}, "--option steps="),
        ({"prompt": "{label}"}, "--option prompt="),
        ({"strength": 0.5}, "--strength does not apply"),
    ],
)
def test_options_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        get_generator("unclip", **options)


def test_noise_level_is_checked_against_the_model(diffusion_hub_cache, training):
    gen = get_generator("unclip", cache_dir=str(diffusion_hub_cache), noise_level=5000, **FAST)
    with pytest.raises(ConfigError, match=r"--option noise_level=5000.*0 to 999"):
        gen.generate([req("n01443537_1", np.zeros(DIM), training[1])])
