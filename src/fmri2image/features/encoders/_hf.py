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
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError, require
from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import TorchEncoder, hub_offline

__all__ = ["HFImageProcessorTransform", "hf_spec", "load_hf"]

_CLIP_TYPES = ("clip", "clip_vision_model")
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


def _unavailable(source: str, exc: BaseException, offline: bool) -> ModelUnavailableError:
    if _is_pathlike(source):
        return ModelUnavailableError(
            f"Cannot load a Hugging Face model from the directory '{source}' ({exc}). "
            "It must hold config.json, model.safetensors and preprocessor_config.json as "
            "written by model.save_pretrained(dir, safe_serialization=True) and "
            "image_processor.save_pretrained(dir)."
        )
    how = (
        "Downloads are disabled (HF_HUB_OFFLINE=1 or local_files_only=True). "
        if offline
        else "It could not be downloaded. "
    )
    return ModelUnavailableError(
        f"Model '{source}' is not available locally. {how}On a machine with internet run "
        f"`huggingface-cli download {source}` (or `hf download {source}`), then either copy "
        "the Hugging Face cache here and set HF_HOME (or pass cache_dir), or pass the "
        f"downloaded folder itself as 'hf:/path/to/folder'. Details: {exc}"
    )


def _processor_kwargs(transformers: Any) -> dict[str, Any]:
    major = int(transformers.__version__.split(".")[0])
    # PIL backend = the classic numpy/PIL processors the models were released with.
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


def _load_config_and_processor(source, *, cache_dir, local_files_only, revision=None):
    transformers = _transformers()
    offline = hub_offline(local_files_only)
    if _is_pathlike(source) and not os.path.isdir(os.path.expanduser(source)):
        raise ModelUnavailableError(
            f"Model directory '{source}' does not exist. Pass an existing folder written by "
            "save_pretrained, or a hub id like 'hf:facebook/dinov2-small'."
        )
    source = os.path.expanduser(source)
    common = {"cache_dir": cache_dir, "local_files_only": offline, "trust_remote_code": False}
    if revision:
        common["revision"] = revision
    try:
        config = transformers.AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValueError) and "model_type" not in str(exc):
            raise
        raise _unavailable(source, exc, offline) from exc
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
    return transformers, config, processor, common


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
    transformers, config, processor, _ = _load_config_and_processor(
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
    )


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
    transformers, config, processor, common = _load_config_and_processor(
        source, cache_dir=cache_dir, local_files_only=local_files_only, revision=revision
    )
    source = os.path.expanduser(source)
    model_cls, pooling, kw = _model_class_and_pooling(transformers, config)
    offline = common["local_files_only"]
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
        raise _unavailable(source, exc, offline) from exc
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
    )
    return TorchEncoder(
        spec,
        model,
        HFImageProcessorTransform(processor),
        device=device,
        dtype=dtype,
        forward_fn=forward,
    )
