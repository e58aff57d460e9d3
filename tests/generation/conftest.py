"""Fixtures for the generation tests: tiny diffusers pipelines saved like real ones.

The pipelines are built from configs at the sizes diffusers' own tests use (UNet
``block_out_channels=(4, 8)``, VAE ``[4, 8]``, an 8-wide two-layer CLIP text model)
with a tokenizer written here (the hub is unreachable), saved with
``save_pretrained(safe_serialization=True)`` and loaded back by the code under test
through the same ``from_pretrained`` path a user's hub id or folder takes.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE.parent / "features") not in sys.path:  # _tiny_models
    sys.path.insert(0, str(HERE.parent / "features"))

#: Embedding size of the tiny unCLIP: the real unclip-small's (CLIP ViT-L/14), so the
#: tiny model can stand in for it under its hub id; its projection layers stay small.
TINY_UNCLIP_DIM = 768


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: the tiny models gain nothing from two, and on a shared
    2-core machine OpenMP's spinning threads made a 0.5 s test take 10 s or more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """:func:`one_torch_thread` for a whole test module (``pytestmark``)."""
    with one_torch_thread():
        yield


def write_hf_cache_tree(cache_dir: Path, repo_id: str, source_dir: Path) -> Path:
    """Lay a pipeline folder (with subfolders) out as the hub cache entry of ``repo_id``."""
    from _tiny_models import FAKE_COMMIT

    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / FAKE_COMMIT
    shutil.copytree(source_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return snapshot


def _tiny_text(scratch: Path):
    """(tokenizer, CLIP text model): hidden 8, two layers, vocabulary 1000."""
    from _tiny_models import CLIP_BOS, CLIP_EOS, write_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_clip_tokenizer(scratch / "tokenizer", scratch=scratch / "tokenizer-src")
    tokenizer = CLIPTokenizer.from_pretrained(scratch / "tokenizer", model_max_length=77)
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=CLIP_BOS, eos_token_id=CLIP_EOS, pad_token_id=CLIP_EOS,
            hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
            vocab_size=1000, layer_norm_eps=1e-5,
        )
    )  # fmt: skip
    return tokenizer, text


def _tiny_unet_vae(**unet_kwargs):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=8,
        norm_num_groups=2, attention_head_dim=2, **unet_kwargs,
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=2,
    )  # fmt: skip
    return unet, vae


def _tiny_clip_vision_config(projection_dim: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
        image_size=32, patch_size=8, projection_dim=projection_dim,
    )  # fmt: skip


def _feature_extractor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def save_tiny_sd(folder: Path) -> Path:
    """A tiny StableDiffusionPipeline with a (never-flagging) tiny safety checker."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import (
        StableDiffusionSafetyChecker,
    )
    from transformers import CLIPConfig

    torch.manual_seed(0)
    tokenizer, text = _tiny_text(folder.parent / (folder.name + "-src"))
    unet, vae = _tiny_unet_vae()
    checker = StableDiffusionSafetyChecker(
        CLIPConfig(
            text_config={"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
                         "num_hidden_layers": 1},
            vision_config=_tiny_clip_vision_config(8).to_dict(), projection_dim=8,
        )
    )  # fmt: skip
    with torch.no_grad():  # cosine <= 1 < threshold: the real checker never flags here
        checker.concept_embeds_weights.fill_(2.0)
        checker.special_care_embeds_weights.fill_(2.0)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=checker, feature_extractor=_feature_extractor(),
    )  # fmt: skip
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_unclip(folder: Path, dim: int = TINY_UNCLIP_DIM) -> Path:
    """A tiny StableUnCLIPImg2ImgPipeline taking ``dim``-d image embeddings."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(0)
    tokenizer, text = _tiny_text(folder.parent / (folder.name + "-src"))
    unet, vae = _tiny_unet_vae(
        class_embed_type="projection", projection_class_embeddings_input_dim=2 * dim
    )
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=dim)
    with torch.no_grad():  # a CLIP-like scale, as the real normalizer holds
        normalizer.mean.normal_(0.0, 0.1)
        normalizer.std.uniform_(0.3, 0.6)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=_feature_extractor(),
        image_encoder=CLIPVisionModelWithProjection(_tiny_clip_vision_config(dim)),
        image_normalizer=normalizer,
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer, text_encoder=text, unet=unet,
        scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1,
            clip_sample=False,
        ),
        vae=vae,
    )  # fmt: skip
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny Stable Diffusion pipeline folder (``save_pretrained``, safetensors)."""
    pytest.importorskip("diffusers")
    with one_torch_thread():
        return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "pipeline")


@pytest.fixture(scope="session")
def tiny_unclip_dir(tmp_path_factory) -> Path:
    """A tiny Stable unCLIP pipeline folder taking 768-d (ViT-L/14-sized) embeddings."""
    pytest.importorskip("diffusers")
    with one_torch_thread():
        return save_tiny_unclip(tmp_path_factory.mktemp("tiny-unclip") / "pipeline")


#: Embedding size of the tiny IP-Adapter: h94's SD 1.5 adapter's (OpenCLIP ViT-H/14).
TINY_ADAPTER_DIM = 1024


def save_tiny_ip_adapter(folder: Path, dim: int = TINY_ADAPTER_DIM) -> Path:
    """An IP-Adapter file for the tiny SD's UNet, in h94's flat safetensors layout.

    ``image_proj.*`` projects one ``dim``-d embedding to 4 context tokens (LayerNorm
    after); ``ip_adapter.<k>.to_{k,v}_ip.weight`` are the extra key/value maps of the
    k-th cross-attention, numbered 1, 3, 5, ... in the UNet's processor order.
    """
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    unet, _ = _tiny_unet_vae()
    cross, tokens = unet.config.cross_attention_dim, 4
    tensors = {
        "image_proj.proj.weight": torch.randn(tokens * cross, dim) * 0.05,
        "image_proj.proj.bias": torch.zeros(tokens * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    widths = list(unet.config.block_out_channels)
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        block = name.split(".")[0]
        if block == "mid_block":
            hidden = widths[-1]
        elif block == "up_blocks":
            hidden = list(reversed(widths))[int(name.split(".")[1])]
        else:
            hidden = widths[int(name.split(".")[1])]
        for kv in ("k", "v"):
            tensors[f"ip_adapter.{key}.to_{kv}_ip.weight"] = torch.randn(hidden, cross) * 0.3
        key += 2
    path = Path(folder) / "models" / "ip-adapter_sd15.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return Path(folder)


@pytest.fixture(scope="session")
def tiny_ip_adapter_dir(tmp_path_factory) -> Path:
    """A folder holding models/ip-adapter_sd15.safetensors for the tiny SD (1024-d)."""
    pytest.importorskip("diffusers")
    with one_torch_thread():
        return save_tiny_ip_adapter(tmp_path_factory.mktemp("tiny-ip-adapter"))


@pytest.fixture(scope="session")
def diffusion_hub_cache(tmp_path_factory, tiny_sd_dir, tiny_unclip_dir, tiny_ip_adapter_dir):
    """A hub cache holding the tiny pipelines (and adapter) under the real default ids."""
    cache = tmp_path_factory.mktemp("hf-cache-diffusion")
    write_hf_cache_tree(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", tiny_sd_dir)
    write_hf_cache_tree(cache, "stabilityai/stable-diffusion-2-1-unclip-small", tiny_unclip_dir)
    write_hf_cache_tree(cache, "h94/IP-Adapter", tiny_ip_adapter_dir)
    return cache
