"""OpenCLIP image towers as encoders.

Forms:

* ``open_clip:<arch>:<pretrained tag>`` — e.g. ``open_clip:ViT-B-32:laion2b_s34b_b79k``
  (weights resolved by open_clip through the Hugging Face hub cache);
* ``open_clip:<arch>:<file.safetensors>`` — a local checkpoint for a built-in arch;
* ``open_clip:hf-hub:<org/repo>`` and ``open_clip:local-dir:<folder>`` — open_clip's
  own schemas (config + weights in one repo or folder).

The embedding is ``model.encode_image`` (the projected image embedding, not
L2-normalized), and the preprocessing is open_clip's validation transform for that
model (its own mean/std, resize mode and interpolation).

Every open_clip model has a text tower in the same space: ``embed_text`` rebuilds
the model from the same checkpoint on first use (the image encoder drops the text
tower to save memory) and returns ``model.encode_text`` of the tokenized prompts,
with the tokenizer open_clip pairs with the model (the packaged BPE
``SimpleTokenizer`` for OpenAI/LAION CLIPs, a Hugging Face tokenizer where the
model config names one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fmri2image.errors import ConfigError, ModelUnavailableError, require
from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import ImageTransform, RGBTransform, TorchEncoder
from fmri2image.features.encoders._net import HubAccess, hub_access, offline_help

__all__ = ["load_open_clip", "open_clip_capabilities"]

_SCHEMAS = ("hf-hub:", "local-dir:")


def _hub_file(repo: str, filenames: list[str], cache_dir, access: HubAccess, what: str) -> str:
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in filenames:
        try:
            return hf_hub_download(
                repo, filename, cache_dir=cache_dir, local_files_only=access.offline
            )
        except Exception as exc:  # not cached / not in the repo / no network
            errors.append(f"{filename}: {type(exc).__name__}")
    raise ModelUnavailableError(
        f"The open_clip weights for {what} (hub repo {repo}, one of {', '.join(filenames)}) "
        f"are not in the local Hugging Face cache and {access.describe()} "
        f"({'; '.join(errors)}). {offline_help(repo, cache_dir=cache_dir)} Or save the "
        "weights as safetensors and pass the model 'open_clip:<arch>:<file.safetensors>'. "
        "Only safetensors files are loaded."
    )


def _resolve(
    open_clip: Any, arg: str, cache_dir, local_files_only: bool | None
) -> tuple[str, str | None, dict[str, Any] | None, HubAccess]:
    """-> (model_name for open_clip, checkpoint file or None, preprocess overrides)."""
    if arg.startswith("local-dir:"):
        folder = os.path.expanduser(arg.removeprefix("local-dir:"))
        if not os.path.isdir(folder):
            raise ModelUnavailableError(f"open_clip folder '{folder}' does not exist.")
        return f"local-dir:{folder}", None, None, HubAccess(True, "local directory")
    if arg.startswith("hf-hub:"):
        repo = arg.removeprefix("hf-hub:")
        access = hub_access(local_files_only)
        config = _hub_file(repo, ["open_clip_config.json"], cache_dir, access, arg)
        _hub_file(repo, ["open_clip_model.safetensors"], cache_dir, access, arg)
        # Both files sit in one snapshot folder: load it as a local dir (no network).
        return f"local-dir:{os.path.dirname(config)}", None, None, access
    arch, _, pretrained = arg.partition(":")
    if not pretrained:
        raise ConfigError(
            f"open_clip encoder '{arg}' names no weights. Use 'open_clip:<arch>:<pretrained "
            "tag>' (see open_clip.list_pretrained()), 'open_clip:<arch>:<file.safetensors>' "
            "or 'open_clip:hf-hub:<org/repo>'."
        )
    if arch not in open_clip.list_models():
        raise ConfigError(
            f"'{arch}' is not an open_clip architecture. See open_clip.list_models()."
        )
    if os.sep in pretrained or pretrained.endswith((".safetensors", ".pt", ".bin", ".pth")):
        pretrained = os.path.expanduser(pretrained)
        if not pretrained.endswith(".safetensors"):
            raise ConfigError(
                f"open_clip checkpoint '{pretrained}' is not a .safetensors file; fmri2image "
                "does not unpickle checkpoints. Convert it once with safetensors.torch.save_file."
            )
        if not os.path.isfile(pretrained):
            raise ModelUnavailableError(f"open_clip checkpoint '{pretrained}' does not exist.")
        return arch, pretrained, None, HubAccess(True, "local file")
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not tag_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "(none)"
        raise ConfigError(
            f"open_clip has no pretrained tag '{pretrained}' for {arch}. Tags: {tags}."
        )
    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        raise ModelUnavailableError(
            f"open_clip tag {arch}:{pretrained} is only available as a pickled download "
            f"({tag_cfg.get('url', '?')}). Download it on a trusted machine, convert it with "
            "safetensors.torch.save_file and pass 'open_clip:<arch>:<file.safetensors>'."
        )
    repo, filename = os.path.split(hub.rstrip("/") if hub.endswith(".safetensors/") else hub)
    candidates = (
        [filename]
        if filename.endswith(".safetensors")
        else [
            "open_clip_model.safetensors",
            "open_clip_pytorch_model.safetensors",
        ]
    )
    access = hub_access(local_files_only)
    file = _hub_file(repo, candidates, cache_dir, access, f"{arch}:{pretrained}")
    from open_clip.transform import PreprocessCfg

    keys = set(PreprocessCfg.__dataclass_fields__)
    return arch, file, {k: v for k, v in tag_cfg.items() if k in keys}, access


def _describe(preprocess_cfg: dict[str, Any]) -> str:
    size = preprocess_cfg.get("size")
    mean = [round(float(m), 8) for m in preprocess_cfg.get("mean", ())]
    std = [round(float(s), 8) for s in preprocess_cfg.get("std", ())]
    return (
        f"open_clip val transform: resize ({preprocess_cfg.get('resize_mode', 'shortest')}, "
        f"{preprocess_cfg.get('interpolation', 'bicubic')}) + center crop to {size}; "
        f"(x/255 - {mean}) / {std}"
    )


def load_open_clip(
    arg: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TorchEncoder:
    """Build ``open_clip:<...>`` as an encoder (projected image embedding)."""
    open_clip = require("open_clip", "openclip", "open_clip encoders ('open_clip:...')")
    model_name, checkpoint, preprocess_overrides, access = _resolve(
        open_clip, arg, cache_dir, local_files_only
    )
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=checkpoint,
            device="cpu",
            require_pretrained=True,
            **_preprocess_kwargs(preprocess_overrides),
        )
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"open_clip could not build '{arg}' from {checkpoint or model_name} ({exc}). Check "
            "that the checkpoint matches the architecture."
        ) from exc
    pretrained = checkpoint
    visual = model.visual
    dim = int(getattr(visual, "output_dim", 0) or model.encode_image(_probe(visual)).shape[1])
    pcfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = pcfg.get("size", getattr(visual, "image_size", 224))
    side = int(size[0] if isinstance(size, list | tuple) else size)
    if hasattr(model, "transformer"):  # drop the text tower: only images are embedded
        model.transformer = None
    spec = EncoderSpec(
        name=f"open_clip:{arg}",
        weights=f"open_clip {model_name}" + (f" / {pretrained}" if pretrained else ""),
        layer="encode_image (projected image embedding, not normalized)",
        dim=dim,
        image_size=side,
        preprocessing=_describe(pcfg) if pcfg else repr(preprocess),
        license="see the model card (OpenCLIP / training-data terms)",
        extra={
            "family": "open_clip",
            "model": model_name,
            "pretrained": pretrained,
            "preprocess_cfg": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in pcfg.items()
            },
        },
        classifier_head=False,
        text_tower=True,
    )
    return TorchEncoder(
        spec,
        model,
        RGBTransform(preprocess),
        device=device,
        dtype=dtype,
        forward_fn=_encode_image,
        text_loader=_text_loader(open_clip, arg, model_name, checkpoint, cache_dir, access),
        pixel_transform=_pixel_transform(pcfg),
    )


def open_clip_capabilities(
    arg: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> dict[str, bool]:
    """Every open_clip model (CLIP, CoCa, SigLIP) has a text tower and no ImageNet head.

    Answered without importing open_clip or reading files.
    """
    del arg, cache_dir, local_files_only
    return {"classifier_head": False, "text_tower": True}


def _text_config(open_clip: Any, model_name: str) -> dict[str, Any]:
    if model_name.startswith("local-dir:"):
        path = Path(model_name.removeprefix("local-dir:")) / "open_clip_config.json"
        try:
            cfg = json.loads(path.read_text(encoding="utf-8")).get("model_cfg", {})
        except (OSError, ValueError):
            cfg = {}
    else:
        cfg = open_clip.get_model_config(model_name) or {}
    return dict(cfg.get("text_cfg") or {})


def _tokenizer(open_clip: Any, arg: str, model_name: str, cache_dir, access: HubAccess) -> Any:
    """open_clip's tokenizer for the model, with our offline decision for hub tokenizers."""
    text_cfg = _text_config(open_clip, model_name)
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:  # SimpleTokenizer: its BPE vocabulary ships inside open_clip
        return open_clip.get_tokenizer(model_name)
    from open_clip.tokenizer import HFTokenizer

    # As open_clip's get_tokenizer: a local folder's own files, else the named hub repo.
    local = arg.startswith("local-dir:")
    source = model_name.removeprefix("local-dir:") if local else hf_name
    offline = True if local else access.offline
    try:
        return HFTokenizer(
            source,
            context_length=text_cfg.get("context_length", 77),
            cache_dir=cache_dir,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            local_files_only=offline,
            **dict(text_cfg.get("tokenizer_kwargs") or {}),
        )
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"The tokenizer of open_clip model '{arg}' ({source}) is not available and "
            f"{access.describe() if not local else 'the folder holds no tokenizer files'}. "
            f"{offline_help(hf_name, cache_dir=cache_dir)}"
        ) from exc


def _text_loader(open_clip: Any, arg: str, model_name: str, checkpoint, cache_dir, access):
    """``load(device, torch_dtype) -> encode``: rebuild the model, keep its text half."""

    def load(device: str, torch_dtype: Any):
        tokenizer = _tokenizer(open_clip, arg, model_name, cache_dir, access)
        try:
            model = open_clip.create_model(
                model_name, pretrained=checkpoint, device="cpu", require_pretrained=True
            )
        except (RuntimeError, OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"open_clip could not rebuild '{arg}' for its text tower ({exc})."
            ) from exc
        model.visual = None  # only text is embedded here
        model = model.eval().requires_grad_(False).to(device=device, dtype=torch_dtype)

        def encode(prompts: list[str]):
            return model.encode_text(tokenizer(prompts).to(device))

        return encode

    return load


def _preprocess_kwargs(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A pretrained tag's preprocessing (as open_clip itself applies it) -> kwargs."""
    names = {
        "mean": "image_mean",
        "std": "image_std",
        "interpolation": "image_interpolation",
        "resize_mode": "image_resize_mode",
    }
    return {names[k]: v for k, v in (overrides or {}).items() if k in names}


def _pixel_transform(pcfg: dict[str, Any]) -> ImageTransform | None:
    """open_clip's validation transform as an :class:`ImageTransform` (``embed_pixels``).

    ``shortest`` (resize the shorter side, centre crop) and ``squash`` (resize to the
    square) have one; ``longest`` pads, which has none.
    """
    size = pcfg.get("size", 224)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    mode = pcfg.get("resize_mode", "shortest")
    if h != w or mode not in ("shortest", "squash") or not pcfg.get("mean"):
        return None
    try:
        return ImageTransform(
            resize=int(h) if mode == "shortest" else (int(h), int(w)),
            crop=int(h) if mode == "shortest" else None,
            interpolation=str(pcfg.get("interpolation", "bicubic")),
            scale=1.0 / 255.0,
            mean=tuple(float(m) for m in pcfg["mean"]),
            std=tuple(float(s) for s in pcfg["std"]),
        )
    except ConfigError:
        return None


def _encode_image(model: Any, x: Any) -> Any:
    return model.encode_image(x)


def _probe(visual: Any) -> Any:
    import torch

    size = getattr(visual, "image_size", 224)
    h, w = (size, size) if isinstance(size, int) else size
    return torch.zeros(1, 3, h, w)
