"""Which databases each encoder can serve: answered cheaply, and true of the built encoder."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fmri2image.errors import ConfigError
from fmri2image.features import (
    DatabaseChoice,
    EncoderCapabilities,
    encoder_capabilities,
    get_encoder,
    parse_database,
)


def _truth(enc) -> tuple[bool, bool]:
    return enc.class_prototypes() is not None, enc.has_text_tower


@pytest.mark.parametrize(
    ("name", "head", "text"),
    [
        ("effnet-lite0", True, False),
        ("effnet-lite2", True, False),
        ("resnet50", True, False),
        ("vit", False, False),
        ("clip", False, True),
        ("clip-l14", False, True),
        ("open_clip:ViT-B-32:laion2b_s34b_b79k", False, True),
    ],
)
def test_static_answers(name, head, text):
    caps = encoder_capabilities(name)
    assert (caps.class_prototypes, caps.text_prototypes, caps.image_database) == (head, text, True)


def test_named_answers_import_neither_torch_nor_model_libraries():
    code = (
        "import sys\n"
        "from fmri2image.features import encoder_capabilities\n"
        "for n in ['effnet-lite0', 'resnet50', 'vit', 'clip', 'open_clip:ViT-B-32:x']:\n"
        "    encoder_capabilities(n)\n"
        "bad = [m for m in ('torch', 'transformers', 'open_clip', 'timm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_answers_match_what_the_encoders_do(
    hub_cache, torch_home, tiny_vit_dir, tiny_clip_dir, tiny_open_clip, monkeypatch
):
    home, _ = torch_home
    monkeypatch.setenv("TORCH_HOME", str(home))
    _, oc_path = tiny_open_clip
    cases = [
        ("effnet-lite0", {}),
        ("resnet50", {}),
        ("vit", {"cache_dir": str(hub_cache)}),
        ("clip", {"cache_dir": str(hub_cache)}),
        (f"hf:{tiny_vit_dir}", {}),
        (f"hf:{tiny_clip_dir}", {}),
        (f"open_clip:fmri2image-tiny-clip:{oc_path}", {}),
    ]
    for name, kw in cases:
        caps = encoder_capabilities(name, **kw)
        enc = get_encoder(name, **kw)
        assert (caps.class_prototypes, caps.text_prototypes) == _truth(enc), name
        assert (enc.spec.classifier_head, enc.spec.text_tower) == _truth(enc), name


@pytest.mark.parametrize("with_head", [True, False])
def test_timm_head_is_read_from_the_file(tmp_path, with_head):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=1000 if with_head else 0)
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    name = f"timm:test_vit:{path}"
    caps = encoder_capabilities(name)
    assert caps.class_prototypes is with_head and caps.text_prototypes is False
    assert _truth(get_encoder(name)) == (with_head, False)


def test_torchvision_head_depends_on_the_weights():
    assert encoder_capabilities("torchvision:resnet18").class_prototypes is True
    # SWAG ViT weights are ImageNet-1k fine-tuned: a 1000-class head.
    assert encoder_capabilities("torchvision:vit_b_16:IMAGENET1K_SWAG_E2E_V1").class_prototypes


def test_check_says_what_works_instead():
    with pytest.raises(ConfigError, match="text-prototypes"):
        encoder_capabilities("clip").check("prototypes")
    with pytest.raises(ConfigError, match="--database prototypes"):
        encoder_capabilities("resnet50").check("text-prototypes:21k")
    with pytest.raises(ConfigError, match="fmri2image extract --model vit") as info:
        encoder_capabilities("vit").check("prototypes")
    assert "text-prototypes" not in str(info.value)
    encoder_capabilities("clip").check("text-prototypes:21k")
    encoder_capabilities("vit").check("/data/features")  # an image database: always fine
    unknown = EncoderCapabilities("custom", None, None)
    unknown.check("prototypes")  # unknown until built: not refused here
    assert unknown.databases == ("images",)
    assert encoder_capabilities("clip").to_dict()["databases"] == ["text-prototypes", "images"]


def test_parse_database():
    assert parse_database("prototypes") == DatabaseChoice("prototypes")
    assert parse_database("text-prototypes") == DatabaseChoice("text-prototypes", "1k")
    assert parse_database("text-prototypes:21k") == DatabaseChoice("text-prototypes", "21k")
    assert parse_database("features/") == DatabaseChoice("images", path="features/")
    assert str(parse_database("text-prototypes:1k")) == "text-prototypes"
    with pytest.raises(ConfigError, match="21k"):
        parse_database("text-prototypes:22k")


def test_prototype_index_refuses_a_headless_encoder_before_loading(monkeypatch):
    from fmri2image.retrieval import prototype_index

    def boom(*a, **k):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr("fmri2image.features.get_encoder", boom)
    with pytest.raises(ConfigError, match="text-prototypes"):
        prototype_index("clip")
