"""Semantic retrieval: predicted embeddings -> nearest labelled items -> class labels.

>>> from fmri2image.retrieval import FeatureIndex, retrieve  # doctest: +SKIP
>>> index = FeatureIndex.from_store("features/effnet-lite0")   # shard by shard
>>> # or prototype_index("effnet-lite0"), text_prototype_index(clip_encoder, "21k")
>>> result = retrieve(predicted, index, k=5, vote="nearest")
>>> result.top1                                                # top-ranked wnid per query
>>> hub = hubness_correction(index, "csls", query_mean=train_mean, references=train_emb)
>>> result = retrieve(predicted, index, k=5, hubness=hub)      # hub-free search

Scoring the labels (hit@k, WordNet, coverage): :func:`fmri2image.evaluation.semantic_metrics`.

Importing this package is cheap: FAISS is imported when an index is first built.
"""

from fmri2image.retrieval.hubness import (
    DEFAULT_CSLS_K,
    DEFAULT_HUBNESS,
    HUBNESS,
    HubnessCorrection,
    hub_concentration,
    hubness_correction,
)
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
    "DEFAULT_CSLS_K",
    "DEFAULT_HUBNESS",
    "DEFAULT_TEMPLATE",
    "HUBNESS",
    "INDEX_KINDS",
    "METRICS",
    "VOTES",
    "FeatureIndex",
    "HubnessCorrection",
    "IndexKind",
    "RetrievalResult",
    "apply_vote",
    "class_prompts",
    "hub_concentration",
    "hubness_correction",
    "l2_normalize",
    "prototype_index",
    "retrieve",
    "text_prototype_index",
    "text_prototypes",
    "vocabulary_wnids",
]
