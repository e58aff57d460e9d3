"""Hugging Face transformers vision models as encoders (``vit``, ``clip``, ``hf:<id>``).

A hub id (``"facebook/dinov2-small"``) and a local directory written by
``save_pretrained`` go through the same function, :func:`load_hf`. Only
safetensors checkpoints are loaded (``use_safetensors=True``) and remote code is
never trusted. Each model is paired with its repo's own image processor (PIL
backend), so CLIP gets CLIP's statistics and bicubic resize, ViT its 0.5 mean/std.

Which activation is the embedding
---------------------------------
==========================  =================================================
``model_type``              embedding
==========================  =================================================
``clip``, ``clip_vision``   ``image_embeds`` of ``CLIPVisionModelWithProjection``
                            (pooled CLS after ``post_layernorm``, projected): the
                            vector CLIP compares with text.
``siglip``                  ``pooler_output`` of ``SiglipVisionModel`` (MAP head).
``vit``, ``deit``           ``last_hidden_state[:, 0]``: the CLS token after the
                            final LayerNorm, i.e. what ``ViTForImageClassification``
                            classifies. ViT's ``pooler`` (dense + tanh) exists only
                            in the ImageNet-21k checkpoints (the "pre-logits" layer);
                            in every other ViT checkpoint it is randomly initialized,
                            so it is not used.
anything else               ``pooler_output`` (DINOv2: CLS after LayerNorm;
                            ConvNeXt/ResNet/Swin: global average pool), else the
                            token mean of ``last_hidden_state``.
==========================  =================================================

Text tower
----------
A full CLIP checkpoint (``model_type == "clip"``) also serves ``embed_text``: on first
use, ``CLIPTextModelWithProjection`` and the repo's tokenizer are loaded from the same
files (for a hub id, the same snapshot commit), and ``text_embeds`` is returned, i.e.
``CLIPModel.get_text_features``. Both towers take the composite config's
``projection_dim`` (a sub-config saved by ``save_pretrained`` may hold a stale default).

Offline
-------
Before the hub is asked for anything, :func:`~fmri2image.features.encoders._net.hub_access`
checks the endpoint with one quick request; when it cannot be reached, only cached
files are used (no ~25 s retry back-off), and a missing model says how to get it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError, require
from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import ImageTransform, TorchEncoder
from fmri2image.features.encoders._net import HubAccess, hub_access, offline_help

__all__ = ["HFImageProcessorTransform", "hf_capabilities", "hf_spec", "load_hf"]

_CLIP_TYPES = ("clip", "clip_vision_model")
# Composite configs whose text tower fmri2image can embed prompts with.
_TEXT_TYPES = ("clip",)
_SIGLIP_TYPES = ("siglip", "siglip_vision_model")
_CLS_TYPES = ("vit", "deit")
# Composite (image + text) configs whose vision tower we know how to pick out.
_SUPPORTED_COMPOSITE = _CLIP_TYPES + _SIGLIP_TYPES


@dataclass
class HFImageProcessorTransform:
    """Picklable wrapper: one PIL image -> ``pixel_values`` (3, H, W) via the repo's processor."""

    processor: Any

    def __call__(self, image):
        img = image.convert("RGB") if image.mode != "RGB" else image
        return self.processor(images=img, return_tensors="pt")["pixel_values"][0].float()


def _transformers():
    return require("transformers", "hf", "Hugging Face encoders ('hf:', 'vit', 'clip')")


def _is_pathlike(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or os.path.isdir(source)


def _unavailable(
    source: str, exc: BaseException, access: HubAccess, cache_dir: str | None = None
) -> ModelUnavailableError:
    if _is_pathlike(source):
        return ModelUnavailableError(
            f"Cannot load a Hugging Face model from the directory '{source}' ({exc}). "
            "It must hold config.json, model.safetensors and preprocessor_config.json as "
            "written by model.save_pretrained(dir, safe_serialization=True) and "
            "image_processor.save_pretrained(dir)."
        )
    return ModelUnavailableError(
        f"Model '{source}' is not in the local Hugging Face cache and {access.describe()}. "
        f"{offline_help(source, cache_dir=cache_dir)} Or download the folder and pass it as "
        f"the model 'hf:/path/to/folder'. (In Python: get_encoder(..., cache_dir=...) picks "
        f"another cache.) Details: {_first_line(exc)}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _processor_kwargs(transformers: Any) -> dict[str, Any]:
    major = int(transformers.__version__.split(".")[0])
    # PIL backend = the classic numpy/PIL processors the models were released with.
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


def _load_config(transformers, source, *, cache_dir, local_files_only, revision=None):
    """-> (config, from_pretrained kwargs, HubAccess); reads config.json only."""
    if _is_pathlike(source):
        if not os.path.isdir(os.path.expanduser(source)):
            raise ModelUnavailableError(
                f"Model directory '{source}' does not exist. Pass an existing folder written by "
                "save_pretrained, or a hub id like 'hf:facebook/dinov2-small'."
            )
        access = HubAccess(True, "local directory")
    else:
        access = hub_access(local_files_only)
    source = os.path.expanduser(source)
    common = {
        "cache_dir": cache_dir,
        "local_files_only": access.offline,
        "trust_remote_code": False,
    }
    if revision:
        common["revision"] = revision
    try:
        config = transformers.AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "model_type" not in str(exc):
            raise
        raise _unavailable(source, exc, access, cache_dir) from exc
    return config, common, access


def _load_config_and_processor(source, *, cache_dir, local_files_only, revision=None):
    transformers = _transformers()
    config, common, access = _load_config(
        transformers, source, cache_dir=cache_dir, local_files_only=local_files_only,
        revision=revision,
    )  # fmt: skip
    source = os.path.expanduser(source)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(
            source, **common, **_processor_kwargs(transformers)
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"Model '{source}' has no usable image processor ({exc}). fmri2image uses each "
            "model's own preprocessing; save one with image_processor.save_pretrained(dir) "
            "(preprocessor_config.json) next to the weights."
        ) from exc
    return transformers, config, processor, common, access


def _model_class_and_pooling(transformers: Any, config: Any) -> tuple[Any, str, dict]:
    model_type = config.model_type
    if model_type in _CLIP_TYPES:
        return transformers.CLIPVisionModelWithProjection, "image_embeds", {}
    if model_type in _SIGLIP_TYPES:
        return transformers.SiglipVisionModel, "pooler_output", {}
    if model_type in _CLS_TYPES:
        return transformers.AutoModel, "cls", {"add_pooling_layer": False}
    if hasattr(config, "vision_config") or hasattr(config, "text_config"):
        raise ConfigError(
            f"'{model_type}' is a multi-part model; fmri2image knows how to take the image "
            f"embedding of: {', '.join(_SUPPORTED_COMPOSITE)}. For others, register a custom "
            "encoder with fmri2image.features.register_encoder."
        )
    return transformers.AutoModel, "auto", {}


def _resample_name(resample: Any) -> str:
    from PIL import Image

    if resample is None:
        return "default"
    try:
        return Image.Resampling(int(resample)).name.lower()
    except (TypeError, ValueError):
        return str(getattr(resample, "name", resample)).lower()


@contextlib.contextmanager
def _quiet_transformers(transformers: Any):
    """Silence transformers' per-key load report (we check missing keys ourselves)."""
    logging = transformers.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _processor_summary(processor: Any) -> tuple[int, str, dict[str, Any]]:
    """-> (output side in pixels, description, JSON-able settings)."""
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    do_crop = bool(getattr(processor, "do_center_crop", False)) and bool(crop)
    resample_name = _resample_name(getattr(processor, "resample", None))
    mean = [float(m) for m in (getattr(processor, "image_mean", None) or [0, 0, 0])]
    std = [float(s) for s in (getattr(processor, "image_std", None) or [1, 1, 1])]
    rescale = float(getattr(processor, "rescale_factor", 1 / 255))
    parts = []
    if getattr(processor, "do_resize", True) and size:
        if "shortest_edge" in size:
            parts.append(f"resize shorter side to {size['shortest_edge']} ({resample_name})")
        elif "height" in size:
            parts.append(f"resize to {size['height']}x{size['width']} ({resample_name})")
        else:
            parts.append(f"resize {size} ({resample_name})")
    if do_crop:
        parts.append(f"center crop {crop['height']}x{crop['width']}")
    scale = "x/255" if abs(rescale - 1 / 255) < 1e-9 else f"x*{rescale:g}"
    if getattr(processor, "do_normalize", True):
        parts.append(f"({scale} - {[round(m, 8) for m in mean]}) / {[round(s, 8) for s in std]}")
    if do_crop:
        side = int(crop["height"])
    else:
        side = int(size.get("height") or size.get("shortest_edge") or 0)
    settings = {
        "processor": type(processor).__name__,
        "size": size,
        "crop_size": crop if do_crop else None,
        "resample": resample_name,
        "rescale_factor": rescale,
        "image_mean": mean,
        "image_std": std,
    }
    return side, "; ".join(parts), settings


#: Processors whose whole chain is resize / center crop / rescale / normalize, so
#: :meth:`TorchEncoder.embed_pixels` can redo it in torch.
_PIXEL_PROCESSORS = (
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "CLIPImageProcessor",
    "SiglipImageProcessor",
    "BitImageProcessor",
)


def _pixel_transform(processor: Any) -> ImageTransform | None:
    """The processor as an :class:`ImageTransform` (for ``embed_pixels``), or None."""
    kind = type(processor).__name__.removesuffix("Pil").removesuffix("Fast")
    if kind not in _PIXEL_PROCESSORS:
        return None
    size = dict(getattr(processor, "size", None) or {})
    crop = dict(getattr(processor, "crop_size", None) or {})
    resize: int | tuple[int, int] | None = None
    if getattr(processor, "do_resize", True) and size:
        if size.get("shortest_edge"):
            resize = int(size["shortest_edge"])
        elif size.get("height") and size.get("width"):
            resize = (int(size["height"]), int(size["width"]))
        else:
            return None
    side = None
    if getattr(processor, "do_center_crop", False) and crop:
        if crop.get("height") != crop.get("width"):
            return None
        side = int(crop["height"])
    interpolation = _resample_name(getattr(processor, "resample", None))
    rescale = float(getattr(processor, "rescale_factor", 1 / 255))
    normalize = getattr(processor, "do_normalize", True)
    try:
        return ImageTransform(
            resize=resize,
            crop=side,
            interpolation=interpolation if interpolation != "default" else "bilinear",
            scale=rescale if getattr(processor, "do_rescale", True) else 1.0,
            mean=tuple(float(m) for m in processor.image_mean) if normalize else (0.0,) * 3,
            std=tuple(float(v) for v in processor.image_std) if normalize else (1.0,) * 3,
        )
    except (ConfigError, TypeError, ValueError):
        return None


def _make_forward(pooling: str):
    def forward(model, x):
        out = model(pixel_values=x)
        if pooling == "image_embeds":
            return out.image_embeds
        if pooling == "cls":
            return out.last_hidden_state[:, 0]
        if pooling == "pooler_output":
            return out.pooler_output
        # auto: pooler when the model has one, else mean over tokens/positions
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.ndim == 3 else hidden.mean(dim=(2, 3))

    return forward


_LAYER_NAMES = {
    "image_embeds": "image_embeds (projected pooled CLS)",
    "cls": "last_hidden_state[:, 0] (CLS token after the final LayerNorm)",
    "pooler_output": "pooler_output",
    "auto": "pooler_output (or token mean of last_hidden_state)",
}


def _embedding_dim(transformers: Any, model_cls: Any, config: Any, pooling: str, side: int, kw):
    """Embedding size from a forward pass on the meta device (no weights, no compute)."""
    import torch

    with torch.device("meta"):
        if model_cls is transformers.AutoModel:
            model = model_cls.from_config(config, **kw)
        else:
            sub = config.vision_config if hasattr(config, "vision_config") else config
            if pooling == "image_embeds" and hasattr(config, "projection_dim"):
                sub.projection_dim = config.projection_dim
            model = model_cls._from_config(sub)
        x = torch.empty(1, 3, side, side)
        return int(_make_forward(pooling)(model.eval(), x).reshape(1, -1).shape[1])


def _license(config: Any) -> str:
    return "see the model card (Hugging Face hub)"


def _commit(source: str, config: Any, cache_dir: str | None, revision: str | None) -> str | None:
    """The hub commit the files were loaded from (None for local directories)."""
    commit = getattr(config, "_commit_hash", None)
    if commit or _is_pathlike(source):
        return commit
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(
        source, "config.json", cache_dir=cache_dir, revision=revision or "main"
    )
    if isinstance(cached, str):  # .../snapshots/<commit>/config.json
        return Path(cached).parent.name
    return None


def _weights_label(source: str, commit: str | None) -> str:
    if _is_pathlike(source):
        return f"local directory {os.path.abspath(os.path.expanduser(source))}"
    return f"{source} (Hugging Face hub{', revision ' + commit if commit else ''})"


def hf_spec(
    source: str,
    *,
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
    name: str | None = None,
) -> EncoderSpec:
    """Spec of ``hf:<source>`` from its config and processor files (weights not read)."""
    transformers, config, processor, _, _ = _load_config_and_processor(
        source, cache_dir=cache_dir, local_files_only=local_files_only
    )
    model_cls, pooling, kw = _model_class_and_pooling(transformers, config)
    side, description, settings = _processor_summary(processor)
    dim = _embedding_dim(transformers, model_cls, config, pooling, side or 224, kw)
    commit = _commit(source, config, cache_dir, None)
    return EncoderSpec(
        name=name or f"hf:{source}",
        weights=_weights_label(source, commit),
        layer=_LAYER_NAMES[pooling],
        dim=dim,
        image_size=side,
        preprocessing=f"repo image processor ({settings['processor']}): {description}",
        license=_license(config),
        extra={
            "family": "hf",
            "model_type": config.model_type,
            "model_class": model_cls.__name__,
            "pooling": pooling,
            "revision": commit,
            "transform": settings,
        },
        classifier_head=False,
        text_tower=model_type_has_text(config),
    )


def hf_capabilities(
    source: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> dict[str, bool]:
    """What ``hf:<source>`` can serve, from its config.json alone.

    ``hf:`` encoders are built with ``AutoModel`` (no classification head), so they
    never have class prototypes; full CLIP checkpoints (``model_type == "clip"``) have
    a text tower.
    """
    transformers = _transformers()
    config, _, _ = _load_config(
        transformers, source, cache_dir=cache_dir, local_files_only=local_files_only
    )
    return {"classifier_head": False, "text_tower": model_type_has_text(config)}


def model_type_has_text(config: Any) -> bool:
    """Whether fmri2image can embed text with this checkpoint (full CLIP models)."""
    return getattr(config, "model_type", None) in _TEXT_TYPES and hasattr(config, "text_config")


def _sub_config(config: Any, which: str) -> Any:
    """``config.text_config`` / ``vision_config`` with the composite's projection size."""
    sub = copy.deepcopy(getattr(config, which))
    if hasattr(config, "projection_dim"):
        sub.projection_dim = config.projection_dim
    return sub


def _text_loader(transformers: Any, source: str, config: Any, common: dict, access: HubAccess,
                 commit: str | None, cache_dir: str | None):  # fmt: skip
    """``load(device, torch_dtype) -> encode(prompts) -> Tensor`` for a CLIP checkpoint.

    The text tower and tokenizer come from the same files as the vision tower (for a
    hub id the same snapshot commit), with the same offline decision.
    """
    kw = dict(common)
    if commit and not _is_pathlike(source):
        kw["revision"] = commit

    def load(device: str, torch_dtype: Any):
        try:
            with warnings.catch_warnings(), _quiet_transformers(transformers):
                warnings.simplefilter("ignore", UserWarning)
                model, info = transformers.CLIPTextModelWithProjection.from_pretrained(
                    source,
                    config=_sub_config(config, "text_config"),
                    use_safetensors=True,
                    output_loading_info=True,
                    **kw,
                )
        except OSError as exc:
            raise _unavailable(source, exc, access, cache_dir) from exc
        missing = list(info.get("missing_keys", []))
        if missing:
            raise DataFormatError(
                f"The checkpoint '{source}' lacks weights for {len(missing)} parameters of the "
                f"CLIP text tower (e.g. {', '.join(sorted(missing)[:3])}); text embeddings "
                "would be random. Point to a full CLIPModel checkpoint (text + vision)."
            )
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kw)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelUnavailableError(
                f"Model '{source}' has no usable tokenizer ({_first_line(exc)}), so its text "
                "tower cannot be used. A CLIP folder needs the tokenizer files written by "
                "tokenizer.save_pretrained(dir) (tokenizer.json or vocab.json + merges.txt, "
                "tokenizer_config.json) next to the weights."
            ) from exc
        # Without tokenizer files transformers 5 silently builds an empty CLIP tokenizer
        # (3 special tokens): every prompt would embed alike. Refuse that.
        vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        if len(tokenizer) <= 3 or len(tokenizer) < vocab // 2:
            raise ModelUnavailableError(
                f"Model '{source}' has no usable tokenizer files: the tokenizer found has "
                f"{len(tokenizer)} tokens for a text tower of {vocab}. A CLIP folder needs "
                "the files written by tokenizer.save_pretrained(dir) (tokenizer.json or "
                "vocab.json + merges.txt, tokenizer_config.json) next to the weights."
            )
        model = model.eval().requires_grad_(False).to(device=device, dtype=torch_dtype)
        max_length = int(getattr(model.config, "max_position_embeddings", 77))

        def encode(prompts: list[str]):
            tokens = tokenizer(
                prompts, padding=True, truncation=True, max_length=max_length,
                return_tensors="pt",
            )  # fmt: skip
            out = model(
                input_ids=tokens["input_ids"].to(device),
                attention_mask=tokens["attention_mask"].to(device),
            )
            return out.text_embeds

        return encode

    return load


def load_hf(
    source: str,
    *,
    name: str | None = None,
    expected: EncoderSpec | None = None,
    revision: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TorchEncoder:
    """Load a transformers vision model + its image processor as an encoder.

    Parameters
    ----------
    source : str
        Hub id (``"openai/clip-vit-base-patch16"``) or a local ``save_pretrained`` folder.
    name : str, optional
        Registry name for the spec (default ``"hf:<source>"``).
    expected : EncoderSpec, optional
        For named entries (``vit``, ``clip``): the loaded model must match its ``dim``.
    revision : str, optional
        Hub branch, tag or commit to pin.
    device, dtype, cache_dir, local_files_only
        See :func:`fmri2image.features.get_encoder`.
    """
    transformers, config, processor, common, access = _load_config_and_processor(
        source, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision
    )
    source = os.path.expanduser(source)
    model_cls, pooling, kw = _model_class_and_pooling(transformers, config)
    if model_type_has_text(config):
        # A full CLIP checkpoint: load its vision half with the composite's projection size
        # (the saved sub-config may carry a stale default projection_dim).
        kw = {**kw, "config": _sub_config(config, "vision_config")}
    try:
        with warnings.catch_warnings(), _quiet_transformers(transformers):
            warnings.simplefilter("ignore", UserWarning)
            model, info = model_cls.from_pretrained(
                source,
                use_safetensors=True,
                output_loading_info=True,
                **common,
                **kw,
            )
    except OSError as exc:
        if "safetensors" in str(exc) and (
            _is_pathlike(source) or Path(source).exists() or "does not appear" in str(exc)
        ):
            raise ModelUnavailableError(
                f"'{source}' has no safetensors weights (model.safetensors); fmri2image never "
                "unpickles .bin checkpoints. Convert once on a trusted machine with "
                "model.save_pretrained(dir, safe_serialization=True), or pin a hub revision "
                f"that has safetensors. Details: {exc}"
            ) from exc
        raise _unavailable(source, exc, access, cache_dir) from exc
    missing = [k for k in info.get("missing_keys", []) if "pooler" not in k or pooling == "auto"]
    if missing:
        raise DataFormatError(
            f"The checkpoint '{source}' lacks weights for {len(missing)} parameters of "
            f"{model_cls.__name__} (e.g. {', '.join(sorted(missing)[:3])}); they would be random. "
            "Point to a checkpoint that contains the full vision model."
        )
    side, description, settings = _processor_summary(processor)
    commit = _commit(source, config, cache_dir, revision)
    forward = _make_forward(pooling)
    import torch

    with torch.inference_mode():
        probe = forward(model.eval(), torch.zeros(1, 3, side or 224, side or 224))
    dim = int(probe.reshape(1, -1).shape[1])
    name = name or f"hf:{source}"
    if expected is not None and dim != expected.dim:
        raise DataFormatError(
            f"The model loaded for '{name}' from '{source}' gives {dim}-d embeddings, but "
            f"'{name}' is registered as {expected.weights} with {expected.dim}-d embeddings. "
            f"Use 'hf:{source}' for a different model."
        )
    spec = EncoderSpec(
        name=name,
        weights=_weights_label(source, commit),
        layer=_LAYER_NAMES[pooling],
        dim=dim,
        image_size=side,
        preprocessing=f"repo image processor ({settings['processor']}): {description}",
        license=expected.license if expected is not None else _license(config),
        extra={
            "family": "hf",
            "model_type": config.model_type,
            "model_class": type(model).__name__,
            "pooling": pooling,
            "revision": commit,
            "transform": settings,
        },
        classifier_head=False,
        text_tower=model_type_has_text(config),
    )
    text = (
        _text_loader(transformers, source, config, common, access, commit, cache_dir)
        if spec.text_tower
        else None
    )
    return TorchEncoder(
        spec,
        model,
        HFImageProcessorTransform(processor),
        device=device,
        dtype=dtype,
        forward_fn=forward,
        text_loader=text,
        pixel_transform=_pixel_transform(processor),
    )
