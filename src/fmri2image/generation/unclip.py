"""Stable unCLIP from the predicted image embedding itself (``unclip``): no label involved.

``StableUnCLIPImg2ImgPipeline`` is Stable Diffusion 2.1 fine-tuned to take a CLIP
image embedding as its condition.  It is called with ``image=None`` and
``image_embeds=<the prediction>`` (``noise_level=0`` by default: the embedding is
used as given), so what the brain-to-embedding map predicted is rendered directly.
``stabilityai/stable-diffusion-2-1-unclip-small`` (the default) takes CLIP ViT-L/14
image embeddings, 768-d: decode with the encoder ``clip-l14``.  :meth:`UnclipGenerator.check`
refuses any other encoder before any work.

Scale of the prediction
-----------------------
Ridge predictions are shrunk towards the training mean: on held-out images their
deviation from the mean is much shorter than a real embedding's, so unCLIP, trained
on real embeddings, would see an atypically weak, generic condition.  Before use the
prediction is brought to the scale of the *training* embeddings, with training
statistics only (:class:`~fmri2image.generation.EmbeddingStats`; the seed pipeline
re-standardized with the statistics of the test predictions, its defect 1), one
prediction at a time, so an image never depends on the other test images:

``deviation`` (default)
    ``m + (p - m) * sqrt(sum(s**2)) / ||p - m||``, with ``m``, ``s`` the training
    mean and per-dimension std: the prediction's deviation from the training mean is
    given the root-mean-square length that training embeddings' deviations have.
    This undoes the shrinkage where it happens (in the deviation) and keeps the
    prediction's direction from the mean, which is what identification and
    retrieval measure.
``norm``
    ``p * mean_norm / ||p||``: the whole vector gets the training embeddings' mean
    L2 norm.  CLIP image embeddings lie in a narrow cone (the mean is a large part
    of every vector), so this mostly lengthens the shared mean component and leaves
    the stimulus-specific deviation shrunk; offered for comparison.
``none``
    The prediction as is.

A per-dimension de-shrinkage (dividing each dimension's deviation by its own
shrinkage factor) would need the spread of the predictions themselves, i.e. test
statistics or out-of-fold training predictions, which the request does not carry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fmri2image.errors import ConfigError, Fmri2ImageError
from fmri2image.generation.base import EmbeddingStats, GenerationRequest, GenerationResult
from fmri2image.generation.diffusion import (
    PipelineGenerator,
    PipelineSource,
    _diffusers,
    _flag,
    _quiet,
    check_pipeline_options,
    prompt_for,
    sample_seed,
)

__all__ = [
    "CLIP_L14_SPACE",
    "KNOWN_UNCLIP_MODELS",
    "RESCALES",
    "UNCLIP_MODEL",
    "VIT_H14_SPACE",
    "EmbeddingSpace",
    "UnclipGenerator",
    "UnclipOptions",
    "check_embedding_space",
    "rescale_embedding",
]

UNCLIP_MODEL = "stabilityai/stable-diffusion-2-1-unclip-small"
RESCALES = ("deviation", "norm", "none")
_UNCLIP_CLASS = "StableUnCLIPImg2ImgPipeline"


@dataclass(frozen=True)
class EmbeddingSpace:
    """An image-embedding space a generator's network was trained on.

    Attributes
    ----------
    encoder : str
        The fmri2image encoder that gives these embeddings (``--model`` of decode).
    dim : int
        Embedding size (0: unknown).
    what : str
        Description for messages.
    also : tuple of str
        Other encoder names for the same weights.
    """

    encoder: str
    dim: int
    what: str
    also: tuple[str, ...] = ()

    def accepts(self, encoder: str) -> bool:
        return encoder == self.encoder or encoder in self.also


#: CLIP ViT-L/14 (``clip-l14``) and OpenCLIP ViT-H/14 (LAION-2B), the spaces of the
#: published unCLIP and IP-Adapter checkpoints.
CLIP_L14_SPACE = EmbeddingSpace(
    "clip-l14", 768, "CLIP ViT-L/14 image embeddings", ("hf:openai/clip-vit-large-patch14",)
)
VIT_H14_SPACE = EmbeddingSpace(
    "open_clip:ViT-H-14:laion2b_s32b_b79k",
    1024,
    "OpenCLIP ViT-H/14 (LAION-2B) image embeddings",
    (
        "open_clip:hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "hf:laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    ),
)

#: The image-embedding space of the published unCLIP checkpoints.
KNOWN_UNCLIP_MODELS: dict[str, EmbeddingSpace] = {
    UNCLIP_MODEL: CLIP_L14_SPACE,
    "stabilityai/stable-diffusion-2-1-unclip": VIT_H14_SPACE,
}


@dataclass(frozen=True)
class UnclipOptions:
    """Options of ``unclip``: Stable unCLIP rendering the predicted image embedding.

    Attributes
    ----------
    model : str
        Hugging Face hub id or local folder of a StableUnCLIPImg2ImgPipeline.
    encoder : str or None
        The encoder whose embeddings the model takes (none: known for the
        stabilityai unCLIP models, clip-l14 for the default; for other models
        any encoder of the model's embedding size).
    rescale : {"deviation", "norm", "none"}
        How the prediction is brought to the training embeddings' scale, with
        training statistics only: deviation from the training mean to its typical
        length, or the whole vector to the mean training norm, or as is.
    prompt : str
        Optional text prompt beside the embedding; may use {name} and {wnid} of
        the retrieved label (empty: the embedding alone).
    negative_prompt : str
        What to steer away from, used when guidance is above 1 (empty: none).
    steps : int
        Denoising steps.
    guidance : float
        Classifier-free guidance scale (the unconditional branch gets a zero
        embedding); 1 or less turns guidance off.
    scheduler : {"dpm++", "model"}
        dpm++ is DPMSolverMultistepScheduler built from the model's scheduler
        config; model keeps the scheduler the model ships.
    noise_level : int
        Noise added to the embedding before use (0: the embedding as given).
    size : int or None
        Width and height of the images in pixels, a multiple of 8 (none: the
        model's native size, 768 for the stabilityai models).
    images_per_request : int
        Pictures per test image, each with its own seed.
    offload : bool
        Model CPU offload, keeping only the running component on the GPU (small
        GPUs; needs a CUDA device and the accelerate package).
    attention_slicing : bool
        Compute attention in slices (less GPU memory, a little slower).
    local_files_only : bool or None
        Never download (none: download unless HF_HUB_OFFLINE=1 or the hub is
        unreachable).
    cache_dir : str or None
        Hugging Face hub cache to use (none: HF_HUB_CACHE, else HF_HOME/hub).
    """

    model: str = UNCLIP_MODEL
    encoder: str | None = None
    rescale: str = "deviation"
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 10.0
    scheduler: str = "model"
    noise_level: int = 0
    size: int | None = None
    images_per_request: int = 1
    offload: bool = False
    attention_slicing: bool = False
    local_files_only: bool | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_pipeline_options(self)
        if self.rescale not in RESCALES:
            raise ConfigError(
                f"{_flag('rescale')}{self.rescale!r}: choose deviation (the prediction's "
                "deviation from the training mean at the training embeddings' typical length), "
                "norm (the mean training norm) or none."
            )
        nl = self.noise_level
        if isinstance(nl, bool) or not isinstance(nl, int) or nl < 0:
            raise ConfigError(f"{_flag('noise_level')}{nl!r}: give a whole number >= 0.")
        if self.encoder is not None and (not isinstance(self.encoder, str) or not self.encoder):
            raise ConfigError(f"{_flag('encoder')}{self.encoder!r}: give an encoder name.")


def rescale_embedding(
    embedding: Any, stats: EmbeddingStats | None, method: str = "deviation"
) -> tuple[Any, float]:
    """Bring one predicted embedding to the training embeddings' scale.

    Parameters
    ----------
    embedding : array-like of shape (dim,)
        The prediction.
    stats : EmbeddingStats
        Training statistics of the encoder's embeddings (never test statistics).
    method : {"deviation", "norm", "none"}
        See the module docstring.

    Returns
    -------
    rescaled : ndarray of shape (dim,), float64
    factor : float
        What the deviation (``deviation``) or the vector (``norm``) was multiplied by.
    """
    import numpy as np

    p = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if method == "none":
        return p, 1.0
    if method not in RESCALES:
        raise ConfigError(f"{_flag('rescale')}{method!r}: choose one of {', '.join(RESCALES)}.")
    if stats is None:
        raise ConfigError(
            f"--option rescale={method} needs the training statistics of the encoder's "
            "embeddings (GenerationRequest.stats, EmbeddingStats.from_embeddings(Y_train)); "
            "pass them, or use --option rescale=none."
        )
    mean = np.asarray(stats.mean, dtype=np.float64).reshape(-1)
    if mean.shape != p.shape:
        raise ConfigError(
            f"The training statistics are {mean.size}-d but the prediction is {p.size}-d: "
            "they must come from the same encoder."
        )
    if method == "norm":
        length = float(np.linalg.norm(p))
        factor = float(stats.norm) / length if length > 0 else 1.0
        return p * factor, factor
    deviation = p - mean
    length = float(np.linalg.norm(deviation))
    target = float(np.sqrt(np.sum(np.asarray(stats.std, dtype=np.float64) ** 2)))
    factor = target / length if length > 0 else 1.0
    return mean + deviation * factor, factor


def check_embedding_space(
    generator: str,
    model: str,
    encoder: str | None,
    space: EmbeddingSpace | None,
    dim: int | None,
    *,
    alternatives: str = "a label-conditioned generator (sd15, sd-turbo) or invert",
) -> None:
    """Refuse (:class:`ConfigError`) an encoder whose embeddings ``model`` cannot take.

    Parameters
    ----------
    generator, model : str
        For messages.
    encoder : str or None
        The encoder the predictions come from.
    space : EmbeddingSpace or None
        The space the model takes, when known by name.
    dim : int or None
        The embedding size the model's files declare, when known.
    alternatives : str
        What to use instead, for messages.
    """
    if encoder is None:
        need = space.encoder if space else "an encoder of the model's image space"
        raise ConfigError(
            f"{generator} renders a predicted image embedding, but no encoder was named. "
            f"Decode with {need} (fmri2image decode --model {need}) and generate for it."
        )
    got = _encoder_dim(encoder)
    want = dim or (space.dim if space else None)
    if space is not None and not space.accepts(encoder):
        what = f"{got}-d embeddings of another network" if got else "embeddings of another network"
        raise ConfigError(
            f"{generator} ({model}) takes {space.what} ({want or space.dim}-d), but the encoder "
            f"'{encoder}' gives {what}. Decode with the encoder '{space.encoder}' "
            f"(fmri2image decode --model {space.encoder}) and generate for it "
            f"(--encoder {space.encoder}); for '{encoder}' use {alternatives}."
        )
    if want and got and got != want:
        raise ConfigError(
            f"{generator} ({model}) takes {want}-d image embeddings, but the encoder '{encoder}' "
            f"gives {got}-d ones. Decode with an encoder of the model's image space"
            + (f" ('{space.encoder}')" if space else "")
            + f", or use {alternatives}."
        )


def _encoder_dim(encoder: str) -> int | None:
    """The encoder's embedding size if it is known cheaply (static spec or a config read)."""
    from fmri2image.features.base import EncoderSpec
    from fmri2image.features.registry import ENCODERS

    entry = ENCODERS.get(encoder)  # ConfigError for an unknown name
    try:
        if isinstance(entry.spec, EncoderSpec):
            return int(entry.spec.dim)
        if entry.spec is not None:
            return int(entry.spec(cache_dir=None, local_files_only=None).dim)
    except Fmri2ImageError:
        return None
    return None  # custom encoders without a cheap spec, open_clip: unknown until built


class UnclipGenerator(PipelineGenerator):
    """``unclip``: Stable unCLIP conditioned on the (rescaled) predicted image embedding."""

    name = "unclip"
    #: StableUnCLIP renders from the embedding alone: a run's --init does not feed it.
    takes_init = False
    conditioning = "embedding"
    Options = UnclipOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        self.embedding_dim = self._config_dim(self.source)
        self._checked: set[str] = set()

    # where the model comes from ----------------------------------------------------
    def _check_source(self, source: PipelineSource) -> None:
        if source.class_name != _UNCLIP_CLASS:
            hint = (
                " It generates from a prompt: use --generator sd15 (or diffusers:"
                f"{source.model}) with the retrieved label."
                if "UnCLIP" not in source.class_name
                else ""
            )
            raise ConfigError(
                f"'{source.model}' is a {source.class_name}, not a {_UNCLIP_CLASS} (an unCLIP "
                f"model that takes an image embedding), so unclip cannot drive it.{hint}"
            )

    def _config_dim(self, source: PipelineSource) -> int | None:
        """The image-embedding size the model takes, from image_normalizer/config.json."""
        diffusers = _diffusers()
        from diffusers.pipelines.stable_diffusion import StableUnCLIPImageNormalizer

        try:
            with _quiet(diffusers):
                cfg = StableUnCLIPImageNormalizer.load_config(
                    source.path, subfolder="image_normalizer",
                    **source.from_pretrained_kwargs(self.options.cache_dir),
                )  # fmt: skip
            return int(cfg["embedding_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            return None  # checked again once the weights load

    def _from_pretrained(self, diffusers: Any, source: PipelineSource, kwargs: dict) -> Any:
        return diffusers.StableUnCLIPImg2ImgPipeline.from_pretrained(source.path, **kwargs)

    @property
    def space(self) -> EmbeddingSpace | None:
        """The embedding space the model takes, when known by name."""
        if self.options.encoder is not None:
            dim = self.embedding_dim or 0
            return EmbeddingSpace(self.options.encoder, dim, f"{self.options.encoder} embeddings")
        return KNOWN_UNCLIP_MODELS.get(self.options.model)

    # the contract ------------------------------------------------------------------
    def check(self, encoder: str | None) -> None:
        """Refuse, before any work, an encoder whose embeddings this model cannot take.

        Known models name the encoder they need (``clip-l14`` for the default);
        the embedding size from the model's config is compared with the encoder's
        whenever both are cheap to know.
        """
        if encoder is not None and encoder in self._checked:
            return
        check_embedding_space("unclip", self.options.model, encoder, self.space,
                              self.embedding_dim)  # fmt: skip
        self._checked.add(encoder)

    def load(self) -> Any:
        pipe = super().load()
        self.embedding_dim = int(pipe.image_normalizer.config.embedding_dim)
        return pipe

    def _check_noise_level(self, pipe: Any) -> None:
        top = int(pipe.image_noising_scheduler.config.num_train_timesteps)
        if self.options.noise_level >= top:
            raise ConfigError(
                f"{_flag('noise_level')}{self.options.noise_level}: this model's embedding "
                f"noise schedule has {top} levels; give 0 to {top - 1}."
            )

    def _embedding(self, request: GenerationRequest) -> tuple[Any, float]:
        import numpy as np

        if request.embedding is None:
            raise ConfigError(
                f"unclip renders the predicted embedding, and the request for {request.stem} "
                "carries none (GenerationRequest.embedding)."
            )
        if request.init_image is not None:
            raise ConfigError(
                "unclip generates from the embedding alone and takes no initial image; drop "
                "--init, or use sd15 / sd-turbo / ip-adapter for img2img."
            )
        if request.encoder is not None:
            self.check(request.encoder)
        size = int(np.asarray(request.embedding).size)
        if self.embedding_dim and size != self.embedding_dim:
            raise ConfigError(
                f"The prediction for {request.stem} is {size}-d but unclip "
                f"({self.options.model}) takes {self.embedding_dim}-d image embeddings: decode "
                "with the encoder of its space"
                + (f" ('{self.space.encoder}')." if self.space else ".")
            )
        return rescale_embedding(request.embedding, request.stats, self.options.rescale)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; every picture has its own seed (see diffusion)."""
        import numpy as np
        import torch

        requests = list(requests)
        if not requests:
            return []
        pipe = self.pipeline
        self._check_noise_level(pipe)
        o = self.options
        prepared = [self._embedding(r) for r in requests]
        prompts = [prompt_for(o.prompt, r, self.name) if o.prompt else "" for r in requests]
        negatives = [prompt_for(o.negative_prompt, r, self.name) for r in requests]
        slots = [(i, k) for i in range(len(requests)) for k in range(o.images_per_request)]
        seeds = [sample_seed(requests[i].seed, requests[i].stem, k) for i, k in slots]
        self._activate(pipe)
        device = pipe._execution_device
        embeds = torch.as_tensor(
            np.stack([prepared[i][0] for i, _ in slots]), dtype=pipe.unet.dtype, device=device
        )
        side = self.image_size()
        kw: dict[str, Any] = {
            "image": None,
            "image_embeds": embeds,
            "prompt": [prompts[i] for i, _ in slots],
            "noise_level": int(o.noise_level),
            "num_inference_steps": int(o.steps),
            "guidance_scale": float(o.guidance),
            "generator": self.generators(seeds),
            "height": side,
            "width": side,
            "output_type": "pil",
        }
        if any(negatives):
            kw["negative_prompt"] = [negatives[i] for i, _ in slots]
        t0 = time.perf_counter()
        out = pipe(**kw)
        share = (time.perf_counter() - t0) / len(slots)
        by_request: dict[int, list[Any]] = {}
        for (i, _), image in zip(slots, out.images):
            by_request.setdefault(i, []).append(image.convert("RGB"))
        results = []
        for i, r in enumerate(requests):
            images = tuple(by_request[i])
            what = f"image_embeds of {r.encoder or 'the prediction'}"
            what += {"deviation": ", deviation from the training mean rescaled to its "
                     "training length", "norm": ", rescaled to the mean training norm",
                     "none": ""}[o.rescale]  # fmt: skip
            if prompts[i]:
                what += f"; prompt {prompts[i]!r}"
            extra: dict[str, Any] = {
                "model": o.model,
                "revision": self.source.revision,
                "encoder": r.encoder,
                "rescale": o.rescale,
                "rescale_factor": float(prepared[i][1]),
                "noise_level": int(o.noise_level),
                "steps": int(o.steps),
                "guidance": float(o.guidance),
                "scheduler": type(pipe.scheduler).__name__,
                "size": list(images[0].size),
                "safety_checker": "absent",  # StableUnCLIPImg2ImgPipeline ships none
            }
            if o.images_per_request > 1:
                extra["seeds"] = [sample_seed(r.seed, r.stem, k) for k in range(len(images))]
            results.append(
                GenerationResult(
                    stem=r.stem,
                    images=images,
                    conditioning=what,
                    seed=sample_seed(r.seed, r.stem),
                    seconds=share * len(images),
                    extra=extra,
                )
            )
        return results
