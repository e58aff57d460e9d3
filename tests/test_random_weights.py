"""fmri2image._random_weights: public sizes, placement where the loaders look, tiny pipelines.

The real sizes are checked by their parameter counts on the meta device (no memory,
no compute) against the published models'; the placement and the pipelines run at
tiny size through the package's loaders and generator classes.  The real-size run
through ``compare`` is ``tests/features/test_real_sizes.py`` (slow).
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

from fmri2image import _random_weights as rw
from fmri2image.errors import ConfigError

# Parameter counts of the published checkpoints' architectures.
ENCODER_PARAMETERS = {
    "resnet50": 25_557_032,  # torchvision ResNet50_Weights (with the ImageNet head)
    "vit": 86_389_248,  # google/vit-base-patch16-224-in21k (ViTModel with pooler)
    "clip": 149_620_737,  # openai/clip-vit-base-patch16 (CLIPModel)
    "clip-l14": 427_616_513,  # openai/clip-vit-large-patch14 (CLIPModel)
}
PIPELINE_PARAMETERS = {
    # UNet, VAE, text encoder (SD 1.5: CLIP ViT-L/14's; SD 2.1: OpenCLIP ViT-H/14's)
    "sd15": (859_520_964, 83_653_863, 123_060_480),
    "sd-turbo": (865_910_724, 83_653_863, 340_387_840),
}


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", list(ENCODER_PARAMETERS))
def test_real_encoder_architectures_have_the_published_sizes(name):
    import torch

    with torch.device("meta"):
        model = rw.build_encoder_model(name, size="real")
    assert _count(model) == ENCODER_PARAMETERS[name]


@pytest.mark.parametrize("name", list(PIPELINE_PARAMETERS))
def test_real_pipelines_have_the_published_sizes(name):
    pytest.importorskip("diffusers")
    import torch

    with torch.device("meta"):
        modules = rw.pipeline_modules(name, size="real")
    counts = tuple(_count(modules[k]) for k in ("unet", "vae", "text_encoder"))
    assert counts == PIPELINE_PARAMETERS[name]


def test_unclip_takes_clip_l14_embeddings():
    pytest.importorskip("diffusers")
    import torch

    with torch.device("meta"):
        modules = rw.pipeline_modules("unclip", size="real")
    # the image embedding and its noise-level embedding, side by side
    assert modules["unet"].config.projection_class_embeddings_input_dim == 2 * 768
    assert modules["image_encoder"].config.projection_dim == 768
    assert modules["unet"].config.sample_size * 8 == 768  # native 768 px


def test_resnet50_goes_where_torchvision_caches_and_torchvision_reads_it(tmp_path, monkeypatch):
    from torchvision.models import ResNet50_Weights

    from fmri2image.features.registry import encoder_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = rw.place_random_weights("resnet50")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert encoder_spec("resnet50").extra["url"].endswith("/" + path.name)

    def no_network(self, address, *args, **kwargs):
        raise AssertionError(f"network connection attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    # torchvision's own loader takes the cached file as is (the hash is checked only on
    # download), so placed random weights stand in for the real download.
    state = ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=False, check_hash=True)
    assert state["fc.weight"].shape == (1000, 2048)
    with pytest.raises(ConfigError, match="already exists"):
        rw.place_random_weights("resnet50")
    rw.remove_placed("resnet50")
    assert not path.exists()


@pytest.mark.parametrize("name,dim", [("vit", 768), ("clip-l14", 768)])
def test_tiny_hub_models_load_through_the_registry_offline(tmp_path, name, dim):
    from fmri2image.features import get_encoder

    snapshot = rw.place_random_weights(name, hf_home=tmp_path, size="tiny")
    assert snapshot == rw.placed_files(name, hf_home=tmp_path, size="tiny")
    assert (snapshot.parent.parent / "refs" / "main").read_text() == snapshot.name
    enc = get_encoder(name, cache_dir=str(tmp_path / "hub"), local_files_only=True)
    assert enc.spec.dim == dim and snapshot.name in enc.spec.weights
    rng = np.random.default_rng(0)
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    out = enc.embed(enc.preprocess(image)[None])
    assert out.shape == (1, dim) and bool(np.isfinite(out.numpy()).all())
    if name == "clip-l14":  # the placed tokenizer feeds the text tower
        text = enc.embed_text(["a photo of a tabby cat", "a photo of a rocket"])
        assert text.shape == (2, dim) and not np.allclose(text[0], text[1])


def test_clip_tokenizer_is_clips_bpe_when_open_clip_is_installed(tmp_path):
    pytest.importorskip("open_clip")
    import open_clip

    tokenizer = rw.clip_tokenizer(tmp_path)
    assert len(tokenizer) == 49408
    ids = tokenizer("a photo of a tabby cat")["input_ids"]
    reference = open_clip.get_tokenizer("ViT-B-32")(["a photo of a tabby cat"])[0]
    assert ids == [int(i) for i in reference[: len(ids)]]


def test_placing_refuses_to_overwrite_and_removal_leaves_nothing(tmp_path):
    rw.place_random_weights("clip", hf_home=tmp_path, size="tiny")
    with pytest.raises(ConfigError, match="overwrite=True"):
        rw.place_random_weights("clip", hf_home=tmp_path, size="tiny")
    again = rw.place_random_weights("clip", hf_home=tmp_path, size="tiny", overwrite=True)
    assert (again / "model.safetensors").is_file()
    rw.remove_placed("clip", hf_home=tmp_path, size="tiny")
    assert not any(Path(tmp_path, "hub").iterdir())
    with pytest.raises(ConfigError, match="known: resnet50, vit, clip, clip-l14"):
        rw.placed_files("effnet-lite0", hf_home=tmp_path)


@pytest.mark.parametrize("name", ["sd-turbo", "unclip"])
def test_tiny_pipelines_run_through_the_generators(tmp_path, name):
    pytest.importorskip("diffusers")
    from fmri2image.generation import EmbeddingStats, GenerationRequest
    from fmri2image.generation.diffusion import SDTurboGenerator
    from fmri2image.generation.unclip import UnclipGenerator

    folder = rw.save_pipeline(name, tmp_path / name, size="tiny")
    request = {"stem": "n02123045_1", "wnid": "n02123045", "name": "tabby"}
    if name == "unclip":
        gen = UnclipGenerator(model=str(folder), steps=1, size=32)
        train = np.random.default_rng(0).standard_normal((8, 768)).astype(np.float32)
        request.update(embedding=train[0], stats=EmbeddingStats.from_embeddings(train))
    else:
        gen = SDTurboGenerator(model=str(folder), size=32, safety_checker=False)
    [result] = gen.generate([GenerationRequest(**request)])
    assert result.images[0].size == (32, 32)
    assert result.extra["steps"] == 1
