"""Which retrieval databases an encoder can serve, known before any data or weights load.

Three kinds of labelled database exist (``--database`` on the command line):

``prototypes``
    One row per ImageNet-1k class: the encoder's classifier-head weights
    (:meth:`Encoder.class_prototypes`).  Needs an ImageNet-1k head: the
    EfficientNet-Lites, ``resnet50``, torchvision classifiers, timm models with a
    1000-class head.
``text-prototypes`` / ``text-prototypes:21k``
    One row per class: the text embedding of "a photo of a {name}" over the
    ImageNet-1k classes or the ~21.8k ImageNet-21k synsets
    (:func:`fmri2image.retrieval.text_prototype_index`).  Needs a text tower in the
    image space: ``clip``, ``clip-l14``, ``hf:`` CLIP checkpoints, ``open_clip:`` models.
an image database (a folder)
    Features of labelled images from ``fmri2image extract``.  Every encoder.
``stimuli``
    The dataset's own training stimuli, labelled with their labels (NSD's COCO
    captions, THINGS' concepts, GOD's WordNet ids), from the features the run computes
    anyway.  Every encoder; never a test image.
``captions``
    One row per distinct label of the training stimuli: the text embedding of the
    label itself (a text label, such as a COCO caption) or of "a photo of a {name}"
    (a WordNet id).  Needs a text tower, as ``text-prototypes``.

>>> encoder_capabilities("vit").databases        # doctest: +SKIP
('images',)
>>> encoder_capabilities("clip").check("prototypes")   # doctest: +SKIP
ConfigError: Encoder 'clip' has no ImageNet-1k classifier head ... use --database text-prototypes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fmri2image.errors import ConfigError
from fmri2image.features.base import EncoderSpec
from fmri2image.features.registry import ENCODERS

__all__ = [
    "DATABASE_KINDS",
    "TEXT_VOCABULARIES",
    "DatabaseChoice",
    "EncoderCapabilities",
    "encoder_capabilities",
    "parse_database",
]

PROTOTYPES = "prototypes"
TEXT_PROTOTYPES = "text-prototypes"
IMAGES = "images"
STIMULI = "stimuli"
CAPTIONS = "captions"
DATABASE_KINDS = (PROTOTYPES, TEXT_PROTOTYPES, IMAGES, STIMULI, CAPTIONS)
#: Class lists a text-prototype database can span.
TEXT_VOCABULARIES = ("1k", "21k")


@dataclass(frozen=True)
class DatabaseChoice:
    """A parsed ``--database`` value.

    Attributes
    ----------
    kind : {"prototypes", "text-prototypes", "images", "stimuli", "captions"}
    vocabulary : {"1k", "21k"} or None
        Class list of a text-prototype database.
    path : str or None
        Folder of an image database.
    """

    kind: str
    vocabulary: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.kind == TEXT_PROTOTYPES:
            return TEXT_PROTOTYPES if self.vocabulary == "1k" else f"{TEXT_PROTOTYPES}:21k"
        return self.path if self.kind == IMAGES else self.kind


def parse_database(text: str | DatabaseChoice) -> DatabaseChoice:
    """``"prototypes"`` | ``"text-prototypes[:1k|:21k]"`` | a folder -> :class:`DatabaseChoice`."""
    if isinstance(text, DatabaseChoice):
        return text
    text = str(text)
    if text in (PROTOTYPES, STIMULI, CAPTIONS):
        return DatabaseChoice(text)
    if text == TEXT_PROTOTYPES or text.startswith(TEXT_PROTOTYPES + ":"):
        vocabulary = text.partition(":")[2] or "1k"
        if vocabulary not in TEXT_VOCABULARIES:
            raise ConfigError(
                f"Unknown text-prototype vocabulary '{vocabulary}' in --database {text}. Use "
                "'text-prototypes' (ImageNet-1k classes) or 'text-prototypes:21k' "
                "(all ImageNet-21k synsets)."
            )
        return DatabaseChoice(TEXT_PROTOTYPES, vocabulary=vocabulary)
    if not text:
        raise ConfigError(
            "--database is empty; pass 'prototypes', 'text-prototypes', 'stimuli', "
            "'captions' or a folder."
        )
    return DatabaseChoice(IMAGES, path=text)


@dataclass(frozen=True)
class EncoderCapabilities:
    """What an encoder can retrieve against.

    Attributes
    ----------
    name : str
        Registry name.
    class_prototypes : bool or None
        Has an ImageNet-1k classifier head (``--database prototypes``); ``None`` when
        it cannot be known without building the encoder.
    text_prototypes : bool or None
        Has a text tower (``--database text-prototypes``); ``None`` when unknown.
    image_database : bool
        Can use an extracted image database (always true).
    """

    name: str
    class_prototypes: bool | None
    text_prototypes: bool | None
    image_database: bool = True

    @property
    def databases(self) -> tuple[str, ...]:
        """The database kinds known to work, in :data:`DATABASE_KINDS` order (``stimuli``
        works wherever ``images`` does, ``captions`` wherever ``text-prototypes`` does)."""
        usable = {
            PROTOTYPES: self.class_prototypes,
            TEXT_PROTOTYPES: self.text_prototypes,
            IMAGES: self.image_database,
        }
        # stimuli and captions follow from images and text-prototypes (listed once).
        return tuple(k for k in DATABASE_KINDS if usable.get(k))

    def supports(self, database: str | DatabaseChoice) -> bool | None:
        """Whether ``database`` works with this encoder (``None``: unknown until built)."""
        kind = parse_database(database).kind
        if kind == PROTOTYPES:
            return self.class_prototypes
        if kind in (TEXT_PROTOTYPES, CAPTIONS):
            return self.text_prototypes
        return self.image_database

    def check(self, database: str | DatabaseChoice) -> None:
        """Raise :class:`ConfigError` when ``database`` is known not to work; say what does."""
        choice = parse_database(database)
        if self.supports(choice) is not False:
            return
        extract = (
            f"build an image database with `fmri2image extract --model {self.name} --images "
            "IMAGENET_DIR --out DIR` and pass --database DIR"
        )
        if choice.kind == PROTOTYPES:
            what = "no ImageNet-1k classifier head, so it has no class prototypes"
            alt = (
                "use --database text-prototypes (or text-prototypes:21k) with its text tower, or "
                if self.text_prototypes
                else ""
            )
        else:
            what = "no text tower, so it cannot embed class names (text prototypes need CLIP)"
            alt = (
                "use --database prototypes (its ImageNet-1k head), or "
                if self.class_prototypes
                else ""
            )
        raise ConfigError(f"Encoder '{self.name}' has {what}. Instead, {alt}{extract}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "databases": list(self.databases)}


def _from_spec(spec: EncoderSpec) -> dict[str, bool | None]:
    return {"classifier_head": spec.classifier_head, "text_tower": spec.text_tower}


def encoder_capabilities(
    name: str, *, cache_dir: str | None = None, local_files_only: bool | None = None
) -> EncoderCapabilities:
    """Which databases ``name`` can serve, without loading weights.

    How each family answers:

    * named encoders (``effnet-lite0/2``, ``resnet50``, ``vit``, ``clip``,
      ``clip-l14``): the static spec table, no imports;
    * ``hf:<id or folder>``: its ``config.json`` (never a head: ``hf:`` models load
      without one; a text tower for full CLIP checkpoints, ``model_type == "clip"``);
    * ``timm:<name>``: the pretrained config (a 1000-class head), confirmed from the
      safetensors header when the file is already on disk;
    * ``torchvision:<builder>``: the weights' category count and the model's last
      linear layer, built on the meta device;
    * ``open_clip:<...>``: always a text tower, never a head (no import).

    Custom encoders answer from their spec's ``classifier_head`` / ``text_tower``;
    without a cheap spec both are ``None`` (unknown).

    Raises
    ------
    ConfigError
        Unknown encoder name.
    ModelUnavailableError
        An ``hf:`` model whose config is neither cached nor downloadable.
    """
    entry = ENCODERS.get(name)
    kwargs = {"cache_dir": cache_dir, "local_files_only": local_files_only}
    if entry.capabilities is not None:
        found = dict(entry.capabilities(**kwargs))
    elif isinstance(entry.spec, EncoderSpec):
        found = _from_spec(entry.spec)
    elif entry.spec is not None:
        found = _from_spec(entry.spec(**kwargs))
    else:
        found = {"classifier_head": None, "text_tower": None}
    return EncoderCapabilities(
        name=name,
        class_prototypes=found.get("classifier_head"),
        text_prototypes=found.get("text_tower"),
    )
