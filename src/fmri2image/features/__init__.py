"""Visual embedding models (encoders) and image feature extraction.

Importing this package is cheap: torch and the model libraries are imported only
when an encoder is built.

>>> from fmri2image.features import get_encoder, embed_images   # doctest: +SKIP
>>> enc = get_encoder("effnet-lite0")
>>> X = embed_images(enc, ["a.jpg", "b.jpg"])          # (2, 1280) float32
"""

from fmri2image.features.base import Encoder, EncoderSpec
from fmri2image.features.capabilities import (
    DATABASE_KINDS,
    TEXT_VOCABULARIES,
    DatabaseChoice,
    EncoderCapabilities,
    encoder_capabilities,
    parse_database,
)
from fmri2image.features.catalog import ModelRow, model_catalog
from fmri2image.features.databases import (
    ImageDatabase,
    class_prototype_database,
    scan_image_folder,
)
from fmri2image.features.embed import embed_images, load_rgb
from fmri2image.features.extract import ExtractionResult, extract_features
from fmri2image.features.registry import (
    ENCODERS,
    EncoderEntry,
    encoder_spec,
    get_encoder,
    list_encoders,
    register_encoder,
)
from fmri2image.features.shards import FeatureStore, open_feature_store

__all__ = [
    "DATABASE_KINDS",
    "ENCODERS",
    "TEXT_VOCABULARIES",
    "DatabaseChoice",
    "Encoder",
    "EncoderCapabilities",
    "EncoderEntry",
    "EncoderSpec",
    "ExtractionResult",
    "FeatureStore",
    "ImageDatabase",
    "ModelRow",
    "class_prototype_database",
    "embed_images",
    "encoder_capabilities",
    "encoder_spec",
    "extract_features",
    "get_encoder",
    "list_encoders",
    "load_rgb",
    "model_catalog",
    "open_feature_store",
    "parse_database",
    "register_encoder",
    "scan_image_folder",
]
