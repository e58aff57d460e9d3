"""The ``invert`` generator and the encoders' differentiable pixel path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from _offline_helpers import photos, tiny_encoder

from fmri2image.errors import ConfigError
from fmri2image.generation import (
    GENERATORS,
    EmbeddingStats,
    GenerationRequest,
    generator_options,
    get_generator,
    image_seed,
)
from fmri2image.generation.invert import InvertOptions, default_size, invert_embeddings

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: Cheap settings for the tiny encoder: the behaviour under test, not the defaults' quality.
QUICK = {"iterations": 8, "size": 64, "jitter": 4}


def _pixels(image):
    import torch

    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def lite0():
    from fmri2image.features import get_encoder

    return get_encoder("effnet-lite0")


@pytest.fixture
def tiny_gen():
    """An ``invert`` generator whose encoder cache holds the tiny conv encoder."""
    gen = get_generator("invert", **QUICK)
    gen._encoders["tiny-conv"] = tiny_encoder()
    return gen


def _request(stem, enc, embedding, **kw):
    return GenerationRequest(stem=stem, embedding=embedding, encoder=enc, **kw)


# ------------------------------------------------------------ embed_pixels
def test_embed_pixels_equals_embed_of_preprocess_effnet(lite0):
    """On an image already at the resize size (256 shorter side) nothing is resampled."""
    from PIL import Image

    img = photos()[0].resize((341, 256), Image.Resampling.BICUBIC)
    ref = lite0.embed(lite0.preprocess(img)[None])
    x = _pixels(img).requires_grad_(True)
    out = lite0.embed_pixels(x)
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-4, atol=1e-4)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert lite0.supports_pixels and default_size(lite0) == 256


def test_embed_pixels_resampling_stays_close(lite0):
    """Where a resize happens, torch's antialiased bicubic stands in for PIL's."""
    img = photos()[1]  # 400 x 600: resized and cropped
    ref = lite0.embed(lite0.preprocess(img)[None]).numpy()[0]
    out = lite0.embed_pixels(_pixels(img)).detach().numpy()[0]
    assert _cos(out, ref) > 0.99


def test_embed_pixels_equals_embed_of_preprocess_hf_vit(tmp_path):
    """A tiny ViT saved like a hub model: the processor's resize/rescale/normalize in torch."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from fmri2image.features import get_encoder

    torch.manual_seed(0)
    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, image_size=64, patch_size=16)
    ).save_pretrained(tmp_path, safe_serialization=True)  # fmt: skip
    ViTImageProcessor(
        size={"height": 64, "width": 64}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(tmp_path)
    enc = get_encoder(f"hf:{tmp_path}")
    assert enc.supports_pixels
    img = photos(64)[2]
    ref = enc.embed(enc.preprocess(img)[None]).numpy()
    out = enc.embed_pixels(_pixels(img)).detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_embed_pixels_equals_embed_of_preprocess_torchvision(tmp_path):
    """torchvision weights' transforms (resize 256, crop 224, ImageNet mean/std), real loader."""
    import torch
    from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

    from fmri2image.features import get_encoder
    from fmri2image.features.encoders._torchvision import checkpoint_path

    torch.manual_seed(0)
    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1
    torch.save(mobilenet_v3_small(weights=None).state_dict(), checkpoint_path(weights, tmp_path))
    enc = get_encoder("torchvision:mobilenet_v3_small", cache_dir=str(tmp_path))
    assert enc.supports_pixels and enc.pixel_transform.resize == 256
    img = photos(256)[3]
    ref = enc.embed(enc.preprocess(img)[None]).numpy()
    out = enc.embed_pixels(_pixels(img)).detach().numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_library_transform_has_no_pixel_path():
    """An encoder whose preprocessing is a library object refuses, and so does check()."""
    from fmri2image.features.encoders._common import RGBTransform, TorchEncoder

    base = tiny_encoder()
    enc = TorchEncoder(base.spec, base.model, RGBTransform(base.preprocess))
    assert not enc.supports_pixels
    with pytest.raises(ConfigError, match="no differentiable pixel path"):
        enc.embed_pixels(_pixels(photos(64)[0]))
    gen = get_generator("invert")
    gen._encoders["opaque"] = enc
    with pytest.raises(ConfigError, match="cannot optimise images through encoder 'opaque'"):
        gen.check("opaque")


# ------------------------------------------------------------------ invert
def test_registry_entry_and_options():
    entry = GENERATORS.get("invert")
    assert entry.offline and entry.conditioning == "embedding"
    cls = generator_options("invert")
    assert cls is InvertOptions
    doc = cls.__doc__
    for f in dataclasses.fields(cls):  # one numpydoc line per option, for --list-options
        assert f"    {f.name} : " in doc, f.name
    with pytest.raises(ConfigError, match="--steps does not apply"):
        get_generator("invert", steps=3)
    with pytest.raises(ConfigError, match=r"iterations must be at least 1.*match must be one"):
        get_generator("invert", iterations=0, match="mse")


def test_import_is_light():
    code = (
        "import sys, fmri2image.generation, fmri2image.generation.invert, "
        "fmri2image.generation.retrieve; from fmri2image.generation import generator_options; "
        "generator_options('invert'); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_requests_are_checked(tiny_gen):
    with pytest.raises(ConfigError, match="lacks the embedding"):
        tiny_gen.generate([GenerationRequest(stem="a", encoder="tiny-conv")])
    with pytest.raises(ConfigError, match="lacks the encoder name"):
        tiny_gen.generate([GenerationRequest(stem="a", embedding=np.ones(32))])
    with pytest.raises(ConfigError, match="has 5 values"):
        tiny_gen.generate([_request("a", "tiny-conv", np.ones(5))])
    with pytest.raises(ConfigError, match="no encoder was named"):
        tiny_gen.check(None)


def test_seeded_by_stem_and_batch_independent(tiny_gen):
    """Each image is its own seeded optimisation: alone == inside any batch."""
    enc = tiny_gen.encoder("tiny-conv")
    targets = enc.embed(
        __import__("torch").stack([enc.preprocess(p) for p in photos()[:3]])
    ).numpy()
    reqs = [_request(s, "tiny-conv", t, seed=7) for s, t in zip(["s0", "s1", "s2"], targets)]
    batched = tiny_gen.generate([reqs[2], reqs[0], reqs[1]])
    alone = tiny_gen.generate([reqs[0]])[0]
    again = tiny_gen.generate([reqs[0]])[0]
    a, b = np.asarray(alone.image, np.int16), np.asarray(batched[1].image, np.int16)
    assert batched[1].stem == "s0" and alone.seed == image_seed(7, "s0")
    assert np.abs(a - b).max() <= 1  # float rounding of batched convolutions at most
    assert np.array_equal(np.asarray(alone.image), np.asarray(again.image))
    other = tiny_gen.generate([dataclasses.replace(reqs[0], stem="elsewhere")])[0]
    assert np.abs(a - np.asarray(other.image, np.int16)).mean() > 2
    assert alone.image.size == (64, 64) and alone.image.mode == "RGB"
    assert "feature inversion through tiny-conv" in alone.conditioning
    assert alone.extra["match"] == "raw"  # no training statistics in these requests


def test_deviation_match_uses_training_mean(tiny_gen):
    """With training statistics the deviation from their mean is matched (and reported)."""
    enc = tiny_gen.encoder("tiny-conv")
    import torch

    feats = enc.embed(torch.stack([enc.preprocess(p) for p in photos()])).numpy()
    stats = EmbeddingStats.from_embeddings(feats[1:])
    res = tiny_gen.generate([_request("d", "tiny-conv", feats[0], stats=stats)])[0]
    assert res.extra["match"] == "deviation" and "deviation_cosine" in res.extra
    assert "deviation from the training-mean embedding" in res.conditioning


def test_inversions_are_told_apart_tiny():
    """Inverted images of different targets are identified by their embeddings."""
    import torch

    from fmri2image.evaluation import two_way_identification

    enc = tiny_encoder()
    targets = enc.embed(torch.stack([enc.preprocess(p) for p in photos()])).numpy()
    opts = InvertOptions(iterations=24, size=64, jitter=4)
    pixels, _ = invert_embeddings(enc, targets, list(range(len(targets))), opts)
    from PIL import Image

    E = enc.embed(torch.stack([enc.preprocess(Image.fromarray(p)) for p in pixels])).numpy()
    assert two_way_identification(targets, E).mean() >= 0.8


def test_invert_reaches_a_real_photos_embedding(lite0):
    """Default budget, real Lite0: closer to the cat's embedding than grey or another photo."""
    import torch
    from PIL import Image

    cat, coffee = photos()[:2]
    grey = Image.new("RGB", (256, 256), (128, 128, 128))
    E = lite0.embed(torch.stack([lite0.preprocess(im) for im in (cat, coffee, grey)])).numpy()
    gen = get_generator("invert")
    gen._encoders["effnet-lite0"] = lite0
    res = gen.generate([_request("n02123045_chelsea", "effnet-lite0", E[0])])[0]
    assert res.image.size == (256, 256)
    inv = lite0.embed(lite0.preprocess(res.image)[None]).numpy()[0]
    assert _cos(inv, E[0]) == pytest.approx(res.extra["cosine"], abs=1e-5)
    assert _cos(inv, E[0]) > max(_cos(E[2], E[0]), _cos(E[1], E[0])) + 0.3


@pytest.mark.slow
def test_inversions_of_shrunk_noisy_predictions_are_told_apart(lite0):
    """The demo's situation in miniature, on real Lite0 at the default options.

    Predictions are what ridge gives: shrunk towards the training mean (to 30 % of the
    deviation) plus noise; training statistics come from other crops.  Each inversion's
    embedding must identify its own image among the others (2-way, chance 0.5).
    """
    import torch

    from fmri2image.evaluation import two_way_identification

    pics = photos()
    rng = np.random.default_rng(0)
    crops = []
    for p in pics:
        w, h = p.size
        for _ in range(6):
            left, top = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
            crops.append(p.crop((left, top, left + w // 2, top + h // 2)))
    train = lite0.embed(torch.stack([lite0.preprocess(c) for c in crops])).numpy()
    stats = EmbeddingStats.from_embeddings(train)
    chosen = [pics[k] for k in (0, 1, 3, 4)]  # chelsea, coffee, china, flower
    true = lite0.embed(torch.stack([lite0.preprocess(p) for p in chosen])).numpy()
    mu = stats.mean.astype(np.float32)
    pred = mu + 0.3 * (true - mu) + rng.normal(0, 0.2, true.shape) * stats.std
    gen = get_generator("invert")
    gen._encoders["effnet-lite0"] = lite0
    reqs = [_request(f"p{i}", "effnet-lite0", p, stats=stats) for i, p in enumerate(pred)]
    res = gen.generate(reqs)
    E = lite0.embed(torch.stack([lite0.preprocess(r.image) for r in res])).numpy()
    assert two_way_identification(pred, E).mean() >= 0.9
    assert two_way_identification(true, E).mean() >= 0.75


# ------------------------------------------------------------ from an initial image
def test_fourier_parametrisation_inverts_an_image():
    """The spectra made from an image render it exactly (before blur), up to the clip."""
    from fmri2image.generation.invert import _INIT_EPS, _FourierImage

    px = np.stack([np.asarray(p) for p in photos(48)[:2]]).astype(np.float32) / 255.0
    image = _FourierImage.from_pixels(px, decay=2.0)
    out = image.render(0.0).detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(out, np.clip(px, _INIT_EPS, 1 - _INIT_EPS), atol=1e-4)


def test_starting_from_an_initial_image_reproduces_it(tiny_gen):
    """One step from the initial image returns it (PixCorr > 0.95), for any target."""
    from fmri2image.evaluation import pixcorr

    pics = photos(64)[:3]
    gen = get_generator("invert", iterations=1, size=64, blur_end=0.5)
    gen._encoders["tiny-conv"] = tiny_gen.encoder("tiny-conv")
    other = np.random.default_rng(0).normal(size=32)
    res = gen.generate([_request(f"s{i}", "tiny-conv", other, init_image=p) for i, p in
                        enumerate(pics)])  # fmt: skip
    assert pixcorr(pics, [r.image for r in res]).min() > 0.95
    assert res[0].extra["init"] and res[0].extra["init_pixcorr"] > 0.95
    assert "from the initial image (pixel weight 1)" in res[0].conditioning
    # Any size and aspect: the central square is resized to the image made.
    wide = photos()[1]  # 400 x 600
    [r] = gen.generate([_request("w", "tiny-conv", other, init_image=wide)])
    assert r.image.size == (64, 64) and r.extra["init_pixcorr"] > 0.95


def test_init_weight_keeps_the_initial_layout(tiny_gen):
    """Matching another image's embedding moves away from the start; the pixel term
    (init_weight) keeps the result closer to it (PixCorr)."""
    from fmri2image.evaluation import pixcorr

    enc = tiny_gen.encoder("tiny-conv")
    pics = photos(64)
    E = enc.embed(__import__("torch").stack([enc.preprocess(p) for p in pics])).numpy()
    reqs = [_request(f"s{i}", "tiny-conv", E[(i + 1) % len(E)], init_image=p)
            for i, p in enumerate(pics)]  # fmt: skip
    closeness = {}
    for weight in (0.0, 3.0):
        gen = get_generator("invert", iterations=24, size=64, jitter=4, init_weight=weight)
        gen._encoders["tiny-conv"] = enc
        res = gen.generate(reqs)
        closeness[weight] = pixcorr(pics, [r.image for r in res])
        assert min(r.extra["cosine"] for r in res) > 0.8  # the embedding is still matched
    assert (closeness[3.0] > closeness[0.0]).all(), closeness
    assert closeness[0.0].mean() < 0.9  # the optimisation did move


def test_mixed_batches_keep_each_start(tiny_gen):
    """Requests with and without an initial image in one call: each is made as alone."""
    enc = tiny_gen.encoder("tiny-conv")
    target = enc.embed(enc.preprocess(photos()[2])[None]).numpy()[0]
    plain = _request("plain", "tiny-conv", target, seed=3)
    init = _request("init", "tiny-conv", target, seed=3, init_image=photos(64)[0])
    mixed = tiny_gen.generate([init, plain])
    alone = [tiny_gen.generate([r])[0] for r in (init, plain)]
    for m, a in zip(mixed, alone):
        assert m.stem == a.stem
        assert np.abs(np.asarray(m.image, np.int16) - np.asarray(a.image, np.int16)).max() <= 1
    assert "init" not in mixed[1].extra and mixed[0].extra["init"]


def test_init_options_are_validated():
    with pytest.raises(ConfigError, match=r"init_weight must be 0 or more.*init_blur_start"):
        get_generator("invert", init_weight=-1.0, init_blur_start=-2.0)


# ------------------------------------------------------------ view_scale
def test_view_scale_runs_the_network_on_a_smaller_view():
    """embed_pixels(view_scale=s) is the network on the pixels resized and cropped to
    s times the transform's sizes (here 72/64 -> 36/32), gradients included."""
    import torch
    import torch.nn.functional as F

    enc = tiny_encoder()
    assert enc.any_input_size
    x = torch.rand(2, 3, 80, 80, requires_grad=True)
    out = enc.embed_pixels(x, view_scale=0.5)
    small = F.interpolate(x, size=(36, 36), mode="bilinear", align_corners=False, antialias=True)
    small = small[..., 2:34, 2:34]
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    ref = enc.model((small - mean) / std).reshape(2, -1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not torch.allclose(out, enc.embed_pixels(x))  # another view than full size


def test_view_scale_is_checked():
    with pytest.raises(ConfigError, match=r"view_scale must be between 0\.25 and 1"):
        InvertOptions(view_scale=0.1)
    with pytest.raises(ConfigError, match=r"view_scale must be between 0\.25 and 1"):
        InvertOptions(view_scale=1.5)


def test_view_scale_is_refused_for_a_fixed_size_network():
    """A transformer-like encoder (at most one convolution) has a fixed input size."""
    import torch

    from fmri2image.features.base import EncoderSpec
    from fmri2image.features.encoders._common import ImageTransform, TorchEncoder

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.Flatten(), torch.nn.LazyLinear(16)
    )
    model(torch.zeros(1, 3, 64, 64))  # materialize the lazy layer at the fixed size
    transform = ImageTransform(resize=72, crop=64, interpolation="bilinear")
    spec = EncoderSpec(
        name="tiny-patch", weights="random", layer="flat", dim=16, image_size=64,
        preprocessing=transform.describe(), license="none", classifier_head=False,
        text_tower=False,
    )  # fmt: skip
    enc = TorchEncoder(spec, model, transform)
    assert not enc.any_input_size
    with pytest.raises(ConfigError, match="fixed input size"):
        enc.embed_pixels(torch.rand(1, 3, 64, 64), view_scale=0.5)
    gen = get_generator("invert", **{**QUICK, "view_scale": 0.5})
    gen._encoders["tiny-patch"] = enc
    with pytest.raises(ConfigError, match=r"view_scale 0\.5 needs an encoder"):
        gen.check("tiny-patch")
    full = get_generator("invert", **QUICK)
    full._encoders["tiny-patch"] = enc
    full.check("tiny-patch")  # view_scale 1: accepted


def test_invert_with_a_smaller_view_makes_pictures_of_the_size_asked(tiny_gen):
    import dataclasses as dc

    enc = tiny_gen.encoder("tiny-conv")
    gen = get_generator("invert", **{**dc.asdict(tiny_gen.options), "view_scale": 0.5})
    gen._encoders["tiny-conv"] = enc
    target = np.random.default_rng(0).standard_normal(enc.dim).astype(np.float32)
    (res,) = gen.generate([_request("a", "tiny-conv", target)])
    size = tiny_gen.options.size or default_size(enc)
    assert res.images[0].size == (size, size)
