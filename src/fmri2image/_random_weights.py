"""Real-size architectures from their public configs, with random weights.

Speed and memory do not depend on the weights' values, so the benches
(``bench/bench_gpu.py``) and the real-size CI test (``tests/features/test_real_sizes.py``)
build the models fmri2image runs from their published configurations, with random
weights drawn from an explicit seed, instead of downloading gigabytes.

The encoders are *placed where a user's machine caches the real downloads*, so the
package's own loaders read them exactly as they read the real files:

* ``resnet50``: the state dict of torchvision's ``resnet50`` at
  ``$TORCH_HOME/hub/checkpoints/resnet50-11ad3fa6.pth`` (the file name that
  ``ResNet50_Weights.IMAGENET1K_V2.url`` ends with).  torchvision itself, like
  fmri2image's loader, reads an existing file there without checking its hash
  (``torch.hub.load_state_dict_from_url`` checks the hash only of a download);
* ``vit``, ``clip``, ``clip-l14``: a Hugging Face hub cache entry,
  ``$HF_HOME/hub/models--<org>--<name>/snapshots/<commit>/`` with ``refs/main``
  naming that commit, holding ``config.json`` and ``model.safetensors`` written by
  ``save_pretrained``, the repo's image processor (``preprocessor_config.json``)
  and, for CLIP, tokenizer files.  The commit is a made-up 40-hex id derived from
  the repo id and the size, so a placed model is never mistaken for a download.

The diffusion pipelines the generators drive (``sd15``, ``sd-turbo``, ``unclip``)
are built by :func:`build_pipeline` from inline component configs (the public
Stable Diffusion 1.5 / 2.1 / stable-unclip-small sizes) and written by
:func:`save_pipeline` as a ``save_pretrained`` folder, which the generators take as
``model=<folder>``.

Every builder takes ``size="real"`` or ``size="tiny"``: tiny keeps each family's
structure and output sizes (2048 / 768 / 512 / 768-d embeddings) but has one or
two narrow layers, for CPU smoke runs and fast tests.

CLIP tokenizer: the vocabulary and merges are those of OpenAI's CLIP BPE, read
from the copy ``open_clip`` ships (``bpe_simple_vocab_16e6.txt.gz``) when it is
installed; without it a byte-level vocabulary (every text tokenizes, 514 tokens)
is written, enough for the diffusion pipelines (prompts are padded to 77 tokens,
so the text encoder's cost is the same) but refused by the encoders' text tower,
which checks that the tokenizer covers its vocabulary.

Nothing here is imported by the package's stages; torch, torchvision,
transformers and diffusers are imported inside the functions.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fmri2image._io import atomic_path
from fmri2image.errors import ConfigError

__all__ = [
    "ENCODER_ARCHITECTURES",
    "PIPELINE_ARCHITECTURES",
    "SIZES",
    "EncoderArchitecture",
    "build_encoder_model",
    "build_pipeline",
    "clip_tokenizer",
    "pipeline_modules",
    "place_random_weights",
    "placed_files",
    "remove_placed",
    "save_pipeline",
    "snapshot_commit",
]

SIZES = ("real", "tiny")


@dataclass(frozen=True)
class EncoderArchitecture:
    """One registered encoder's architecture and where its weights are cached.

    Attributes
    ----------
    name : str
        The encoder's registry name.
    family : {"torchvision", "hf"}
    source : str
        torchvision builder name, or the Hugging Face repo id.
    dim : int
        Embedding size the package's loader returns (same for both sizes).
    real : dict
        The public configuration (HF: ``CLIPConfig`` / ``ViTConfig`` keyword
        arguments; torchvision: builder keywords).
    tiny : dict
        Overrides of ``real`` for ``size="tiny"`` (output sizes kept).
    """

    name: str
    family: str
    source: str
    dim: int
    real: dict[str, Any] = field(default_factory=dict)
    tiny: dict[str, Any] = field(default_factory=dict)


def _clip_config(vision: dict, text: dict, projection_dim: int) -> dict[str, Any]:
    # Text tower as OpenAI's CLIP repos configure it (49408 BPE tokens, 77 positions,
    # quick_gelu; eos_token_id=2 is the legacy value their config.json keeps, which
    # makes transformers pool at the highest token id, the end-of-text token).
    return {
        "vision_config": {"image_size": 224, "hidden_act": "quick_gelu", **vision},
        "text_config": {
            "vocab_size": 49408,
            "max_position_embeddings": 77,
            "hidden_act": "quick_gelu",
            "bos_token_id": 0,
            "eos_token_id": 2,
            "pad_token_id": 1,
            **text,
        },
        "projection_dim": projection_dim,
    }


# Public sizes: ViT-B/16 (google/vit-base-patch16-224-in21k), CLIP ViT-B/16 and
# ViT-L/14 (openai/clip-vit-base-patch16, openai/clip-vit-large-patch14).
_VIT_B16 = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "image_size": 224, "patch_size": 16}  # fmt: skip
_CLIP_B_TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8,
                "num_hidden_layers": 12}  # fmt: skip
_CLIP_L_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                "num_hidden_layers": 12}  # fmt: skip
_CLIP_L14_VISION = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                    "num_hidden_layers": 24, "patch_size": 14}  # fmt: skip
_TINY_LAYER = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 2,
               "num_hidden_layers": 1}  # fmt: skip

#: The encoders with a real-size architecture here, by registry name.
ENCODER_ARCHITECTURES: dict[str, EncoderArchitecture] = {
    "resnet50": EncoderArchitecture("resnet50", "torchvision", "resnet50", 2048),
    "vit": EncoderArchitecture(
        "vit", "hf", "google/vit-base-patch16-224-in21k", 768, real=_VIT_B16,
        # the embedding is the hidden size (CLS token), so tiny keeps 768
        tiny={"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
    ),
    "clip": EncoderArchitecture(
        "clip", "hf", "openai/clip-vit-base-patch16", 512,
        real=_clip_config({**_VIT_B16, "patch_size": 16}, _CLIP_B_TEXT, 512),
        tiny=_clip_config({**_TINY_LAYER, "patch_size": 32}, _TINY_LAYER, 512),
    ),
    "clip-l14": EncoderArchitecture(
        "clip-l14", "hf", "openai/clip-vit-large-patch14", 768,
        real=_clip_config(_CLIP_L14_VISION, _CLIP_L_TEXT, 768),
        tiny=_clip_config({**_TINY_LAYER, "patch_size": 32}, _TINY_LAYER, 768),
    ),
}  # fmt: skip


def _architecture(name: str) -> EncoderArchitecture:
    if name not in ENCODER_ARCHITECTURES:
        raise ConfigError(
            f"No random-weight architecture for encoder '{name}'; known: "
            f"{', '.join(ENCODER_ARCHITECTURES)}."
        )
    return ENCODER_ARCHITECTURES[name]


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ConfigError(f"size={size!r}: choose 'real' (the public config) or 'tiny'.")


def snapshot_commit(repo_id: str, size: str = "real") -> str:
    """The made-up 40-hex commit a placed model's snapshot folder is named by."""
    return hashlib.sha1(f"fmri2image random weights {repo_id} {size}".encode()).hexdigest()


# ---------------------------------------------------------------------- encoders
def build_encoder_model(name: str, *, size: str = "real", seed: int = 0) -> Any:
    """The architecture of encoder ``name`` with random weights (``torch.manual_seed(seed)``).

    Returns torchvision's ``resnet50`` (with its ImageNet head, as the checkpoint
    holds it), transformers' ``ViTModel`` (with the pooler the in21k checkpoint
    has) or a full ``CLIPModel`` (text + vision towers).  ``size="tiny"`` has no
    effect on ``resnet50``: torchvision's builder has no width or depth setting.
    """
    import torch

    _check_size(size)
    arch = _architecture(name)
    torch.manual_seed(seed)
    if arch.family == "torchvision":
        from torchvision import models

        return models.get_model(arch.source, weights=None, num_classes=1000).eval()
    import transformers

    kwargs = {**arch.real, **(arch.tiny if size == "tiny" else {})}
    if name == "vit":
        return transformers.ViTModel(transformers.ViTConfig(**kwargs)).eval()
    return transformers.CLIPModel(transformers.CLIPConfig(**kwargs)).eval()


def _image_processor(name: str) -> Any:
    import transformers

    if name == "vit":  # the in21k repo's processor: 224x224 bilinear, mean/std 0.5
        return transformers.ViTImageProcessor(
            size={"height": 224, "width": 224}, resample=2, image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
        )  # fmt: skip
    return transformers.CLIPImageProcessor()  # the library defaults are OpenAI CLIP's


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map of the 256 bytes to printable characters, in
    its order (the printable bytes first, then the others), which numbers the
    vocabulary's first 256 tokens."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars = {b: chr(b) for b in keep}
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + len(chars) - len(keep))
    return chars


def _clip_bpe() -> tuple[dict[str, int], list[str], str]:
    """-> (vocab, merges, what they are): OpenAI CLIP's BPE where open_clip ships it."""
    base = list(_bytes_to_unicode().values())
    merges: list[str] = []
    what = "byte-level vocabulary (open_clip is not installed)"
    try:
        import open_clip

        bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
        # CLIP's vocabulary: 256 bytes, the same with </w>, 48894 merges, 2 specials.
        merges = lines[1 : 49152 - 256 - 2 + 1]
        what = "OpenAI CLIP BPE (49408 tokens, from open_clip's copy)"
    except (ImportError, OSError):
        pass
    tokens = base + [t + "</w>" for t in base] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges, what


def clip_tokenizer(scratch: str | os.PathLike) -> Any:
    """A ``CLIPTokenizer`` with CLIP's BPE (see the module docstring), files in ``scratch``."""
    from transformers import CLIPTokenizer

    vocab, merges, _ = _clip_bpe()
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (scratch / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8"
    )
    return CLIPTokenizer(
        vocab=str(scratch / "vocab.json"), merges=str(scratch / "merges.txt"), model_max_length=77
    )


def _hub_cache(hf_home: str | os.PathLike | None) -> Path:
    from fmri2image.features.encoders._net import hf_cache_dir

    return Path(hf_home) / "hub" if hf_home is not None else Path(hf_cache_dir())


def _torch_checkpoints(torch_home: str | os.PathLike | None) -> Path:
    from fmri2image.features.encoders._net import torch_checkpoint_dir

    if torch_home is not None:
        return Path(torch_home) / "hub" / "checkpoints"
    return Path(torch_checkpoint_dir())


def placed_files(
    name: str,
    *,
    torch_home: str | os.PathLike | None = None,
    hf_home: str | os.PathLike | None = None,
    size: str = "real",
) -> Path:
    """Where :func:`place_random_weights` puts encoder ``name``: the checkpoint file
    (torchvision) or the snapshot folder (Hugging Face)."""
    _check_size(size)
    arch = _architecture(name)
    if arch.family == "torchvision":
        from urllib.parse import urlparse

        from fmri2image.features.encoders._torchvision import _resolve

        _, weights = _resolve(arch.source, "IMAGENET1K_V2")
        return _torch_checkpoints(torch_home) / os.path.basename(urlparse(weights.url).path)
    repo = _hub_cache(hf_home) / ("models--" + arch.source.replace("/", "--"))
    return repo / "snapshots" / snapshot_commit(arch.source, size)


def place_random_weights(
    name: str,
    *,
    torch_home: str | os.PathLike | None = None,
    hf_home: str | os.PathLike | None = None,
    size: str = "real",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write encoder ``name`` with random weights where its loader looks for the download.

    Parameters
    ----------
    name : {"resnet50", "vit", "clip", "clip-l14"}
    torch_home, hf_home : path-like, optional
        The folders ``TORCH_HOME`` and ``HF_HOME`` name (default: the ones in use,
        ``$TORCH_HOME/hub/checkpoints`` and ``HF_HUB_CACHE`` / ``$HF_HOME/hub``).
        The loaders find the files when the same folders are in use as they run.
    size : {"real", "tiny"}
    seed : int
    overwrite : bool
        Replace files already there (default: refuse, so a real download is never
        overwritten by random weights).

    Returns
    -------
    Path
        The checkpoint file, or the hub snapshot folder (:func:`placed_files`).
    """
    target = placed_files(name, torch_home=torch_home, hf_home=hf_home, size=size)
    arch = _architecture(name)
    if arch.family == "hf":
        repo = target.parent.parent
        existing = repo / "refs" / "main"
        if existing.exists() and not overwrite:
            raise ConfigError(
                f"{repo} already holds '{arch.source}' (refs/main: "
                f"{existing.read_text().strip()}); pass overwrite=True to replace it with "
                "random weights."
            )
    elif target.exists() and not overwrite:
        raise ConfigError(
            f"{target} already exists; pass overwrite=True to replace it with random weights."
        )
    model = build_encoder_model(name, size=size, seed=seed)
    if arch.family == "torchvision":
        import torch

        with atomic_path(target) as tmp:
            torch.save(model.state_dict(), tmp)
        return target
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    model.save_pretrained(target, safe_serialization=True)
    _image_processor(name).save_pretrained(target)
    if name.startswith("clip"):
        scratch = target.parent / f".{target.name}-tokenizer-src"
        clip_tokenizer(scratch).save_pretrained(target)
        shutil.rmtree(scratch, ignore_errors=True)
    refs = target.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(target.name)
    return target


def remove_placed(
    name: str,
    *,
    torch_home: str | os.PathLike | None = None,
    hf_home: str | os.PathLike | None = None,
    size: str = "real",
) -> None:
    """Delete what :func:`place_random_weights` wrote for ``name`` (the big files)."""
    target = placed_files(name, torch_home=torch_home, hf_home=hf_home, size=size)
    if _architecture(name).family == "torchvision":
        target.unlink(missing_ok=True)
        return
    repo = target.parent.parent
    refs = repo / "refs" / "main"
    shutil.rmtree(target, ignore_errors=True)
    if refs.exists() and refs.read_text().strip() == target.name:
        shutil.rmtree(repo, ignore_errors=True)


# --------------------------------------------------------------------- diffusion
#: The generators' pipelines, by generator name (``img2img`` is ``sd15`` with an
#: initial image: the same pipeline).
PIPELINE_ARCHITECTURES = ("sd15", "sd-turbo", "unclip")

# Stable Diffusion's VAE (the same in 1.5 and 2.1) and noise schedule.
_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "block_out_channels": (128, 256, 512, 512), "sample_size": 512,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4}  # fmt: skip
_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
          "num_train_timesteps": 1000}  # fmt: skip
_UNET_BLOCKS = {
    "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
}  # fmt: skip
# SD 1.5: CLIP ViT-L/14's text tower; SD 2.1 (sd-turbo, unCLIP): OpenCLIP ViT-H/14's
# (1024 wide, 23 of its 24 layers, penultimate-layer features as SD 2 uses them).
_SD15_UNET = {**_UNET_BLOCKS, "sample_size": 64, "cross_attention_dim": 768,
              "attention_head_dim": 8}  # fmt: skip
_SD21_UNET = {**_UNET_BLOCKS, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20),
              "use_linear_projection": True}  # fmt: skip
_SD15_TEXT = {**_CLIP_L_TEXT, "projection_dim": 768}
_SD21_TEXT = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
              "num_hidden_layers": 23, "hidden_act": "gelu", "projection_dim": 512}  # fmt: skip
_TINY_UNET = {"in_channels": 4, "out_channels": 4, "layers_per_block": 1,
              "block_out_channels": (32, 64), "sample_size": 8, "cross_attention_dim": 32,
              "attention_head_dim": 8, "norm_num_groups": 32,
              "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
              "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D")}  # fmt: skip
_TINY_VAE = {**_VAE, "block_out_channels": (32, 64), "layers_per_block": 1, "sample_size": 64,
             "down_block_types": ("DownEncoderBlock2D",) * 2,
             "up_block_types": ("UpDecoderBlock2D",) * 2}  # fmt: skip
_TINY_TEXT = {**_TINY_LAYER, "projection_dim": 32}

_PIPELINES: dict[str, dict[str, dict[str, Any]]] = {
    "sd15": {"real": {"unet": _SD15_UNET, "text": _SD15_TEXT, "vae": _VAE},
             "tiny": {"unet": _TINY_UNET, "text": _TINY_TEXT, "vae": _TINY_VAE}},
    # sd-turbo: SD 2.1 base at 512 px.
    "sd-turbo": {"real": {"unet": {**_SD21_UNET, "sample_size": 64}, "text": _SD21_TEXT,
                          "vae": _VAE},
                 "tiny": {"unet": _TINY_UNET, "text": _TINY_TEXT, "vae": _TINY_VAE}},
    # stable-diffusion-2-1-unclip-small: SD 2.1 at 768 px whose UNet also takes the
    # noised CLIP ViT-L/14 image embedding and its noise level (2 x 768) as a class
    # embedding; the pipeline holds the ViT-L/14 vision tower that embeds images.
    "unclip": {"real": {"unet": {**_SD21_UNET, "sample_size": 96,
                                 "class_embed_type": "projection",
                                 "projection_class_embeddings_input_dim": 1536},
                        "text": _SD21_TEXT, "vae": _VAE,
                        "image": {**_CLIP_L14_VISION, "image_size": 224, "projection_dim": 768}},
               "tiny": {"unet": {**_TINY_UNET, "class_embed_type": "projection",
                                 "projection_class_embeddings_input_dim": 1536},
                        "text": _TINY_TEXT, "vae": _TINY_VAE,
                        "image": {**_TINY_LAYER, "image_size": 32, "patch_size": 16,
                                  "projection_dim": 768}}},
}  # fmt: skip


def pipeline_modules(name: str, *, size: str = "real") -> dict[str, Any]:
    """The networks of generator ``name``'s pipeline (``unet``, ``vae``, ``text_encoder``
    and, for ``unclip``, ``image_encoder``), randomly initialized from the current seed.

    Built under ``torch.device("meta")`` they cost nothing, e.g. to count parameters.
    """
    import diffusers
    import transformers

    _check_size(size)
    if name not in _PIPELINES:
        raise ConfigError(
            f"No random-weight pipeline for generator '{name}'; known: {', '.join(_PIPELINES)}."
        )
    cfg = _PIPELINES[name][size]
    text = _clip_config({}, cfg["text"], 0)["text_config"]
    modules = {
        "unet": diffusers.UNet2DConditionModel(**cfg["unet"]),
        "vae": diffusers.AutoencoderKL(**cfg["vae"]),
        "text_encoder": transformers.CLIPTextModel(transformers.CLIPTextConfig(**text)),
    }
    if "image" in cfg:
        modules["image_encoder"] = transformers.CLIPVisionModelWithProjection(
            transformers.CLIPVisionConfig(hidden_act="quick_gelu", **cfg["image"])
        )
    return modules


def build_pipeline(
    name: str, *, size: str = "real", seed: int = 0, scratch: str | os.PathLike
) -> Any:
    """The diffusers pipeline of generator ``name`` with random weights.

    ``sd15`` and ``sd-turbo`` are ``StableDiffusionPipeline`` (safety checker left
    out: with random weights its verdicts would be arbitrary and trigger
    regenerations; the generators are run with ``safety_checker=False``), ``unclip``
    a ``StableUnCLIPImg2ImgPipeline``.  ``scratch`` receives the tokenizer's files.
    """
    import diffusers
    import torch
    import transformers

    torch.manual_seed(seed)
    modules = pipeline_modules(name, size=size)
    unet, vae, text = modules["unet"], modules["vae"], modules["text_encoder"]
    tokenizer = clip_tokenizer(scratch)
    if name == "unclip":
        image = modules["image_encoder"]
        from diffusers.pipelines.stable_diffusion import StableUnCLIPImageNormalizer

        return diffusers.StableUnCLIPImg2ImgPipeline(
            feature_extractor=transformers.CLIPImageProcessor(),
            image_encoder=image,
            image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=image.config.projection_dim),
            image_noising_scheduler=diffusers.DDPMScheduler(
                num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
            ),
            tokenizer=tokenizer,
            text_encoder=text,
            unet=unet,
            scheduler=diffusers.DDIMScheduler(
                **_BETAS, prediction_type="v_prediction", clip_sample=False,
                set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing",
            ),
            vae=vae,
        )  # fmt: skip
    if name == "sd-turbo":
        scheduler = diffusers.EulerDiscreteScheduler(
            **_BETAS, timestep_spacing="trailing", steps_offset=1
        )
    else:
        scheduler = diffusers.PNDMScheduler(**_BETAS, skip_prk_steps=True, steps_offset=1)
    return diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


def save_pipeline(
    name: str,
    folder: str | os.PathLike,
    *,
    size: str = "real",
    seed: int = 0,
    dtype: str = "float32",
) -> Path:
    """Write :func:`build_pipeline`'s pipeline to ``folder`` (``save_pretrained``,
    safetensors), the form the generators take as ``model=<folder>``.

    ``dtype="float16"`` halves the files (SD 1.5: 2 GB instead of 4); the generators
    load them in the precision they are asked for.
    """
    import torch

    folder = Path(folder)
    scratch = folder.parent / f".{folder.name}-tokenizer-src"
    pipe = build_pipeline(name, size=size, seed=seed, scratch=scratch)
    if dtype != "float32":  # (built in float32)
        pipe.to(dtype=getattr(torch, dtype))
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(scratch, ignore_errors=True)
    del pipe
    return folder
