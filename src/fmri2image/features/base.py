"""The encoder contract shared by the registry, the extraction engine and its users.

An :class:`Encoder` is split in two halves on purpose:

* :meth:`Encoder.preprocess` runs in DataLoader worker processes on the CPU: it turns
  one decoded RGB ``PIL.Image`` into a float tensor with the model's *own*
  preprocessing (resize, crop, normalization).  It must be picklable and must not
  touch the model weights.
* :meth:`Encoder.embed` runs in the main process on ``device``: it maps a batch of
  preprocessed tensors to embeddings.

So one decode of an image can feed several encoders (each preprocesses the same
decoded image), and decoding overlaps with inference.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from PIL import Image

__all__ = ["Encoder", "EncoderSpec"]


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is: enough to cite it, reproduce it and size its outputs.

    Attributes
    ----------
    name : str
        Registry name (``"resnet50"``, ``"hf:org/model"``, ...).
    weights : str
        Where the weights come from (hub id, torchvision enum, package, local path).
    layer : str
        Which activation is the embedding (e.g. ``"avgpool"``, ``"pooler_output"``,
        ``"image_embeds"``).
    dim : int
        Embedding dimension.
    image_size : int
        Input side length in pixels after preprocessing.
    preprocessing : str
        Human-readable preprocessing description (resize, crop, mean/std).
    license : str
        Licence of the weights.
    extra : dict
        Anything else worth recording in a manifest.
    classifier_head : bool or None
        Whether :meth:`Encoder.class_prototypes` returns ImageNet-1k classifier rows
        (so ``--database prototypes`` works); ``None`` when not known without loading.
    text_tower : bool or None
        Whether :meth:`Encoder.embed_text` works (a CLIP-style text tower in the same
        embedding space, so ``--database text-prototypes`` works); ``None`` when unknown.
    """

    name: str
    weights: str
    layer: str
    dim: int
    image_size: int
    preprocessing: str
    license: str
    extra: dict[str, Any] = field(default_factory=dict)
    classifier_head: bool | None = None
    text_tower: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Encoder(abc.ABC):
    """A pretrained image encoder with its own preprocessing.

    Subclasses set ``self.spec`` and implement :meth:`preprocess` and :meth:`embed`.
    ``device`` and ``dtype`` are explicit; defaults are CPU and float32.
    """

    spec: EncoderSpec
    device: str = "cpu"
    dtype: str = "float32"

    @abc.abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB PIL image -> float32 tensor of shape (3, H, W). CPU only, picklable.

        Built-in encoders override this with a *property* that returns a small
        picklable transform object, so ``pickle.dumps(encoder.preprocess)`` (as a
        DataLoader worker does) carries the transform but never the model weights.
        Call sites are the same either way: ``encoder.preprocess(image)``.
        """

    @abc.abstractmethod
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Preprocessed batch (B, 3, H, W) -> embeddings (B, dim), float32, on CPU."""

    def class_prototypes(self) -> tuple[np.ndarray, list[str]] | None:
        """ImageNet class prototypes from the classifier head, if the model has one.

        Returns ``(weights, wnids)`` with ``weights`` of shape (n_classes, dim) in the
        embedding space and ``wnids`` the WordNet ids (``"n01440764"``, ...), or
        ``None`` when the model has no classification head.
        """
        return None

    @property
    def has_text_tower(self) -> bool:
        """True when :meth:`embed_text` maps text into this encoder's image space."""
        return False

    @property
    def supports_pixels(self) -> bool:
        """True when :meth:`embed_pixels` works (a differentiable path from pixels).

        Cheap: answered from the encoder's preprocessing description, no forward pass.
        """
        return False

    @property
    def any_input_size(self) -> bool:
        """Whether the network takes inputs of any size (a convolutional network with
        global pooling; not a transformer with fixed position embeddings), so that
        :meth:`embed_pixels` can run it on a smaller view (``view_scale``)."""
        return False

    def embed_pixels(self, pixels: torch.Tensor, *, view_scale: float = 1.0) -> torch.Tensor:
        """Differentiable embedding of raw pixels (for feature inversion).

        Does the encoder's own resize, center crop and normalization in torch (no
        PIL, no rounding to 8 bits) and the forward pass with autograd enabled, so
        gradients flow back to ``pixels``.  On an image already at the size the
        preprocessing resizes to, ``embed_pixels(x)`` equals
        ``embed(preprocess(image))`` to float tolerance; elsewhere torch's
        antialiased resampling stands in for PIL's.

        Parameters
        ----------
        pixels : Tensor of shape (B, 3, H, W)
            RGB in [0, 1], any float dtype, may require grad.
        view_scale : float
            The network sees the pixels resized and cropped to this fraction of its
            input size (only where :attr:`any_input_size`): cheaper, at the cost of
            matching the embedding at another scale than the one it was computed at.

        Returns
        -------
        Tensor of shape (B, dim), float32
            On the encoder's device, attached to the autograd graph.

        Raises
        ------
        ConfigError
            The encoder's preprocessing has no torch equivalent
            (:attr:`supports_pixels` is False).
        """
        from fmri2image.errors import ConfigError

        raise ConfigError(
            f"Encoder {self.name!r} has no differentiable pixel path: its preprocessing is "
            "a library transform fmri2image cannot reproduce in torch, so images cannot be "
            "optimized through it (feature inversion, generator 'invert'). Use an encoder "
            "whose preprocessing is resize / center crop / mean-std (the EfficientNet-Lites, "
            "resnet50, torchvision:, vit, clip, most hf:, timm: and open_clip: models)."
        )

    def embed_text(self, prompts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
        """Text prompts -> embeddings in the image embedding space.

        Parameters
        ----------
        prompts : sequence of str
            E.g. ``["a photo of a tabby cat", ...]``.
        batch_size : int
            Prompts per forward pass.

        Returns
        -------
        ndarray of shape (len(prompts), dim), float32
            The model's projected text embeddings (not L2-normalized), comparable by
            cosine with :meth:`embed` outputs.

        Raises
        ------
        ConfigError
            The encoder has no text tower (only CLIP-family encoders have one).
        """
        from fmri2image.errors import ConfigError

        raise ConfigError(
            f"Encoder {self.name!r} has no text tower, so it cannot embed class names. "
            "Text prototypes need a CLIP-family encoder ('clip', an 'hf:' CLIP checkpoint "
            "or 'open_clip:...'); use --database prototypes (ImageNet classifiers) or an "
            "image database from `fmri2image extract` instead."
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, dim={self.spec.dim}, device={self.device!r})"
