"""The metric registry: every score fmri2image reports, declared once.

A :class:`Metric` says what a score means before anything is computed: its name as
the field's tables print it, whether higher is better, its chance level, what it is
computed on (``kind``) and what it needs (a feature network and its weights, a GPU).
A report can therefore rank models, print chance beside a score and explain a
skipped metric without special cases.

Kinds
-----
``"pixels"``
    Low-level image metrics on the protocol-resized pixels (:mod:`.lowlevel`).
``"features"``
    Image metrics on a feature network's layer (:mod:`.networks`): 2-way
    identification or correlation distance.
``"classifier"``
    Image metrics on a classifier's ImageNet-1k probabilities (n-way top-1).
``"embedding"``
    Predicted vs true stimulus embeddings, before any image is generated
    (:mod:`.embedding`).
``"labels"``
    Retrieved vs true WordNet labels (:mod:`.semantic`).

Image metrics carry a ``score(y_true, y_pred, seed=...) -> (n_images,)`` function;
embedding and label metrics are computed together by :func:`.prediction_metrics`
and :func:`.semantic_metrics` and are registered for their facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np

from fmri2image.errors import ConfigError
from fmri2image.registry import ENTRY_POINT_GROUPS, Needs, Registry

__all__ = [
    "IMAGE_KINDS",
    "METRICS",
    "Metric",
    "get_metric",
    "image_metrics",
    "list_metrics",
    "register_metric",
]

MetricKind = Literal["pixels", "features", "classifier", "embedding", "labels"]
IMAGE_KINDS: tuple[str, ...] = ("pixels", "features", "classifier")

Score = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Metric:
    """Static facts about one metric.

    Attributes
    ----------
    name : str
        As the papers' tables name it (``"alex2"``, ``"ssim"``, ``"hit1"``).
    higher_is_better : bool
    kind : {"pixels", "features", "classifier", "embedding", "labels"}
    description : str
    chance : float or str or None
        Expected score of a method with no image-specific information: a number, or
        a rule in words where it depends on the data (``"1/n"``; see
        :meth:`chance_for`).  ``None`` where no analytical chance exists (pixel
        metrics, distances: the evaluation reports an empirical *unpaired*
        reference instead).
    network : str or None
        Feature network (``evaluation.networks`` registry name) for ``features`` and
        ``classifier`` metrics.
    layer : str or None
        Which of the network's outputs the metric uses.
    gpu_recommended : bool
        Slow on a CPU (a default evaluation on CPU skips it unless asked by name).
    reference : str
        Whose protocol this is.
    min_images : int
        Fewest image pairs the score is defined for (2-way identification: 2).
    score : callable or None
        ``score(y_true, y_pred, *, seed) -> ndarray (n_images,)``: for image metrics
        on their network's features (or pixels), for ``embedding`` metrics on the
        predicted and true embeddings (one value per image; the table shows the
        mean, beside the training-mean baseline's).  Built-in embedding and label
        metrics are computed together by :func:`.prediction_metrics` and
        :func:`.semantic_metrics` and have none.
    needs : Needs
        What computing it needs beyond its network (an extra, packages).
    """

    name: str
    higher_is_better: bool
    kind: MetricKind
    description: str
    chance: float | str | None = None
    network: str | None = None
    layer: str | None = None
    gpu_recommended: bool = False
    reference: str = ""
    min_images: int = 1
    score: Score | None = field(default=None, repr=False, compare=False)
    needs: Needs = field(default_factory=Needs, compare=False)

    def chance_for(self, n_images: int | None = None) -> float | None:
        """The chance level as a number (``"1/n"`` needs ``n_images``)."""
        if isinstance(self.chance, str):
            if self.chance == "1/n" and n_images:
                return 1.0 / n_images
            return None
        return self.chance

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "higher_is_better": self.higher_is_better,
            "kind": self.kind,
            "description": self.description,
            "chance": self.chance,
            "network": self.network,
            "layer": self.layer,
            "gpu_recommended": self.gpu_recommended,
            "reference": self.reference,
        }


def _plugin(name: str, obj: Any) -> None:
    if not isinstance(obj, Metric) or obj.name != name:
        raise ConfigError(
            f"the entry point {name!r} must point to a fmri2image.evaluation.Metric named "
            f"{name!r}, got {obj!r}."
        )
    register_metric(obj)


#: The metrics; plugins register through the ``fmri2image.metrics`` entry points
#: (object: a :class:`Metric`).
METRICS: Registry[Metric] = Registry("metric", group=ENTRY_POINT_GROUPS["metric"], plugin=_plugin)


#: Registration order: the column order of tables.
_ORDER: list[str] = []


def register_metric(metric: Metric, *, overwrite: bool = False) -> Metric:
    """Add ``metric`` to :data:`METRICS` under its name (tables list it after the others).

    An image metric (kind ``pixels``, ``features`` or ``classifier``) or an
    ``embedding`` metric needs a ``score`` function; then ``evaluate``, ``run`` and
    the tables compute and show it with no other change.
    """
    if not isinstance(metric, Metric):
        raise ConfigError(f"register_metric takes a Metric, got {metric!r}.")
    needs_score = metric.kind in (*IMAGE_KINDS, "embedding")
    if needs_score and metric.score is None and metric.name not in _BUILTIN_NAMES:
        raise ConfigError(
            f"Metric {metric.name!r} of kind {metric.kind!r} needs a score function "
            "(score(y_true, y_pred, *, seed) -> one value per image)."
        )
    METRICS.register(metric.name, metric, overwrite=overwrite)
    if metric.name not in _ORDER:
        _ORDER.append(metric.name)
    return metric


def get_metric(name: str) -> Metric:
    """The registered metric ``name`` (unknown names: ConfigError with close matches)."""
    return METRICS.get(name)


def list_metrics(kind: str | tuple[str, ...] | None = None) -> list[Metric]:
    """Registered metrics in registration order, optionally of the given kind(s)
    (installed metric plugins included)."""
    METRICS.load_plugins()
    kinds = (kind,) if isinstance(kind, str) else kind
    metrics = [METRICS.get(name) for name in _ORDER if name in METRICS]  # (unregistered: gone)
    return [m for m in metrics if kinds is None or m.kind in kinds]


def image_metrics() -> list[Metric]:
    """The metrics ``fmri2image evaluate`` computes on reconstructions, table order."""
    return list_metrics(IMAGE_KINDS)


# ---------------------------------------------------------------------------------
# The built-in metrics.  Score functions import their modules lazily so that reading
# the registry (``fmri2image evaluate --list-metrics``) loads neither torch nor skimage.
# ---------------------------------------------------------------------------------
def takes_protocol_pixels(metric: Metric) -> bool:
    """Whether ``metric`` is one of the low-level metrics of :mod:`.lowlevel`, which
    take the images or their protocol pixels alike (a plugin's ``pixels`` metric gets
    the images, as documented)."""
    return metric.score in (_pixcorr, _pixcorr_identification, _ssim)


def _pixcorr(y_true: Any, y_pred: Any, *, seed: int = 0) -> np.ndarray:
    from fmri2image.evaluation.lowlevel import pixcorr

    return pixcorr(y_true, y_pred)


def _pixcorr_identification(y_true: Any, y_pred: Any, *, seed: int = 0) -> np.ndarray:
    from fmri2image.evaluation.lowlevel import pixcorr_identification

    return pixcorr_identification(y_true, y_pred)


def _ssim(y_true: Any, y_pred: Any, *, seed: int = 0) -> np.ndarray:
    from fmri2image.evaluation.lowlevel import ssim

    return ssim(y_true, y_pred)


def _two_way(y_true: Any, y_pred: Any, *, seed: int = 0) -> np.ndarray:
    from fmri2image.evaluation.identification import two_way_identification

    return two_way_identification(y_true, y_pred)


def _distance(y_true: Any, y_pred: Any, *, seed: int = 0) -> np.ndarray:
    from fmri2image.evaluation.identification import correlation_distance

    return correlation_distance(y_true, y_pred)


def _nway(y_true: Any, y_pred: Any, *, seed: int = 0, n_way: int, n_trials: int) -> np.ndarray:
    from fmri2image.evaluation.identification import nway_classifier_top1

    return nway_classifier_top1(y_true, y_pred, n_way=n_way, n_trials=n_trials, seed=seed)


MINDEYE = "MindEye src/Reconstruction_Metrics.py (Scotti et al. 2023); Brain-Diffuser"
MINDVIS = "MinD-Vis code/eval_metrics.py get_n_way_top_k_acc (Chen et al. 2023)"
#: MinD-Vis' n-way protocol: 50 candidates, 1000 trials per image.
NWAY, NWAY_TRIALS = 50, 1000


def _two_way_metric(name: str, network: str, layer: str, what: str, **kw: Any) -> Metric:
    return Metric(
        name,
        True,
        "features",
        f"2-way identification with {what} (exhaustive over all pairs)",
        chance=0.5,
        network=network,
        layer=layer,
        min_images=2,
        score=_two_way,
        **kw,
    )


def _nway_metric(name: str, network: str, what: str, **kw: Any) -> Metric:
    return Metric(
        name,
        True,
        "classifier",
        f"{NWAY}-way top-1 with the {what} ImageNet-1k classifier (its argmax on the ground "
        f"truth is the class; {NWAY - 1} other classes drawn per trial, {NWAY_TRIALS} "
        "seeded trials)",
        chance=1.0 / NWAY,
        network=network,
        layer="probs",
        score=partial(_nway, n_way=NWAY, n_trials=NWAY_TRIALS),
        **kw,
    )


_BUILTIN: tuple[Metric, ...] = (
    # ---- image metrics, in the column order of the papers' tables ----
    Metric(
        "pixcorr",
        True,
        "pixels",
        "Pearson r over the flattened RGB pixels at 425x425 (PIL bilinear, antialiased)",
        reference=MINDEYE,
        score=_pixcorr,
    ),
    Metric(
        "ssim",
        True,
        "pixels",
        "SSIM of the grayscale images at 425x425 (Gaussian window, sigma 1.5, data range "
        "1.0, true 2-D SSIM as scikit-image >= 0.20 computes it)",
        reference=MINDEYE,
        score=_ssim,
    ),
    Metric(
        "pixcorr2",
        True,
        "pixels",
        "2-way identification by PixCorr (the flattened RGB pixels at 425x425, exhaustive "
        "over all pairs): the low-level pathway's identification score",
        chance=0.5,
        min_images=2,
        reference="MindEye's 2-way protocol on the PixCorr pixels (Brain-Diffuser, MindEye2 "
        "low-level evaluation)",
        score=_pixcorr_identification,
    ),
    _two_way_metric("alex2", "alexnet", "features.4", "AlexNet features.4", reference=MINDEYE),
    _two_way_metric("alex5", "alexnet", "features.11", "AlexNet features.11", reference=MINDEYE),
    _two_way_metric("incep", "inception", "avgpool", "InceptionV3 avgpool", reference=MINDEYE),
    _two_way_metric(
        "clip", "clip", "image_embeds", "CLIP ViT-L/14 image embeddings", reference=MINDEYE
    ),
    Metric(
        "eff",
        False,
        "features",
        "correlation distance of EfficientNet-B1 avgpool features, mean over images",
        network="effnet-b1",
        layer="avgpool",
        reference=MINDEYE,
        score=_distance,
    ),
    Metric(
        "swav",
        False,
        "features",
        "correlation distance of SwAV ResNet-50 avgpool features, mean over images",
        network="swav",
        layer="avgpool",
        reference=MINDEYE,
        score=_distance,
    ),
    _nway_metric("nway", "vit_h_14", "ViT-H/14", reference=MINDVIS, gpu_recommended=True),
    _two_way_metric(
        "lite0",
        "lite0",
        "avgpool",
        "EfficientNet-Lite0 avgpool (offline weights)",
        reference="fmri2image: MindEye's protocol on offline weights",
    ),
    _nway_metric(
        "lite0_nway", "lite0", "EfficientNet-Lite0", reference="fmri2image: MinD-Vis' protocol"
    ),
    _two_way_metric(
        "lite2",
        "lite2",
        "avgpool",
        "EfficientNet-Lite2 avgpool (offline weights)",
        reference="fmri2image: MindEye's protocol on offline weights",
    ),
    _nway_metric(
        "lite2_nway", "lite2", "EfficientNet-Lite2", reference="fmri2image: MinD-Vis' protocol"
    ),
    # ---- embedding-space metrics (prediction_metrics) ----
    Metric(
        "r2_uniform",
        True,
        "embedding",
        "R² per dimension (SS_tot about the test mean, as sklearn r2_score), averaged uniformly",
    ),
    Metric(
        "r2_variance_weighted",
        True,
        "embedding",
        "R² per dimension averaged with weights proportional to each dimension's test variance",
    ),
    Metric("rmse", False, "embedding", "root mean squared error over all images and dimensions"),
    Metric(
        "cosine",
        True,
        "embedding",
        "cosine similarity between predicted and true embedding, mean over images",
    ),
    Metric(
        "pattern_correlation",
        True,
        "embedding",
        "Pearson r across dimensions between predicted and true embedding, mean over images",
    ),
    Metric(
        "dimension_correlation",
        True,
        "embedding",
        "Pearson r across images between predicted and true values, mean over dimensions "
        "(undefined for a constant prediction, so no baseline)",
    ),
    Metric(
        "pairwise_identification",
        True,
        "embedding",
        "2-way identification of the predicted embeddings among the test images (share of "
        "other images whose true embedding correlates strictly less with the prediction "
        "than its own), mean over images",
        chance=0.5,
    ),
    Metric(
        "nway_top1",
        True,
        "embedding",
        "share of images whose own true embedding correlates best with the prediction among "
        "all n test images (ties count as misses)",
        chance="1/n",
    ),
    # ---- label metrics (semantic_metrics) ----
    Metric(
        "hit1",
        True,
        "labels",
        "the top-ranked retrieved label is the true synset",
        chance="1/n_classes",
    ),
    Metric(
        "hit5",
        True,
        "labels",
        "the true synset is among the five top-ranked labels",
        chance="5/n_classes",
    ),
    Metric("hit1_covered", True, "labels", "hit@1 on the queries whose class is in the database"),
    Metric("hit5_covered", True, "labels", "hit@5 on the queries whose class is in the database"),
    Metric(
        "wup",
        True,
        "labels",
        "WordNet Wu-Palmer similarity of the top-1 label to the true synset",
        chance="mean similarity to a uniformly drawn database class",
    ),
    Metric(
        "path",
        True,
        "labels",
        "WordNet path similarity of the top-1 label to the true synset",
        chance="mean similarity to a uniformly drawn database class",
    ),
    Metric("coverage", True, "labels", "share of test categories present in the database"),
)

#: Built-in embedding and label metrics are computed together, without a score function.
_BUILTIN_NAMES = frozenset(m.name for m in _BUILTIN)

for _metric in _BUILTIN:
    register_metric(_metric)
