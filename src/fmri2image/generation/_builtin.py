"""Registry entries of the built-in generators (lazy: nothing heavy is imported here).

A generator's module is imported only when the generator is built, or when its
``Options`` are asked for (:func:`fmri2image.generation.generator_options`).
"""

from __future__ import annotations

import importlib
from typing import Any

from fmri2image.generation.base import GENERATORS, GeneratorEntry, register_generator
from fmri2image.registry import Needs


class lazy:  # lower case on purpose: used like a function, lazy("invert", "InvertGenerator")
    """A factory that imports ``fmri2image.generation.<module>.<attr>`` only when used.

    Calling it builds the generator (``attr(*args, **kwargs)``); :meth:`resolve`
    returns the class itself, so its ``Options`` can be read without building it.
    """

    def __init__(self, module: str, attr: str, *args: Any) -> None:
        self.module, self.attr, self.args = module, attr, args
        self.__name__ = self.__qualname__ = f"{module}.{attr}"

    def resolve(self) -> Any:
        mod = importlib.import_module(f"fmri2image.generation.{self.module}")
        return getattr(mod, self.attr)

    def __call__(self, **kwargs: Any) -> Any:
        return self.resolve()(*self.args, **kwargs)


# Entries (one register_generator call each) follow, e.g.:
#   register_generator("invert", lazy("invert", "InvertGenerator"),
#                      conditioning="embedding", description="...", offline=True)

# Offline: feature inversion through the encoder (invert.py), nearest image of an image
# database (retrieve.py), image codes decoded from early visual cortex (lowlevel.py); no
# generator weights needed (lowlevel's vae code reads a VAE).
register_generator(
    "invert", lazy("invert", "InvertGenerator"), conditioning="embedding",
    description="feature inversion: optimise an image until the encoder's embedding of it "
    "matches the prediction (Fourier prior, blur schedule, random views; any encoder with a "
    "differentiable pixel path)",
    needs=Needs(offline=True),
)  # fmt: skip
register_generator(
    "retrieve", lazy("retrieve", "RetrieveGenerator"), conditioning="embedding",
    description="the image database's picture nearest to the prediction (cosine; a run "
    "gives it its first image database, or --option database=DIR)",
    needs=Needs(offline=True, inputs=("database",)),
)  # fmt: skip
register_generator(
    "lowlevel", lazy("lowlevel", "LowLevelGenerator"), conditioning="embedding",
    description="blurry picture decoded from an early-visual-cortex map to a compact image "
    "code (Brain-Diffuser/MindEye2 low-level pathway)",
    needs=Needs(
        offline=True, inputs=("codebook",),
        weights="none for code=pca; code=vae reads a diffusers AutoencoderKL (hub id or folder)",
    ),
)  # fmt: skip

#: What the diffusion generators import when built, and where their weights come from.
_DIFFUSION = Needs(
    extra="diffusion",
    packages=("diffusers", "transformers"),
    weights="the Hugging Face hub (or a local folder)",
    offline=False,
    gpu=True,
)


# Diffusion: Stable Diffusion from the retrieved label (diffusion.py), unCLIP from the
# predicted embedding (unclip.py); weights from the Hugging Face hub or a folder.
register_generator(
    "sd15", lazy("diffusion", "SD15Generator"), conditioning="label",
    description="Stable Diffusion 1.5 from the retrieved label (DPM-Solver++, 25 steps, "
    "guidance 7.5, 512 px; stable-diffusion-v1-5/stable-diffusion-v1-5)",
    needs=_DIFFUSION,
)  # fmt: skip
register_generator(
    "sd-turbo", lazy("diffusion", "SDTurboGenerator"), conditioning="label",
    description="SD-Turbo from the retrieved label (1 step, no guidance, 512 px; "
    "stabilityai/sd-turbo)",
    needs=_DIFFUSION,
)  # fmt: skip
register_generator(
    "unclip", lazy("unclip", "UnclipGenerator"), conditioning="embedding",
    description="Stable unCLIP from the predicted CLIP ViT-L/14 image embedding (decode with "
    "clip-l14; stabilityai/stable-diffusion-2-1-unclip-small)",
    needs=_DIFFUSION,
)  # fmt: skip
register_generator(
    "ip-adapter", lazy("ip_adapter", "IPAdapterGenerator"), conditioning="embedding",
    description="SD 1.5 with the predicted OpenCLIP ViT-H/14 embedding as IP-Adapter image "
    "prompt (decode with open_clip:ViT-H-14:laion2b_s32b_b79k; h94/IP-Adapter)",
    needs=_DIFFUSION,
)  # fmt: skip


def _diffusers_entry(source: str) -> GeneratorEntry:
    """``diffusers:<hub id or folder>``: any diffusers text-to-image pipeline."""
    return GeneratorEntry(
        lazy("diffusion", "DiffusersGenerator", source),
        "label",
        f"diffusers text-to-image pipeline {source} from the retrieved label",
        _DIFFUSION,
    )


GENERATORS.register_prefix("diffusers", _diffusers_entry)
