"""A retrieval database with one row per ImageNet class: the classifier-head weights.

An ImageNet classifier scores class ``c`` of a pooled feature vector ``f`` as
``logit_c = w_c · f + b_c``.  The rows ``w_c`` live in the same space as the
encoder's embeddings, so they can serve as a 1000-class labelled database without a
single database image (``encoder.class_prototypes()``).

Normalization (why cosine is the default, and what ``metric="ip"`` changes):

* The query norm never matters for ranking classes: ``|f|`` scales every score of
  a query alike, in both metrics.
* ``metric="ip"`` ranks by ``w_c · f``, i.e. the classifier's own logits without the
  bias ``b_c`` (``class_prototypes()`` does not expose it).  Classes with a larger
  weight norm ``|w_c|`` are favoured for every query.
* ``metric="cosine"`` (default) divides by ``|w_c|``: prototypes and database image
  features are then treated identically, scores are cosines in [-1, 1] comparable
  with an image database's, and no class is favoured by its weight norm.  For
  EfficientNet-Lite0 the norms vary little (coefficient of variation ≈ 6 %), so the
  two rankings mostly agree.

Either way the prototypes are a *different kind* of database than image features:
a cosine of 0.3 to a prototype is not comparable to 0.3 to an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.retrieval.index import FeatureIndex

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder

__all__ = ["prototype_index"]


def prototype_index(
    source: Encoder | str | tuple[np.ndarray, Sequence[str]],
    *,
    metric: str = "cosine",
    device: str = "cpu",
    threads: int | None = None,
    **encoder_kwargs: Any,
) -> FeatureIndex:
    """Exact index over an encoder's ImageNet class prototypes.

    Parameters
    ----------
    source : Encoder, str or (weights, wnids)
        An encoder with a classification head, its registry name (e.g.
        ``"effnet-lite0"``), or the prototypes themselves: ``weights`` of shape
        (n_classes, dim) and one wnid per row.
    metric : {"cosine", "ip"}, default "cosine"
        See the module docstring.
    device : str
        Device to build the encoder on when ``source`` is a name.
    threads : int, optional
        FAISS threads.
    **encoder_kwargs
        Passed to :func:`fmri2image.features.get_encoder` when ``source`` is a name.

    Returns
    -------
    FeatureIndex
        A ``"flat"`` index with one row per class, labelled with its wnid.
    """
    if isinstance(source, tuple):
        weights, wnids = source
        name = "the given prototypes"
    else:
        if isinstance(source, str):
            from fmri2image.features import encoder_capabilities, get_encoder

            # Say so before any weights load when the answer is known from the spec.
            encoder_capabilities(source, cache_dir=encoder_kwargs.get("cache_dir")).check(
                "prototypes"
            )
            source = get_encoder(source, device=device, **encoder_kwargs)
        protos = source.class_prototypes()
        if protos is None:
            text = (
                "It has a text tower: use text prototypes instead (--database "
                "text-prototypes, or fmri2image.retrieval.text_prototype_index). "
                if getattr(source, "has_text_tower", False)
                else ""
            )
            raise ConfigError(
                f"Encoder {source.name!r} has no classification head, so it has no class "
                f"prototypes. {text}Otherwise use an ImageNet classifier (e.g. "
                "'effnet-lite0') or build an image database with `fmri2image extract`."
            )
        weights, wnids = protos
        name = f"encoder {source.name!r}"
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[0] != len(wnids):
        raise DataFormatError(
            f"Prototypes of {name} have shape {weights.shape} for {len(wnids)} wnids; "
            "expected (n_classes, dim) with one wnid per row."
        )
    if len(set(wnids)) != len(wnids):
        raise DataFormatError(
            f"Prototypes of {name} repeat some wnids; expected one row per class."
        )
    return FeatureIndex("flat", metric=metric, threads=threads).add(weights, list(wnids))
