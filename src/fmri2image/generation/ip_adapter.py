"""IP-Adapter on Stable Diffusion 1.5 (``ip-adapter``): the predicted embedding as an image prompt.

IP-Adapter (``h94/IP-Adapter``, ``models/ip-adapter_sd15.safetensors``) adds
image-prompt cross-attention to SD 1.5: a projection turns one image embedding into
four extra context tokens.  Its image encoder is OpenCLIP ViT-H/14 (LAION-2B), so the
predictions must come from that space (1024-d): decode with
``open_clip:ViT-H-14:laion2b_s32b_b79k``.  The prediction goes in as
``ip_adapter_image_embeds`` (``[zeros; prediction]`` under classifier-free guidance,
as diffusers does for an encoded image), after the same training-statistics rescaling
as ``unclip`` (:func:`~fmri2image.generation.unclip.rescale_embedding`).

Everything else is ``sd15``'s: per-image seeds, the safety checker with regeneration,
img2img for requests with an initial image, an optional text prompt (empty by
default: the embedding alone; ``"a photo of a {name}"`` adds the retrieved label).
The adapter file is located when the generator is built (its header gives the
embedding size) and loaded with the pipeline; only safetensors files are read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fmri2image.errors import ConfigError, ModelUnavailableError
from fmri2image.generation.base import GenerationRequest
from fmri2image.generation.diffusion import (
    SD15_MODEL,
    Text2ImageGenerator,
    Text2ImageOptions,
    _attributes,
    _diffusers,
    _flag,
    _quiet,
)
from fmri2image.generation.unclip import (
    RESCALES,
    VIT_H14_SPACE,
    EmbeddingSpace,
    check_embedding_space,
    rescale_embedding,
)

__all__ = ["IP_ADAPTER_REPO", "IP_ADAPTER_WEIGHTS", "IPAdapterGenerator", "IPAdapterOptions"]

IP_ADAPTER_REPO = "h94/IP-Adapter"
IP_ADAPTER_WEIGHTS = "models/ip-adapter_sd15.safetensors"
#: The image-embedding space of published IP-Adapter files (repository, file).
KNOWN_ADAPTERS: dict[tuple[str, str], EmbeddingSpace] = {
    (IP_ADAPTER_REPO, IP_ADAPTER_WEIGHTS): VIT_H14_SPACE,
    (IP_ADAPTER_REPO, "models/ip-adapter_sd15_light.safetensors"): VIT_H14_SPACE,
}
_PROJ_KEY = "image_proj.proj.weight"


@dataclass(frozen=True)
class IPAdapterOptions(Text2ImageOptions):
    __doc__ = (
        "Options of ``ip-adapter``: SD 1.5 with the predicted embedding as an image prompt.\n\n"
        + _attributes(Text2ImageOptions).rstrip()
        + """
    adapter : str
        Hugging Face hub id or local folder holding the IP-Adapter file.
    adapter_weights : str
        The IP-Adapter file inside it (safetensors only).
    scale : float
        Weight of the image prompt against the text prompt (0 ignores it).
    encoder : str or None
        The encoder whose embeddings the adapter takes (none: known for h94's
        SD 1.5 adapters, open_clip:ViT-H-14:laion2b_s32b_b79k; otherwise any
        encoder of the adapter's embedding size).
    rescale : {"deviation", "norm", "none"}
        How the prediction is brought to the training embeddings' scale, with
        training statistics only (as for unclip).
    """
    )

    model: str | None = SD15_MODEL
    prompt: str = ""
    size: int | None = 512
    adapter: str = IP_ADAPTER_REPO
    adapter_weights: str = IP_ADAPTER_WEIGHTS
    scale: float = 1.0
    encoder: str | None = None
    rescale: str = "deviation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.adapter, str) or not self.adapter.strip():
            raise ConfigError(f"{_flag('adapter')}{self.adapter!r}: give a hub id or a folder.")
        if not str(self.adapter_weights).endswith(".safetensors"):
            raise ConfigError(
                f"{_flag('adapter_weights')}{self.adapter_weights!r}: only .safetensors "
                "IP-Adapter files are read (fmri2image never unpickles .bin files); h94's are "
                f"e.g. {IP_ADAPTER_WEIGHTS}."
            )
        sc = self.scale
        if isinstance(sc, bool) or not isinstance(sc, int | float) or not sc >= 0:
            raise ConfigError(f"{_flag('scale')}{sc!r}: the image-prompt weight must be >= 0.")
        if self.rescale not in RESCALES:
            raise ConfigError(
                f"{_flag('rescale')}{self.rescale!r}: choose one of {', '.join(RESCALES)}."
            )


def locate_adapter(
    adapter: str, weights: str, *, cache_dir: str | None, local_files_only: bool | None
) -> str:
    """The local path of an IP-Adapter file (downloaded when allowed), or a clear error."""
    from fmri2image.features.encoders._hf import _first_line, _is_pathlike
    from fmri2image.features.encoders._net import hub_access, offline_help

    if _is_pathlike(adapter):
        path = os.path.join(os.path.expanduser(adapter), weights)
        if not os.path.isfile(path):
            raise ModelUnavailableError(
                f"IP-Adapter file '{path}' does not exist: --option adapter names the folder, "
                "--option adapter_weights the .safetensors file inside it."
            )
        return path
    from huggingface_hub import hf_hub_download

    access = hub_access(local_files_only)
    try:
        return hf_hub_download(
            adapter, weights, cache_dir=cache_dir, local_files_only=access.offline
        )
    except Exception as exc:  # huggingface_hub's errors differ across versions
        raise ModelUnavailableError(
            f"IP-Adapter '{adapter}' ({weights}) is not in the local Hugging Face cache and "
            f"{access.describe()}. {offline_help(adapter, files=weights, cache_dir=cache_dir)} "
            "Or download the file and pass its folder as --option adapter=/path/to/folder. "
            f"Details: {_first_line(exc)}"
        ) from exc


def adapter_embedding_dim(path: str) -> int:
    """The image-embedding size an IP-Adapter file projects (from its header only)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        if _PROJ_KEY not in f.keys():
            raise ConfigError(
                f"'{path}' is not a plain IP-Adapter file (no {_PROJ_KEY}); ip-adapter drives "
                "the SD 1.5 IP-Adapter that projects one image embedding (h94's "
                f"{IP_ADAPTER_WEIGHTS}), not the Plus / Face ID variants."
            )
        return int(f.get_slice(_PROJ_KEY).get_shape()[1])


class IPAdapterGenerator(Text2ImageGenerator):
    """``ip-adapter``: SD 1.5 + IP-Adapter, the rescaled prediction as the image prompt."""

    name = "ip-adapter"
    conditioning = "embedding"
    Options = IPAdapterOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        o = self.options
        self.adapter_path = locate_adapter(
            o.adapter, o.adapter_weights, cache_dir=o.cache_dir, local_files_only=o.local_files_only
        )
        self.embedding_dim = adapter_embedding_dim(self.adapter_path)
        self._checked: set[str] = set()

    @property
    def space(self) -> EmbeddingSpace | None:
        o = self.options
        if o.encoder is not None:
            return EmbeddingSpace(o.encoder, self.embedding_dim, f"{o.encoder} embeddings")
        return KNOWN_ADAPTERS.get((o.adapter, o.adapter_weights))

    def check(self, encoder: str | None) -> None:
        """Refuse, before any work, an encoder whose embeddings the adapter cannot take."""
        if encoder is not None and encoder in self._checked:
            return
        check_embedding_space("ip-adapter", f"{self.options.adapter} {self.options.adapter_weights}",
                              encoder, self.space, self.embedding_dim)  # fmt: skip
        self._checked.add(encoder)

    def load(self) -> Any:
        if self._pipe is not None:
            return self._pipe
        pipe = super().load()
        diffusers = _diffusers()
        try:
            with _quiet(diffusers):
                pipe.load_ip_adapter(
                    os.path.dirname(self.adapter_path), subfolder=None,
                    weight_name=os.path.basename(self.adapter_path), image_encoder_folder=None,
                )  # fmt: skip
            pipe.set_ip_adapter_scale(float(self.options.scale))
            if self.options.offload:  # the adapter's new modules join the offload hooks
                self._offload_owner = None
                self._activate(pipe)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            self._pipe = None  # never generate without the adapter
            raise ModelUnavailableError(
                f"Cannot load the IP-Adapter {self.adapter_path} into '{self.options.model}' "
                f"({exc}); ip-adapter needs an SD 1.5 adapter (h94's {IP_ADAPTER_WEIGHTS}) "
                "and an SD 1.5 model."
            ) from exc
        return pipe

    # conditioning hooks of Text2ImageGenerator ----------------------------------------
    def _prepare(self, requests: Sequence[GenerationRequest]) -> list[Any]:
        import numpy as np

        out = []
        for r in requests:
            if r.embedding is None:
                raise ConfigError(
                    f"ip-adapter renders the predicted embedding, and the request for {r.stem} "
                    "carries none (GenerationRequest.embedding)."
                )
            if r.encoder is not None:
                self.check(r.encoder)
            size = int(np.asarray(r.embedding).size)
            if size != self.embedding_dim:
                raise ConfigError(
                    f"The prediction for {r.stem} is {size}-d but the IP-Adapter takes "
                    f"{self.embedding_dim}-d image embeddings: decode with the encoder of its "
                    "space" + (f" ('{self.space.encoder}')." if self.space else ".")
                )
            out.append(rescale_embedding(r.embedding, r.stats, self.options.rescale))
        return out

    # diffusers repeats ip_adapter_image_embeds over the whole batch (one image prompt
    # per call), so each request's pictures are made in calls of their own.
    per_request_calls = True

    def _call_kwargs(self, pipe: Any, prepared: Sequence[Any]) -> dict[str, Any]:
        import torch

        x = torch.as_tensor(prepared[0][0], dtype=pipe.unet.dtype,
                            device=pipe._execution_device).reshape(1, 1, -1)  # fmt: skip
        if self.options.guidance > 1:  # diffusers' unconditional image prompt: zeros
            x = torch.cat([torch.zeros_like(x), x])
        return {"ip_adapter_image_embeds": [x]}

    def _describe(self, prompt: str, request: GenerationRequest, prepared: Any):
        o = self.options
        what = f"ip_adapter_image_embeds of {request.encoder or 'the prediction'}"
        what += {"deviation": ", deviation from the training mean rescaled to its "
                 "training length", "norm": ", rescaled to the mean training norm",
                 "none": ""}[o.rescale]  # fmt: skip
        if prompt:
            what += f"; prompt {prompt!r}"
        return what, {
            "encoder": request.encoder,
            "adapter": f"{o.adapter}/{o.adapter_weights}",
            "scale": float(o.scale),
            "rescale": o.rescale,
            "rescale_factor": float(prepared[1]),
        }
