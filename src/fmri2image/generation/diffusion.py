"""Stable Diffusion from the retrieved label: ``sd15``, ``sd-turbo``, ``diffusers:<id or folder>``.

Each request's label becomes a prompt (``"a photo of a {name}"``); a request that
carries an ``init_image`` is made with the image-to-image variant of the same
pipeline, built from the same components (no second load).

Randomness is per image (:func:`sample_seed`): every image gets its own
``torch.Generator`` (on the CPU, so a seed means the same noise on every device),
seeded from the run seed, the stimulus stem and the attempt, and the pipeline is
given the list.  An image therefore gets the same noise and conditioning whether it
is made alone or in a batch, and a regeneration is reproducible.  The pixels agree
up to the float rounding of batched kernels (a batch sums in another order: at most
one grey level apart in the tests, on the CPU in float32); calls of one request each
(``fmri2image generate --batch-size 1``) give bit-identical images across runs.

Safety checker: the model's checker is kept on (as the original pipeline shipped
it).  An image it flags (diffusers blanks it to black) is made again with the seed
of the next attempt, up to ``max_retries`` more times; if every attempt is flagged
the last one is returned with ``flagged=True``, never as a reconstruction.

Loading follows the encoders' rules (:mod:`fmri2image.features.encoders._net`): a
hub id and a local ``save_pretrained`` folder take the same ``from_pretrained``
path, only safetensors weights are read, and with ``HF_HUB_OFFLINE=1`` (or an
unreachable hub) a missing model fails at once with what to do.  The model is
located when the generator is built (``model_index.json`` only); weights load on
the first :meth:`~Text2ImageGenerator.generate` (or :meth:`~PipelineGenerator.load`).

Importing this module imports neither torch nor diffusers.
"""

from __future__ import annotations

import contextlib
import os
import string
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fmri2image.errors import ConfigError, ModelUnavailableError, require
from fmri2image.generation.base import (
    GenerationRequest,
    GenerationResult,
    Generator,
    image_seed,
)

__all__ = [
    "SD15_MODEL",
    "SD_TURBO_MODEL",
    "DiffusersGenerator",
    "PipelineGenerator",
    "PipelineSource",
    "SD15Generator",
    "SD15Options",
    "SDTurboGenerator",
    "SDTurboOptions",
    "Text2ImageGenerator",
    "Text2ImageOptions",
    "img2img_steps",
    "locate_pipeline",
    "prompt_for",
    "sample_seed",
]

#: Maintained copy of Stable Diffusion 1.5 (runwayml's repository was withdrawn).
SD15_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SD_TURBO_MODEL = "stabilityai/sd-turbo"
SCHEDULERS = ("dpm++", "model")
DTYPES = ("auto", "float32", "float16", "bfloat16")
PROMPT_FIELDS = ("name", "wnid")
# Files ``from_pretrained`` needs from a pipeline repository (not the single-file
# checkpoints some repositories also hold at their root).
_PIPELINE_FILES = '--include "model_index.json" "*/*.json" "*/*.txt" "*/*.safetensors"'


def _flag(name: str) -> str:
    return f"--option {name}="


# ------------------------------------------------------------------------ options
def _attributes(cls: type) -> str:
    """The numpydoc Attributes section of ``cls.__doc__`` (shared by option subclasses)."""
    doc = cls.__doc__ or ""
    at = doc.index("    Attributes\n")
    return doc[at:]


def check_prompt_template(template: str, option: str = "prompt") -> tuple[str, ...]:
    """The fields a prompt template uses; :class:`ConfigError` for any but ``{name}``/``{wnid}``."""
    if not isinstance(template, str):
        raise ConfigError(f"{_flag(option)}...: the prompt template must be text.")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(
            f"{_flag(option)}{template!r} is not a valid template ({exc}); write braces only "
            "around {name} or {wnid}, e.g. --option prompt='a photo of a {name}'."
        ) from None
    bad = sorted({f for f in fields if f not in PROMPT_FIELDS})
    if bad:
        raise ConfigError(
            f"{_flag(option)}{template!r} uses {', '.join('{' + b + '}' for b in bad)}; a prompt "
            "template may use {name} (the retrieved label's name) and {wnid} (its WordNet id)."
        )
    return tuple(dict.fromkeys(fields))


def check_pipeline_options(o: Any) -> None:
    """Validate the options every diffusers generator shares; errors name the flag."""
    for name in ("steps", "images_per_request"):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{_flag(name)}{v!r}: {name} must be a positive integer.")
    g = o.guidance
    if isinstance(g, bool) or not isinstance(g, int | float) or not g >= 0:
        raise ConfigError(
            f"{_flag('guidance')}{g!r}: the guidance scale must be a number >= 0 "
            "(1 or less turns classifier-free guidance off)."
        )
    if o.scheduler not in SCHEDULERS:
        raise ConfigError(
            f"{_flag('scheduler')}{o.scheduler!r}: choose dpm++ (DPMSolverMultistepScheduler "
            "from the model's scheduler config) or model (the scheduler the model ships)."
        )
    if o.size is not None and (
        isinstance(o.size, bool) or not isinstance(o.size, int) or o.size < 8 or o.size % 8
    ):
        raise ConfigError(
            f"{_flag('size')}{o.size!r}: the image side must be a positive multiple of 8 "
            "(e.g. 512), or none for the model's native size."
        )
    if o.model is not None and (not isinstance(o.model, str) or not o.model.strip()):
        raise ConfigError(f"{_flag('model')}{o.model!r}: give a Hugging Face hub id or a folder.")
    check_prompt_template(o.prompt, "prompt")
    check_prompt_template(o.negative_prompt, "negative_prompt")


@dataclass(frozen=True)
class Text2ImageOptions:
    """Options of the text-to-image generators (``diffusers:<hub id or folder>``).

    Attributes
    ----------
    model : str or None
        Hugging Face hub id or local folder of a diffusers pipeline (the folder holds
        model_index.json, as written by pipeline.save_pretrained).
    prompt : str
        Prompt template: {name} is the retrieved label's name (its first WordNet
        lemma, with spaces), {wnid} its WordNet id.
    negative_prompt : str
        What to steer away from, used when guidance is above 1 (empty: none).
    steps : int
        Denoising steps (img2img runs int(steps x strength) of them, at least one).
    guidance : float
        Classifier-free guidance scale; 1 or less turns guidance off.
    scheduler : {"dpm++", "model"}
        dpm++ is DPMSolverMultistepScheduler built from the model's scheduler
        config; model keeps the scheduler the model ships.
    size : int or None
        Width and height of the images in pixels, a multiple of 8 (none: the
        model's native size).
    images_per_request : int
        Pictures per test image, each with its own seed.
    strength : float
        img2img only (requests with an initial image): how far the initial image
        is noised, 0 < strength <= 1 (1 keeps nothing of it).
    max_retries : int
        Extra attempts, each with the next derived seed, for an image the safety
        checker flagged; flagged on every attempt, it is returned marked flagged.
    safety_checker : bool
        Run the safety checker the model ships (false does not load it; recorded
        with every image).
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

    model: str | None = None
    prompt: str = "a photo of a {name}"
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 7.5
    scheduler: str = "dpm++"
    size: int | None = None
    images_per_request: int = 1
    strength: float = 0.75
    max_retries: int = 3
    safety_checker: bool = True
    offload: bool = False
    attention_slicing: bool = False
    local_files_only: bool | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_pipeline_options(self)
        s = self.strength
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 1:
            raise ConfigError(
                f"{_flag('strength')}{s!r}: the img2img strength must be in (0, 1] "
                "(small keeps more of the initial image)."
            )
        r = self.max_retries
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ConfigError(f"{_flag('max_retries')}{r!r}: give a whole number >= 0.")


@dataclass(frozen=True)
class SD15Options(Text2ImageOptions):
    __doc__ = (
        "Options of ``sd15``: Stable Diffusion 1.5 at the seed pipeline's settings (25 steps,\n"
        "    guidance 7.5, 512 px), with the DPM-Solver++ scheduler.\n\n"
        + _attributes(Text2ImageOptions)
    )

    model: str | None = SD15_MODEL
    size: int | None = 512


@dataclass(frozen=True)
class SDTurboOptions(Text2ImageOptions):
    __doc__ = (
        "Options of ``sd-turbo``: one step, no guidance, 512 px, the model's own scheduler.\n\n"
        + _attributes(Text2ImageOptions)
    )

    model: str | None = SD_TURBO_MODEL
    steps: int = 1
    guidance: float = 0.0
    scheduler: str = "model"
    size: int | None = 512


# -------------------------------------------------------------------------- seeds
def sample_seed(run_seed: int, stem: str, index: int = 0, attempt: int = 0) -> int:
    """Seed of picture ``index`` of a request, at ``attempt`` (0 = first try).

    Picture 0 uses :func:`~fmri2image.generation.image_seed` of the stem itself; picture
    ``k > 0`` that of ``"<stem>#<k>"``, so asking for more pictures per request never
    changes the first.
    """
    return image_seed(run_seed, stem if index == 0 else f"{stem}#{index}", attempt)


def img2img_steps(steps: int, strength: float) -> int:
    """Steps to ask an img2img pipeline for so that it denoises at least once.

    diffusers runs ``int(steps * strength)`` denoising steps from the noised initial
    image; sd-turbo's single step at strength 0.75 would run none.
    """
    n = int(steps)
    while int(n * strength) < 1:
        n += 1
    return n


def prompt_for(template: str, request: GenerationRequest, generator: str) -> str:
    """The prompt of ``request``; :class:`ConfigError` if it lacks a field the template uses."""
    fields = check_prompt_template(template)
    values = {"name": request.name, "wnid": request.wnid}
    missing = [f for f in fields if not values.get(f)]
    if missing:
        raise ConfigError(
            f"Generator {generator!r} makes its prompt from the retrieved label "
            f"({template!r}), but the request for {request.stem} has no "
            f"{' or '.join(missing)}. Decode with a labelled database (--database) so every "
            "test image has a top-1 label, or give a --option prompt=... without {name}."
        )
    return template.format(**{f: values[f] for f in fields})


# ------------------------------------------------------------------------ loading
def _resolve_dtype(dtype: str, device: str) -> str:
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}.")
    if dtype == "auto":
        return "float16" if str(device).startswith("cuda") else "float32"
    if dtype == "float16" and str(device) == "cpu":
        raise ConfigError(
            "--dtype float16 needs a GPU: Stable Diffusion in half precision is not supported "
            "on the CPU. Use --dtype float32 (or auto) with --device cpu, or --device cuda."
        )
    return dtype


@dataclass(frozen=True)
class PipelineSource:
    """Where a diffusers pipeline comes from, found without reading any weights.

    Attributes
    ----------
    model : str
        Hub id or folder, as given.
    index : dict
        Its ``model_index.json`` (pipeline class and components).
    revision : str or None
        The hub snapshot commit (``None`` for a folder).
    offline : bool
        Only local files may be read.
    reason : str
        Why downloads are off, for messages.
    """

    model: str
    index: dict
    revision: str | None
    offline: bool
    reason: str = ""

    @property
    def is_folder(self) -> bool:
        from fmri2image.features.encoders._hf import _is_pathlike

        return _is_pathlike(self.model)

    @property
    def path(self) -> str:
        return os.path.expanduser(self.model) if self.is_folder else self.model

    @property
    def class_name(self) -> str:
        return str(self.index.get("_class_name", "?"))

    def has_component(self, name: str) -> bool:
        value = self.index.get(name)
        return isinstance(value, list | tuple) and bool(value) and value[0] is not None

    def from_pretrained_kwargs(self, cache_dir: str | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"cache_dir": cache_dir, "local_files_only": self.offline}
        if self.revision and not self.is_folder:
            kw["revision"] = self.revision  # the snapshot located at build time
        return kw


def _diffusers(feature: str = "Stable Diffusion generators"):
    require("transformers", "diffusion", feature)
    return require("diffusers", "diffusion", feature)


def _unavailable(model: str, exc: BaseException, access: Any, cache_dir: str | None):
    from fmri2image.features.encoders._hf import _first_line
    from fmri2image.features.encoders._net import offline_help

    return ModelUnavailableError(
        f"Diffusion model '{model}' is not in the local Hugging Face cache and "
        f"{access.describe()}. {offline_help(model, files=_PIPELINE_FILES, cache_dir=cache_dir)} "
        "Or download the pipeline folder (model_index.json and its component folders) and "
        "pass it as --option model=/path/to/folder (or --generator diffusers:/path/to/folder). "
        f"Details: {_first_line(exc)}"
    )


def locate_pipeline(
    model: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> PipelineSource:
    """Find a pipeline's ``model_index.json`` (hub cache, download, or folder); no weights.

    Raises
    ------
    ModelUnavailableError
        Not a pipeline folder, or not cached and not downloadable (the message says how
        to get it; with ``HF_HUB_OFFLINE=1`` or an unreachable hub this takes no time).
    """
    from fmri2image.features.encoders._hf import _is_pathlike
    from fmri2image.features.encoders._net import HubAccess, hub_access

    diffusers = _diffusers()
    if _is_pathlike(model):
        folder = os.path.expanduser(model)
        if not os.path.isdir(folder):
            raise ModelUnavailableError(
                f"Diffusion model folder '{model}' does not exist. Pass a folder written by "
                "pipeline.save_pretrained(dir, safe_serialization=True), or a hub id such as "
                f"{SD15_MODEL}."
            )
        if not os.path.isfile(os.path.join(folder, "model_index.json")):
            raise ModelUnavailableError(
                f"'{model}' is not a diffusers pipeline folder: it has no model_index.json. "
                "Save one with pipeline.save_pretrained(dir, safe_serialization=True), or point "
                "to the folder that holds model_index.json."
            )
        access = HubAccess(True, "local directory")
    else:
        access = hub_access(local_files_only)
    try:
        with _quiet(diffusers):
            index, commit = diffusers.DiffusionPipeline.load_config(
                os.path.expanduser(model) if _is_pathlike(model) else model,
                cache_dir=cache_dir,
                local_files_only=access.offline,
                return_commit_hash=True,
            )
    except (OSError, ValueError) as exc:
        if _is_pathlike(model):
            raise ModelUnavailableError(
                f"Cannot read the pipeline folder '{model}' ({exc})."
            ) from exc
        raise _unavailable(model, exc, access, cache_dir) from exc
    if not commit and not _is_pathlike(model):
        commit = _cached_commit(model, cache_dir)
    return PipelineSource(model, dict(index), commit, access.offline, access.reason)


def _cached_commit(model: str, cache_dir: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(model, "model_index.json", cache_dir=cache_dir)
    return os.path.basename(os.path.dirname(hit)) if isinstance(hit, str) else None


def _load_error(source: PipelineSource, exc: BaseException, cache_dir: str | None):
    from fmri2image.features.encoders._net import HubAccess

    text = str(exc)
    if "safetensors" in text:
        return ModelUnavailableError(
            f"'{source.model}' has no safetensors weights for every component; fmri2image "
            "never unpickles .bin/.ckpt files. Convert once on a trusted machine with "
            "pipeline.save_pretrained(dir, safe_serialization=True) and pass that folder, or "
            f"pick a revision that has safetensors. Details: {text.strip().splitlines()[0]}"
        )
    if source.is_folder:
        return ModelUnavailableError(
            f"Cannot load the diffusers pipeline in '{source.model}' ({exc}). It must hold "
            "model_index.json and one folder per component, as written by "
            "pipeline.save_pretrained(dir, safe_serialization=True)."
        )
    access = HubAccess(source.offline, source.reason)
    return _unavailable(source.model, exc, access, cache_dir)


# ------------------------------------------------------------------ base generator
class PipelineGenerator(Generator):
    """A generator backed by one diffusers pipeline: locating, loading, placing it.

    Built cheaply: the constructor validates the options and locates the model
    (``model_index.json``); the weights load on first use (:meth:`load`).

    Parameters
    ----------
    device : str
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    dtype : {"auto", "float32", "float16", "bfloat16"}
        Precision of the weights; ``"auto"`` is float16 on CUDA, float32 elsewhere.
    **options
        Fields of :attr:`Options`.
    """

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=_resolve_dtype(dtype, device), **options)
        o = self.options
        if o.model is None:
            raise ConfigError(
                f"Generator {self.name!r} needs a model: --option model=<hub id or folder>."
            )
        if o.offload:
            if not str(device).startswith("cuda"):
                raise ConfigError(
                    f"{_flag('offload')}true moves components between the CPU and a GPU; it "
                    f"needs --device cuda (got --device {device})."
                )
            require("accelerate", "diffusion", f"{_flag('offload')}true (model CPU offload)")
        self.source = locate_pipeline(
            o.model, cache_dir=o.cache_dir, local_files_only=o.local_files_only
        )
        self._check_source(self.source)
        self._pipe: Any = None
        self._offload_owner: Any = None

    # hooks for subclasses --------------------------------------------------------
    def _check_source(self, source: PipelineSource) -> None:
        """Refuse a model this generator cannot drive (ConfigError), before any weights load."""

    def _from_pretrained(self, diffusers: Any, source: PipelineSource, kwargs: dict) -> Any:
        return diffusers.DiffusionPipeline.from_pretrained(source.path, **kwargs)

    def _load_kwargs(self, source: PipelineSource) -> dict[str, Any]:
        return {}

    # loading ---------------------------------------------------------------------
    def load(self) -> Any:
        """The diffusers pipeline, loaded and placed on the device on first call."""
        if self._pipe is not None:
            return self._pipe
        import torch

        diffusers = _diffusers()
        o = self.options
        kwargs = {
            "torch_dtype": getattr(torch, self.dtype),
            "use_safetensors": True,
            **self.source.from_pretrained_kwargs(o.cache_dir),
            **self._load_kwargs(self.source),
        }
        try:
            with _quiet(diffusers):
                pipe = self._from_pretrained(diffusers, self.source, kwargs)
        except OSError as exc:
            raise _load_error(self.source, exc, o.cache_dir) from exc
        if o.scheduler == "dpm++":
            pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(
                pipe.scheduler.config
            )
        pipe.set_progress_bar_config(disable=True)
        if o.attention_slicing:
            pipe.enable_attention_slicing()
        if not o.offload:
            pipe.to(self.device)
        self._pipe = pipe
        self._activate(pipe)
        return pipe

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (:meth:`load`)."""
        return self.load()

    def _activate(self, pipe: Any) -> None:
        """With offload, attach the CPU-offload hooks to ``pipe``'s (shared) components.

        Pipelines made with ``from_pipe`` share modules; enabling offload on one removes
        the other's hooks, so the pipeline about to run (re)takes them.
        """
        if self.options.offload and self._offload_owner is not pipe:
            pipe.enable_model_cpu_offload(device=self.device)
            self._offload_owner = pipe

    def native_size(self) -> int:
        """The model's native image side in pixels (UNet sample size x VAE scale)."""
        pipe = self.pipeline
        scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
        unet = getattr(pipe, "unet", None)
        if unet is not None and getattr(unet.config, "sample_size", None):
            return int(unet.config.sample_size) * scale
        default = getattr(pipe, "default_sample_size", None)
        return int(default) * scale if default else 512

    def image_size(self) -> int:
        return self.options.size or self.native_size()

    def generators(self, seeds: Sequence[int]) -> list[Any]:
        """One CPU ``torch.Generator`` per image (CPU: the same noise on every device)."""
        import torch

        return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["revision"] = self.source.revision
        d["pipeline"] = self.source.class_name
        return d


@contextlib.contextmanager
def _quiet(diffusers: Any) -> Iterator[None]:
    """Silence diffusers' and transformers' load chatter (progress bars, notices)."""
    import transformers

    dl, tl = diffusers.utils.logging, transformers.utils.logging
    levels = dl.get_verbosity(), tl.get_verbosity()
    bars = dl.is_progress_bar_enabled(), tl.is_progress_bar_enabled()
    dl.set_verbosity_error()
    tl.set_verbosity_error()
    dl.disable_progress_bar()
    tl.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for lib, bar in zip((dl, tl), bars):
            if bar:
                lib.enable_progress_bar()
        dl.set_verbosity(levels[0])
        tl.set_verbosity(levels[1])


# ------------------------------------------------------------------ text-to-image
class Text2ImageGenerator(PipelineGenerator):
    """Text-to-image (and img2img) from the retrieved label, with safety regeneration.

    ``generate`` makes every picture of the given requests in one pipeline call per
    mode (text-to-image, img2img), then regenerates the flagged ones together.
    """

    name = "diffusers"
    conditioning = "label"
    Options = Text2ImageOptions

    def __init__(self, *, device: str = "cpu", dtype: str = "float32", **options: Any) -> None:
        super().__init__(device=device, dtype=dtype, **options)
        self._img2img: Any = None

    def _check_source(self, source: PipelineSource) -> None:
        if "UnCLIP" in source.class_name:
            raise ConfigError(
                f"'{source.model}' is a {source.class_name}, which generates from an image "
                "embedding, not from a prompt: use --generator unclip "
                f"--option model={source.model}."
            )

    def _load_kwargs(self, source: PipelineSource) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if not self.options.safety_checker and "safety_checker" in source.index:
            kw["safety_checker"] = None
            if "requires_safety_checker" in source.index:
                kw["requires_safety_checker"] = False
        return kw

    def _from_pretrained(self, diffusers: Any, source: PipelineSource, kwargs: dict) -> Any:
        try:
            return diffusers.AutoPipelineForText2Image.from_pretrained(source.path, **kwargs)
        except ValueError as exc:
            if "AutoPipeline can't find" not in str(exc):
                raise
            # Not in diffusers' text-to-image table: the class model_index.json names.
            return diffusers.DiffusionPipeline.from_pretrained(source.path, **kwargs)

    def img2img_pipeline(self) -> Any:
        """The image-to-image variant, sharing every component of :attr:`pipeline`."""
        if self._img2img is None:
            diffusers = _diffusers()
            base = self.pipeline
            try:
                with _quiet(diffusers):
                    pipe = diffusers.AutoPipelineForImage2Image.from_pipe(base)
            except ValueError as exc:
                raise ConfigError(
                    f"'{self.options.model}' ({type(base).__name__}) has no image-to-image "
                    "variant, so it cannot start from an initial image. Generate without "
                    "--init, or use sd15 / sd-turbo."
                ) from exc
            pipe.set_progress_bar_config(disable=True)
            self._img2img = pipe
        return self._img2img

    @property
    def safety_status(self) -> str:
        """``"on"``, ``"off"`` (disabled by the option) or ``"absent"`` (none shipped)."""
        if not self.source.has_component("safety_checker"):
            return "absent"
        if not self.options.safety_checker:
            return "off"
        return "on" if getattr(self.pipeline, "safety_checker", None) is not None else "absent"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order (see the module docstring for seeds and safety)."""
        requests = list(requests)
        if not requests:
            return []
        o = self.options
        prompts = [prompt_for(o.prompt, r, self.name) for r in requests]
        negatives = [prompt_for(o.negative_prompt, r, self.name) for r in requests]
        prepared = self._prepare(requests)  # everything checked before the first image
        slots = [(i, k) for i in range(len(requests)) for k in range(o.images_per_request)]
        attempt = dict.fromkeys(slots, 0)
        done: dict[tuple[int, int], tuple[Any, bool]] = {}
        seconds = [0.0] * len(requests)
        pending = slots
        while pending:
            retry = []
            for group in self._calls(pending, requests):
                img2img = requests[group[0][0]].init_image is not None
                seeds = [sample_seed(requests[i].seed, requests[i].stem, k, attempt[(i, k)])
                         for i, k in group]  # fmt: skip
                t0 = time.perf_counter()
                images, flags = self._run(
                    [prompts[i] for i, _ in group],
                    [negatives[i] for i, _ in group],
                    seeds,
                    [requests[i].init_image for i, _ in group] if img2img else None,
                    [prepared[i] for i, _ in group],
                )
                share = (time.perf_counter() - t0) / len(group)
                for slot, image, flag in zip(group, images, flags):
                    seconds[slot[0]] += share
                    if flag and attempt[slot] < o.max_retries:
                        attempt[slot] += 1
                        retry.append(slot)
                    else:
                        done[slot] = (image, flag)
            pending = retry
        return [
            self._result(r, i, prompts[i], negatives[i], done, attempt, seconds[i], prepared[i])
            for i, r in enumerate(requests)
        ]

    #: Make each request's pictures in calls of their own (a conditioning the pipeline
    #: cannot vary within a batch, e.g. ip_adapter_image_embeds).
    per_request_calls: ClassVar[bool] = False

    def _calls(self, pending, requests) -> list[list[tuple[int, int]]]:
        """Split the pending pictures into pipeline calls: one per mode (and request)."""
        groups: dict[tuple, list[tuple[int, int]]] = {}
        for slot in pending:
            key = (requests[slot[0]].init_image is not None,)
            if self.per_request_calls:
                key += (slot[0],)
            groups.setdefault(key, []).append(slot)
        return [groups[k] for k in sorted(groups)]

    # hooks for conditioning beyond the prompt (ip_adapter.py) ------------------------
    def _prepare(self, requests: Sequence[GenerationRequest]) -> list[Any]:
        """Per-request conditioning besides the prompt, validated before any image."""
        return [None] * len(requests)

    def _call_kwargs(self, pipe: Any, prepared: Sequence[Any]) -> dict[str, Any]:
        """Extra pipeline arguments for one call (one entry of ``prepared`` per image)."""
        return {}

    def _describe(self, prompt: str, request: GenerationRequest, prepared: Any):
        """-> (conditioning text, extra record fields) of one request."""
        return prompt, {}

    def _run(self, prompts, negatives, seeds, inits, prepared):
        """One pipeline call -> (PIL images, safety flags); one generator per image."""
        from PIL import Image

        o = self.options
        img2img = inits is not None
        pipe = self.img2img_pipeline() if img2img else self.pipeline
        self._activate(pipe)
        side = self.image_size()
        kw: dict[str, Any] = {
            "prompt": list(prompts),
            "guidance_scale": float(o.guidance),
            "generator": self.generators(seeds),
            "output_type": "pil",
        }
        if any(negatives):
            kw["negative_prompt"] = list(negatives)
        if img2img:
            kw["image"] = [
                im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC) for im in inits
            ]
            kw["strength"] = float(o.strength)
            kw["num_inference_steps"] = img2img_steps(o.steps, o.strength)
        else:
            kw["num_inference_steps"] = int(o.steps)
            kw["height"] = kw["width"] = side
        kw.update(self._call_kwargs(pipe, prepared))
        out = pipe(**kw)
        flags = getattr(out, "nsfw_content_detected", None)
        flags = [False] * len(prompts) if flags is None else [bool(f) for f in flags]
        return [im.convert("RGB") for im in out.images], flags

    def _result(self, request, i, prompt, negative, done, attempt, seconds, prepared):
        o = self.options
        n = o.images_per_request
        images = tuple(done[(i, k)][0] for k in range(n))
        flags = [bool(done[(i, k)][1]) for k in range(n)]
        tries = [attempt[(i, k)] for k in range(n)]
        seeds = [sample_seed(request.seed, request.stem, k, tries[k]) for k in range(n)]
        img2img = request.init_image is not None
        extra: dict[str, Any] = {
            "model": o.model,
            "revision": self.source.revision,
            "mode": "img2img" if img2img else "text2img",
            "negative_prompt": negative,
            "steps": img2img_steps(o.steps, o.strength) if img2img else int(o.steps),
            "guidance": float(o.guidance),
            "scheduler": type(self.pipeline.scheduler).__name__,
            "size": list(images[0].size),
            "safety_checker": self.safety_status,
        }
        if img2img:
            extra["strength"] = float(o.strength)
        if n > 1:
            extra.update(seeds=seeds, attempts=[t + 1 for t in tries], flagged=flags)
        conditioning, more = self._describe(prompt, request, prepared)
        extra.update(more)
        return GenerationResult(
            stem=request.stem,
            images=images,
            conditioning=conditioning,
            seed=seeds[0],
            flagged=any(flags),
            attempts=max(tries) + 1,
            seconds=seconds,
            extra=extra,
        )


class SD15Generator(Text2ImageGenerator):
    """``sd15``: Stable Diffusion 1.5 from the label, DPM-Solver++ 25 steps, guidance 7.5."""

    name = "sd15"
    Options = SD15Options


class SDTurboGenerator(Text2ImageGenerator):
    """``sd-turbo``: one-step distilled SD 2.1 (no guidance, its own scheduler)."""

    name = "sd-turbo"
    Options = SDTurboOptions


class DiffusersGenerator(Text2ImageGenerator):
    """``diffusers:<hub id or folder>``: any diffusers text-to-image pipeline.

    Parameters
    ----------
    source : str
        The hub id or folder after ``diffusers:``; it is the ``model`` option.
    """

    def __init__(self, source: str, *, device: str = "cpu", dtype: str = "float32",
                 **options: Any) -> None:  # fmt: skip
        given = options.get("model")
        if given not in (None, source):
            raise ConfigError(
                f"diffusers:{source} already names the model; drop --option model={given} "
                f"(or use --generator diffusers:{given})."
            )
        self.name = f"diffusers:{source}"
        super().__init__(device=device, dtype=dtype, **{**options, "model": source})
