"""torchvision classification models as encoders (``resnet50``, ``torchvision:<name>``).

The embedding is the input of the model's last linear layer (for ResNets the
2048-d global average pool, for EfficientNets/ConvNeXts/ViTs their pooled
features, for VGG/AlexNet the 4096-d fc7), and the preprocessing is the one
torchvision ships with the weights (``weights.transforms()``).

Weights are read from the torch hub cache (``$TORCH_HOME/hub/checkpoints``, where
torchvision itself puts them) with ``torch.load(weights_only=True)``; the file's
presence is checked first, so offline use never reaches the downloader.  A missing
file is downloaded there with ``torch.hub.download_url_to_file`` (hash-checked) and
read the same way: nothing is ever unpickled with ``weights_only=False``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fmri2image.errors import ConfigError, ModelUnavailableError
from fmri2image.features.base import EncoderSpec
from fmri2image.features.encoders._common import ImageTransform, TorchEncoder, hub_offline
from fmri2image.features.encoders._net import download_checkpoint, url_access

__all__ = [
    "checkpoint_path",
    "load_torchvision",
    "load_torchvision_arg",
    "torchvision_spec",
    "torchvision_transform",
]


def _parse(arg: str) -> tuple[str, str | None]:
    builder, _, weights = arg.partition(":")
    return builder, (weights or None)


def _resolve(builder: str, weights_enum: str | None):
    """-> (builder function, weights enum member)."""
    from torchvision import models

    classification = models.list_models(module=models)
    if builder not in classification:
        close = difflib.get_close_matches(builder, classification, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"'{builder}' is not a torchvision classification model.{hint} "
            "See torchvision.models.list_models(module=torchvision.models)."
        )
    enum_cls = models.get_model_weights(builder)
    key = weights_enum or "DEFAULT"
    try:
        weights = enum_cls[key] if key != "DEFAULT" else enum_cls.DEFAULT
    except KeyError:
        members = ", ".join(m.name for m in enum_cls)
        raise ConfigError(
            f"torchvision model '{builder}' has no weights '{weights_enum}'. "
            f"Available: {members} (or DEFAULT)."
        ) from None
    return models.get_model_builder(builder), weights


def _builder_kwargs(builder: str, weights: Any) -> dict[str, Any]:
    """The constructor arguments torchvision itself sets when it loads ``weights``."""
    kwargs: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    if builder.startswith("vit_"):
        kwargs["image_size"] = weights.meta["min_size"][0]
    elif builder == "maxvit_t":
        kwargs["input_size"] = weights.meta["min_size"]
    elif builder in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, aux_logits=True, init_weights=False)
    return kwargs


def _drop_aux(builder: str, model: Any) -> None:
    # torchvision removes the auxiliary classifiers after loading; do the same.
    if builder == "googlenet":
        model.aux_logits, model.aux1, model.aux2 = False, None, None
    elif builder == "inception_v3":
        model.aux_logits, model.AuxLogits = False, None


def _last_linear(model: Any) -> tuple[str, Any]:
    import torch

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not found:
        raise ConfigError(
            f"torchvision {type(model).__name__} classifies with a convolution, not a linear "
            "layer, so it has no pooled embedding to take; choose another model."
        )
    return found[-1]


def _set_module(model: Any, dotted: str, new: Any) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def torchvision_transform(weights: Any) -> ImageTransform:
    """``weights.transforms()`` (``ImageClassification``) as a picklable :class:`ImageTransform`."""
    ref = weights.transforms()
    resize = list(ref.resize_size)
    return ImageTransform(
        resize=resize[0] if len(resize) == 1 else (resize[0], resize[1]),
        crop=int(ref.crop_size[0]),
        interpolation=ref.interpolation.value,
        scale=1.0 / 255.0,
        mean=tuple(float(m) for m in ref.mean),
        std=tuple(float(s) for s in ref.std),
    )


def checkpoint_path(weights: Any, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where torchvision caches ``weights`` (``$TORCH_HOME/hub/checkpoints/<file>``)."""
    import torch

    folder = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / os.path.basename(urlparse(weights.url).path)


def _read_checkpoint(path: Path, name: str) -> dict[str, Any]:
    """The state dict in ``path``, read with ``torch.load(weights_only=True)``.

    Only tensors and plain containers are unpickled: a file that names any other
    object (code that would run while unpickling) is refused before anything of it
    runs.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Cannot read the checkpoint {path} of '{name}' ({type(exc).__name__}: "
            f"{_first_line(exc)}): it is damaged or not a plain state dict of tensors. It "
            "is read with torch.load(weights_only=True), which refuses any other object, so "
            "nothing in it was run. Delete the file and download it again."
        ) from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ModelUnavailableError(
            f"The checkpoint {path} of '{name}' is not a state dict (a mapping of parameter "
            "names to tensors). Delete the file and download it again."
        )
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _has_imagenet_head(weights: Any, linear: Any) -> bool:
    # torchvision's ImageNet-1k heads use the standard sorted-wnid class order.
    return len(weights.meta.get("categories", [])) == 1000 and linear.out_features == 1000


def _spec(name: str, builder: str, weights: Any, layer: str, dim: int, head: bool) -> EncoderSpec:
    transform = torchvision_transform(weights)
    return EncoderSpec(
        name=name,
        weights=f"torchvision {type(weights).__name__}.{weights.name}",
        layer=f"{layer} input (features before the classifier)",
        dim=int(dim),
        image_size=int(transform.crop or 0),
        preprocessing=transform.describe(),
        license="BSD-3-Clause (torchvision); see the weights' recipe for training-data terms",
        extra={
            "family": "torchvision",
            "builder": builder,
            "weights_enum": weights.name,
            "url": weights.url,
            "recipe": weights.meta.get("recipe", ""),
            "transform": transform.to_dict(),
        },
        classifier_head=head,
        text_tower=False,
    )


def torchvision_spec(
    arg: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> EncoderSpec:
    """Spec for ``torchvision:<builder>[:<WEIGHTS>]``; the model is built on the meta device."""
    import torch

    del cache_dir, local_files_only
    builder, weights_enum = _parse(arg)
    build, weights = _resolve(builder, weights_enum)
    with torch.device("meta"):
        model = build(weights=None, **_builder_kwargs(builder, weights))
    layer, linear = _last_linear(model)
    return _spec(
        f"torchvision:{arg}", builder, weights, layer, linear.in_features,
        _has_imagenet_head(weights, linear),
    )  # fmt: skip


def load_torchvision(
    builder: str,
    weights_enum: str | None = None,
    *,
    name: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> TorchEncoder:
    """Build a torchvision classification model as an encoder.

    Parameters
    ----------
    builder : str
        torchvision builder name (``"resnet50"``).
    weights_enum : str, optional
        Weights member (``"IMAGENET1K_V2"``); default the builder's ``DEFAULT``.
    name : str, optional
        Registry name recorded in the spec (default ``"torchvision:<builder>:<enum>"``).
    cache_dir : str, optional
        Folder holding the checkpoint file (default ``$TORCH_HOME/hub/checkpoints``).
    local_files_only : bool, optional
        Never download (default: from ``HF_HUB_OFFLINE``).
    """
    import torch

    from fmri2image.imagenet import imagenet1k_wnids

    build, weights = _resolve(builder, weights_enum)
    name = name or f"torchvision:{builder}:{weights.name}"
    path = checkpoint_path(weights, cache_dir)
    if not path.is_file():
        where = (
            f"On a machine with internet download {weights.url} and copy it to {path} "
            f"(the folder <TORCH_HOME>/hub/checkpoints; set TORCH_HOME to use another "
            "place; in Python, cache_dir= names the folder itself)."
        )
        if hub_offline(local_files_only):
            raise ModelUnavailableError(
                f"Weights for '{name}' ({type(weights).__name__}.{weights.name}) are not in the "
                f"local cache ({path} does not exist) and downloads are disabled "
                f"(HF_HUB_OFFLINE=1, or local_files_only=True in Python). {where}"
            )
        access = url_access(weights.url)
        if access.offline:
            raise ModelUnavailableError(
                f"Weights for '{name}' ({type(weights).__name__}.{weights.name}) are not in the "
                f"local cache ({path} does not exist) and {access.describe()}. {where}"
            )
        try:
            download_checkpoint(weights.url, path)
        except Exception as exc:  # URLError, HTTPError, hash mismatch, ...
            raise ModelUnavailableError(
                f"Could not download the weights of '{name}' from {weights.url} ({exc}). {where}"
            ) from exc
    state = _read_checkpoint(path, name)
    model = build(weights=None, **_builder_kwargs(builder, weights))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing / unexpected keys, wrong shapes
        raise ModelUnavailableError(
            f"The checkpoint {path} does not fit '{name}' ({exc}). It must be the state dict "
            f"of torchvision's {builder} with {type(weights).__name__}.{weights.name}; delete "
            f"the file and download it again ({weights.url})."
        ) from exc
    _drop_aux(builder, model)
    layer, linear = _last_linear(model)
    head = None
    if _has_imagenet_head(weights, linear):
        head = (linear.weight.detach().float().numpy().copy(), list(imagenet1k_wnids()))
    _set_module(model, layer, torch.nn.Identity())
    spec = _spec(name, builder, weights, layer, linear.in_features, head is not None)
    return TorchEncoder(
        spec, model, torchvision_transform(weights), device=device, dtype=dtype, head=head
    )


def load_torchvision_arg(arg: str, **kwargs: Any) -> TorchEncoder:
    """``torchvision:<builder>[:<WEIGHTS>]`` registry form."""
    builder, weights_enum = _parse(arg)
    return load_torchvision(builder, weights_enum, name=f"torchvision:{arg}", **kwargs)
