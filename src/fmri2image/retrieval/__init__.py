"""Semantic retrieval: predicted embeddings -> nearest labelled items -> class labels.

>>> from fmri2image.retrieval import FeatureIndex, retrieve  # doctest: +SKIP
>>> index = FeatureIndex.from_store("features/effnet-lite0")   # shard by shard
>>> # or prototype_index("effnet-lite0"), text_prototype_index(clip_encoder, "21k")
>>> result = retrieve(predicted, index, k=5, vote="nearest")
>>> result.top1                                                # top-ranked wnid per query

Scoring the labels (hit@k, WordNet, coverage): :func:`fmri2image.evaluation.semantic_metrics`.

Importing this package is cheap: FAISS is imported when an index is first built.
"""

from fmri2image.retrieval.index import INDEX_KINDS, METRICS, FeatureIndex, IndexKind, l2_normalize
from fmri2image.retrieval.prototypes import prototype_index
from fmri2image.retrieval.text_prototypes import (
    DEFAULT_TEMPLATE,
    class_prompts,
    text_prototype_index,
    text_prototypes,
    vocabulary_wnids,
)
from fmri2image.retrieval.vote import VOTES, RetrievalResult, apply_vote, retrieve

__all__ = [
    "DEFAULT_TEMPLATE",
    "INDEX_KINDS",
    "METRICS",
    "VOTES",
    "FeatureIndex",
    "IndexKind",
    "RetrievalResult",
    "apply_vote",
    "class_prompts",
    "l2_normalize",
    "prototype_index",
    "retrieve",
    "text_prototype_index",
    "text_prototypes",
    "vocabulary_wnids",
]
