"""Visual embedding models (encoders) and image feature extraction.

Importing this package is cheap: torch and the model libraries are imported only
when an encoder is built.

>>> from fmri2image.features import get_encoder, embed_images   # doctest: +SKIP
>>> enc = get_encoder("effnet-lite0")
>>> X = embed_images(enc, ["a.jpg", "b.jpg"])          # (2, 1280) float32
"""

from fmri2image.features.base import Encoder, EncoderSpec
from fmri2image.features.embed import embed_images, load_rgb
from fmri2image.features.registry import (
    ENCODERS,
    EncoderEntry,
    encoder_spec,
    get_encoder,
    list_encoders,
    register_encoder,
)

__all__ = [
    "ENCODERS",
    "Encoder",
    "EncoderEntry",
    "EncoderSpec",
    "embed_images",
    "encoder_spec",
    "get_encoder",
    "list_encoders",
    "load_rgb",
    "register_encoder",
]
