"""timm models as encoders (``timm:<name>`` or ``timm:<name>:<file.safetensors>``).

The embedding is timm's pooled feature vector (``num_classes=0``: the model's own
global pool, i.e. the input of its classifier), and the preprocessing is the
model's pretrained data config (``resolve_model_data_config`` +
``create_transform``: input size, interpolation, crop_pct, mean/std), so an
``in21k`` ViT gets its 0.5 statistics and a ResNet ImageNet's.

Weights: the ``model.safetensors`` of the model's Hugging Face repo
(``pretrained_cfg.hf_hub_id``), resolved through the hub cache, or a local
safetensors file given after a second colon. Pickled checkpoints are refused.
"""

from __future__ import annotations

import os
from typing import Any

from fmri2image.errors import ConfigError, ModelUnavailableError, require
from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import ImageTransform, RGBTransform, TorchEncoder
from fmri2image.features.encoders._net import HubAccess, hub_access, offline_help

__all__ = ["load_timm", "timm_spec"]


def _timm():
    return require("timm", "hf", "timm encoders ('timm:<name>')")


def _parse(arg: str) -> tuple[str, str | None]:
    name, _, file = arg.partition(":")
    return name, (os.path.expanduser(file) if file else None)


def _pretrained_cfg(timm: Any, name: str) -> Any:
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0]}*")[:5]
        hint = f" Similar: {', '.join(close)}." if close else ""
        raise ConfigError(f"'{name}' is not a timm model.{hint} See timm.list_models().")
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(
            f"timm model '{name}' has no pretrained weights registered; name a tagged "
            "variant with weights, e.g. 'timm:resnet50.a1_in1k' (timm.list_pretrained())."
        )
    return cfg


def _data_config(timm: Any, model: Any) -> dict[str, Any]:
    return dict(timm.data.resolve_model_data_config(model))


def _describe(cfg: dict[str, Any]) -> str:
    _, h, w = cfg["input_size"]
    crop_pct = float(cfg.get("crop_pct", 1.0))
    mode = cfg.get("crop_mode", "center")
    mean = [round(float(m), 8) for m in cfg["mean"]]
    std = [round(float(s), 8) for s in cfg["std"]]
    return (
        f"timm eval transform: resize to {h}/{crop_pct:g} ({cfg['interpolation']}), "
        f"{mode} crop {h}x{w}; (x/255 - {mean}) / {std}"
    )


def _spec(
    name: str, weights: str, model_name: str, dim: int, cfg: dict[str, Any], pcfg, head: bool
) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        weights=weights,
        layer="pooled features (num_classes=0: input of the classifier)",
        dim=int(dim),
        image_size=int(cfg["input_size"][1]),
        preprocessing=_describe(cfg),
        license=str(getattr(pcfg, "license", None) or "see the model card"),
        extra={
            "family": "timm",
            "model": model_name,
            "hf_hub_id": getattr(pcfg, "hf_hub_id", None),
            "data_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        },
        classifier_head=head,
        text_tower=False,
    )


def _pixel_transform(cfg: dict[str, Any]) -> ImageTransform | None:
    """timm's centre-crop eval transform as an :class:`ImageTransform` (``embed_pixels``).

    Only the plain case (square input, ``crop_mode`` center, no border trim) has one.
    """
    import math

    _, h, w = cfg["input_size"]
    mode = cfg.get("crop_mode") or "center"
    if h != w or mode != "center" or cfg.get("crop_border_pixels"):
        return None
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    try:
        return ImageTransform(
            resize=math.floor(h / crop_pct),
            crop=int(h),
            interpolation=str(cfg.get("interpolation", "bilinear")),
            scale=1.0 / 255.0,
            mean=tuple(float(m) for m in cfg["mean"]),
            std=tuple(float(s) for s in cfg["std"]),
        )
    except ConfigError:  # e.g. an interpolation PIL does not name
        return None


def _head_key(pcfg: Any) -> str | None:
    """The classifier weight's key when the pretrained head is an ImageNet-1k one."""
    classifier = getattr(pcfg, "classifier", None)
    if getattr(pcfg, "num_classes", 0) == 1000 and isinstance(classifier, str):
        return f"{classifier}.weight"
    return None


def _file_has_head(path: str, key: str, dim: int) -> bool:
    """Whether a safetensors file holds a (1000, dim) tensor under ``key`` (header only)."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as fh:
        if key not in fh.keys():
            return False
        shape = fh.get_slice(key).get_shape()
    return list(shape) == [1000, dim]


def _local_weights(pcfg: Any, file: str | None, cache_dir) -> str | None:
    """The weights file if it is on disk now (local path or hub cache); no network."""
    if file is not None:
        return file if os.path.isfile(file) else None
    repo = getattr(pcfg, "hf_hub_id", None)
    if not repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, "model.safetensors", cache_dir=cache_dir)
    return hit if isinstance(hit, str) else None


def timm_spec(
    arg: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> EncoderSpec:
    """Spec of ``timm:<name>``: the model is built on the meta device, no weights read."""
    import torch

    del local_files_only
    timm = _timm()
    model_name, file = _parse(arg)
    pcfg = _pretrained_cfg(timm, model_name)
    with torch.device("meta"):
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = _data_config(timm, model)
    weights = file or f"{pcfg.hf_hub_id or model_name} (timm)"
    # The head: the pretrained config says whether one exists; a file already on disk
    # confirms it exactly as load_timm will (header read only).
    key = _head_key(pcfg)
    head = key is not None
    local = _local_weights(pcfg, file, cache_dir) if head else None
    if local is not None and local.endswith(".safetensors"):
        head = _file_has_head(local, key, model.num_features)
    return _spec(f"timm:{arg}", weights, model_name, model.num_features, cfg, pcfg, head)


def _weights_file(pcfg: Any, model_name: str, file: str | None, cache_dir, local_files_only) -> str:
    if file is not None:
        if not file.endswith(".safetensors"):
            raise ConfigError(
                f"timm weights file '{file}' is not a .safetensors file; fmri2image does not "
                "unpickle checkpoints. Convert it once with safetensors.torch.save_file."
            )
        if not os.path.isfile(file):
            raise ModelUnavailableError(f"timm weights file '{file}' does not exist.")
        return file
    repo = getattr(pcfg, "hf_hub_id", None)
    if not repo:
        raise ModelUnavailableError(
            f"timm model '{model_name}' has no Hugging Face hub weights. Download its "
            "checkpoint, convert it to safetensors and pass 'timm:<name>:<file.safetensors>'."
        )
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo, "model.safetensors", cache_dir=cache_dir)
    access = HubAccess(True, "cached") if isinstance(cached, str) else hub_access(local_files_only)
    try:
        return hf_hub_download(
            repo, "model.safetensors", cache_dir=cache_dir, local_files_only=access.offline
        )
    except Exception as exc:  # LocalEntryNotFoundError, HTTP errors, ...
        how = access.describe() if access.offline else f"it could not be downloaded ({exc})"
        raise ModelUnavailableError(
            f"Weights of timm model '{model_name}' (hub repo {repo}, model.safetensors) are not "
            f"in the local Hugging Face cache and {how}. "
            f"{offline_help(repo, files='model.safetensors', cache_dir=cache_dir)} Or pass the "
            "file itself as the model 'timm:<name>:<path to model.safetensors>'."
        ) from exc


def load_timm(
    arg: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TorchEncoder:
    """Build ``timm:<name>[:<file.safetensors>]`` as an encoder (pooled features)."""
    from safetensors import safe_open

    from fmri2image.imagenet import imagenet1k_wnids

    timm = _timm()
    model_name, file = _parse(arg)
    pcfg = _pretrained_cfg(timm, model_name)
    path = _weights_file(pcfg, model_name, file, cache_dir, local_files_only)
    model = timm.create_model(
        model_name, pretrained=True, num_classes=0, pretrained_cfg_overlay={"file": path}
    )
    cfg = _data_config(timm, model)
    transform = RGBTransform(timm.data.create_transform(**cfg, is_training=False))
    head = None
    key = _head_key(pcfg)
    if key is not None and _file_has_head(path, key, model.num_features):
        with safe_open(path, framework="pt") as fh:
            w = fh.get_tensor(key).float()
        head = (w.numpy().copy(), list(imagenet1k_wnids()))
    weights = file or f"{pcfg.hf_hub_id} (Hugging Face hub, timm)"
    spec = _spec(
        f"timm:{arg}", weights, model_name, model.num_features, cfg, pcfg, head is not None
    )
    return TorchEncoder(
        spec, model, transform, device=device, dtype=dtype, head=head,
        pixel_transform=_pixel_transform(cfg),
    )  # fmt: skip
