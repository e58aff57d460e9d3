"""Evaluation: every score fmri2image reports, computed as the field's papers compute it.

>>> from fmri2image.evaluation import evaluate_images, pair_images  # doctest: +SKIP
>>> pairs = pair_images("recon/", "stimuli/test/")             # matched by file stem
>>> result = evaluate_images(pairs, metrics=["pixcorr", "ssim", "lite0"])
>>> print(result.format())                                     # mean [95 % CI] (chance)
>>> result.save("scores.csv")                                  # + scores.summary.json

One registry (:data:`METRICS`) declares every metric once: its name as the papers'
tables print it, ``higher_is_better``, chance level, and what it needs.  The math is
pure functions with one argument order, ``(y_true, y_pred)``:

* images: :func:`pixcorr`, :func:`ssim` (:mod:`.lowlevel`), :func:`two_way_identification`,
  :func:`correlation_distance`, :func:`nway_classifier_top1` (:mod:`.identification`) on
  the features of the metric networks (:mod:`.networks`: AlexNet, InceptionV3, CLIP
  ViT-L/14, EfficientNet-B1, SwAV, ViT-H/14, and the offline EfficientNet-Lites);
* predicted embeddings: :func:`prediction_metrics` (:mod:`.embedding`);
* retrieved labels: :func:`semantic_metrics` (:mod:`.semantic`);
* statistics: :func:`bootstrap_ci`, :func:`paired_permutation_test` (:mod:`.stats`).

Names are imported lazily (PEP 562): reading the registry loads neither torch nor
scikit-image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmri2image._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.evaluation.base import (
        METRICS,
        Metric,
        get_metric,
        image_metrics,
        list_metrics,
        register_metric,
    )
    from fmri2image.evaluation.embedding import MetricResult, PredictionMetrics, prediction_metrics
    from fmri2image.evaluation.evaluate import Evaluation, evaluate_images
    from fmri2image.evaluation.identification import (
        correlation_distance,
        correlation_matrix,
        nway_classifier_top1,
        nway_identification,
        two_way_identification,
    )
    from fmri2image.evaluation.images import ImagePairs, ImageSource, pair_images
    from fmri2image.evaluation.lowlevel import pixcorr, ssim
    from fmri2image.evaluation.networks import NETWORKS, load_network, network_spec
    from fmri2image.evaluation.semantic import SemanticMetrics, semantic_metrics
    from fmri2image.evaluation.stats import (
        PermutationTest,
        ScoreSummary,
        bootstrap_ci,
        holm_adjust,
        paired_permutation_test,
        summarize_scores,
    )

_MODULES = {
    "fmri2image.evaluation.base": (
        "METRICS",
        "Metric",
        "get_metric",
        "image_metrics",
        "list_metrics",
        "register_metric",
    ),
    "fmri2image.evaluation.embedding": ("MetricResult", "PredictionMetrics", "prediction_metrics"),
    "fmri2image.evaluation.evaluate": ("Evaluation", "evaluate_images"),
    "fmri2image.evaluation.identification": (
        "correlation_distance",
        "correlation_matrix",
        "nway_classifier_top1",
        "nway_identification",
        "two_way_identification",
    ),
    "fmri2image.evaluation.images": ("ImagePairs", "ImageSource", "pair_images"),
    "fmri2image.evaluation.lowlevel": ("pixcorr", "ssim"),
    "fmri2image.evaluation.networks": ("NETWORKS", "load_network", "network_spec"),
    "fmri2image.evaluation.semantic": ("SemanticMetrics", "semantic_metrics"),
    "fmri2image.evaluation.stats": (
        "PermutationTest",
        "ScoreSummary",
        "bootstrap_ci",
        "holm_adjust",
        "paired_permutation_test",
        "summarize_scores",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "METRICS",
    "NETWORKS",
    "Evaluation",
    "ImagePairs",
    "ImageSource",
    "Metric",
    "MetricResult",
    "PermutationTest",
    "PredictionMetrics",
    "ScoreSummary",
    "SemanticMetrics",
    "bootstrap_ci",
    "correlation_distance",
    "correlation_matrix",
    "evaluate_images",
    "get_metric",
    "holm_adjust",
    "image_metrics",
    "list_metrics",
    "load_network",
    "network_spec",
    "nway_classifier_top1",
    "nway_identification",
    "pair_images",
    "paired_permutation_test",
    "pixcorr",
    "prediction_metrics",
    "register_metric",
    "semantic_metrics",
    "ssim",
    "summarize_scores",
    "two_way_identification",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
