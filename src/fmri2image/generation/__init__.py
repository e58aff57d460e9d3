"""Image generation: pictures from decoded labels and from predicted embeddings.

>>> from fmri2image.generation import GenerationRequest, get_generator  # doctest: +SKIP
>>> gen = get_generator("invert", encoder="effnet-lite0")
>>> [result] = gen.generate([GenerationRequest(stem="n01443537_22563", embedding=pred)])
>>> result.image.save("n01443537_22563.png")

Generators (``list_generators()``): label-conditioned text-to-image (``sd15``,
``sd-turbo``, ``diffusers:<id or folder>``), embedding-conditioned (``unclip``,
``invert``, ``retrieve``).  Importing this package is cheap: torch and diffusers load
when a generator is built.
"""

from fmri2image.generation import _builtin  # noqa: F401  (registers the built-in generators)
from fmri2image.generation.base import (
    CONDITIONINGS,
    GENERATORS,
    PIPELINE_INPUTS,
    EmbeddingStats,
    GenerationRequest,
    GenerationResult,
    Generator,
    GeneratorEntry,
    generator_options,
    get_generator,
    image_seed,
    list_generators,
    register_generator,
)

__all__ = [
    "CONDITIONINGS",
    "GENERATORS",
    "PIPELINE_INPUTS",
    "EmbeddingStats",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "GeneratorEntry",
    "generator_options",
    "get_generator",
    "image_seed",
    "list_generators",
    "register_generator",
]
