"""Score a set of reconstructions against the images that were seen.

:func:`evaluate_images` takes matched pairs (:func:`~.images.pair_images`), computes
every requested image metric per image, and summarizes each with its mean, a seeded
bootstrap 95 % interval over images, its chance level (identification metrics) or an
*unpaired* reference (pixel metrics and distances: the same score between each
reconstruction and the ground truth of another image, a seeded derangement), so
that no number stands alone.

Each metric network runs once over all ground truths and all reconstructions,
batched through the features stage's embedding engine, on the requested device.  A
metric whose network cannot be loaded (weights not on this machine, a package not
installed) is *skipped* with the reason, never reported as 0 or NaN.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import atomic_write, load_json, package_versions, save_json
from fmri2image.errors import ConfigError, DataFormatError, DependencyError, ModelUnavailableError
from fmri2image.evaluation.base import (
    METRICS,
    Metric,
    get_metric,
    image_metrics,
    takes_protocol_pixels,
)
from fmri2image.evaluation.images import ImagePairs
from fmri2image.evaluation.labels import LabelTable
from fmri2image.evaluation.stats import PermutationTest, paired_permutation_test, summarize_scores

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "Evaluation",
    "MetricScore",
    "evaluate_images",
    "read_scores_csv",
    "resolve_metrics",
    "summary_path",
]

logger = logging.getLogger(__name__)

SUMMARY_VERSION = 1


@dataclass(frozen=True)
class MetricScore:
    """One metric's summary over the evaluated images.

    Attributes
    ----------
    name : str
    mean, ci_low, ci_high : float
        Mean over images and its bootstrap interval (``confidence``).
    n : int
        Images scored.
    chance : float or None
        Analytical chance level (identification metrics).
    unpaired : float or None
        Mean score of reconstructions against *other* images' ground truths (a seeded
        derangement): what the metric gives with no image-specific information, for
        metrics without an analytical chance.
    higher_is_better : bool
    network : str or None
    confidence : float
    """

    name: str
    mean: float
    ci_low: float
    ci_high: float
    n: int
    chance: float | None
    unpaired: float | None
    higher_is_better: bool
    network: str | None
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Result of :func:`evaluate_images`.

    Attributes
    ----------
    stems : tuple of str
        The evaluated images (file stems), in table order.
    scores : dict of str to ndarray of shape (n_images,)
        Per-image score of each computed metric, in registry order.
    summary : dict of str to MetricScore
    skipped : dict of str to str
        Requested metrics that were not computed, with the reason.
    pairs : dict
        How the images were matched (:meth:`ImagePairs.to_dict`): exclusions, blanks, notes.
    protocol : dict
        Low-level protocol, networks (weights, layers, resize) and library versions.
    timing : dict
        Seconds and images per second of each metric network, and in total.
    comparison : dict of str to PermutationTest
        Paired permutation tests against another method (:meth:`compare`).
    """

    stems: tuple[str, ...]
    scores: dict[str, np.ndarray]
    summary: dict[str, MetricScore]
    skipped: dict[str, str] = field(default_factory=dict)
    pairs: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, PermutationTest] = field(default_factory=dict)
    comparison_source: str | None = None

    @property
    def n_images(self) -> int:
        return len(self.stems)

    def to_dict(self) -> dict[str, Any]:
        """The summary JSON (no per-image scores: those are the CSV)."""
        return {
            "version": SUMMARY_VERSION,
            "n_images": self.n_images,
            "metrics": {name: s.to_dict() for name, s in self.summary.items()},
            "skipped": dict(self.skipped),
            "comparison": {
                "against": self.comparison_source,
                "tests": {name: t.to_dict() for name, t in self.comparison.items()},
            }
            if self.comparison
            else None,
            "pairs": self.pairs,
            "protocol": self.protocol,
            "timing": self.timing,
        }

    def save(self, csv_path: str | os.PathLike) -> tuple[Path, Path]:
        """Write the per-image CSV and the summary JSON beside it, atomically.

        The CSV has a column ``image`` (the stem) and one column per metric; the JSON is
        :func:`summary_path` of the CSV (``scores.csv`` -> ``scores.summary.json``).
        """
        csv_path = Path(csv_path)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        names = list(self.scores)
        with atomic_write(csv_path, newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", *names])
            for i, stem in enumerate(self.stems):
                writer.writerow([stem, *(_csv_value(self.scores[n][i]) for n in names)])
        return csv_path, save_json(summary_path(csv_path), self.to_dict())

    @classmethod
    def load(cls, csv_path: str | os.PathLike) -> Evaluation:
        """Read what :meth:`save` wrote (the CSV and its summary JSON)."""
        stems, scores = read_scores_csv(csv_path)
        data = load_json(summary_path(csv_path))
        summary = {name: MetricScore(**s) for name, s in data["metrics"].items()}
        comparison = data.get("comparison") or {}
        return cls(
            stems=stems,
            scores=scores,
            summary=summary,
            skipped=data.get("skipped", {}),
            pairs=data.get("pairs", {}),
            protocol=data.get("protocol", {}),
            timing=data.get("timing", {}),
            comparison={
                n: PermutationTest(**t) for n, t in (comparison.get("tests") or {}).items()
            },
            comparison_source=comparison.get("against"),
        )

    def compare(
        self,
        other: Evaluation | str | os.PathLike,
        *,
        n_permutations: int = 10_000,
        seed: int = 0,
        label: str | None = None,
    ) -> Evaluation:
        """Paired permutation tests of this method against another on the same images.

        Parameters
        ----------
        other : Evaluation or path of its per-image CSV
            The other method's scores; images are matched by stem, metrics by name.
        n_permutations : int
        seed : int
        label : str, optional
            How to name the other method in the output (default: the CSV path).

        Returns
        -------
        Evaluation
            A copy with :attr:`comparison` filled in: per shared metric, the mean of
            ``this - other`` over the shared images and its two-sided p-value.

        Raises
        ------
        DataFormatError
            No image or no metric in common.
        """
        if isinstance(other, Evaluation):
            o_stems, o_scores = other.stems, other.scores
            source = label or "another evaluation"
        else:
            o_stems, o_scores = read_scores_csv(other)
            source = label or str(other)
        common = sorted(set(self.stems) & set(o_stems))
        metrics = [m for m in self.scores if m in o_scores]
        if not common or not metrics:
            raise DataFormatError(
                f"Nothing to compare with {source}: {len(common)} images and "
                f"{len(metrics)} metrics in common (images are matched by stem, metrics "
                "by column name)."
            )
        here = {s: i for i, s in enumerate(self.stems)}
        there = {s: i for i, s in enumerate(o_stems)}
        a_idx = [here[s] for s in common]
        b_idx = [there[s] for s in common]
        tests = {
            m: paired_permutation_test(
                self.scores[m][a_idx],
                np.asarray(o_scores[m], dtype=np.float64)[b_idx],
                n_permutations=n_permutations,
                seed=seed,
            )
            for m in metrics
        }
        return replace(self, comparison=tests, comparison_source=source)

    def format(self) -> str:
        """The table ``fmri2image evaluate`` prints: every score beside its reference."""
        lines = [
            f"{self.n_images} image pairs; mean [95% CI over images], with chance (analytical) "
            "or unpaired (each reconstruction against another image's ground truth)"
        ]
        header = f"  {'metric':<11} {'mean':>8}  {'95% CI':<17} {'reference':<18} {'n':>5}  better"
        lines.append(header)
        for name, s in self.summary.items():
            ci = f"[{_num(s.ci_low)}, {_num(s.ci_high)}]"
            if s.chance is not None:
                ref = f"chance {_num(s.chance)}"
            elif s.unpaired is not None:
                ref = f"unpaired {_num(s.unpaired)}"
            else:
                ref = ""
            better = "higher" if s.higher_is_better else "lower"
            lines.append(f"  {name:<11} {_num(s.mean):>8}  {ci:<17} {ref:<18} {s.n:>5}  {better}")
        if self.comparison:
            lines.append(f"against {self.comparison_source} (paired permutation test):")
            for name, t in self.comparison.items():
                hib = get_metric(name).higher_is_better if name in METRICS else True
                verdict = (
                    ("better" if (t.mean_difference > 0) == hib else "worse")
                    if t.mean_difference != 0
                    else "equal"
                )
                lines.append(
                    f"  {name:<11} {t.mean_difference:+.4f} ({verdict}), p = {t.p_value:.4g}, "
                    f"{t.n} images"
                )
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(name)
        for reason, names in by_reason.items():
            lines.append(f"skipped {', '.join(names)}: {reason}")
        excluded = self.pairs.get("excluded") or {}
        if excluded:
            lines.append(f"{len(excluded)} images not evaluated (see the summary JSON): ")
            lines[-1] += "; ".join(f"{s}: {r}" for s, r in list(excluded.items())[:5])
            if len(excluded) > 5:
                lines[-1] += f"; ... {len(excluded) - 5} more"
        lines.extend(f"note: {n}" for n in self.pairs.get("notes", ()))
        return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _csv_value(x: float) -> str:
    return "" if math.isnan(float(x)) else repr(float(x))


def summary_path(csv_path: str | os.PathLike) -> Path:
    """The summary JSON written beside a per-image CSV (``a/scores.csv`` -> ``a/scores.summary.json``)."""
    p = Path(csv_path)
    return p.with_name(f"{p.stem}.summary.json")


def read_scores_csv(path: str | os.PathLike) -> tuple[tuple[str, ...], dict[str, np.ndarray]]:
    """Read a per-image score CSV: column ``image``, then one float column per metric.

    Empty cells read as NaN.  Other methods' tables work too if they follow the layout.

    Raises
    ------
    DataFormatError
        Missing ``image`` column, duplicate images, or a non-numeric score.
    """
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise DataFormatError(f"Cannot read the scores table {path}: {exc}.") from exc
    if not rows or not rows[0] or rows[0][0] != "image":
        raise DataFormatError(
            f"{path} is not a per-image scores table: its first column must be 'image' (the "
            "stem), followed by one column per metric, as `fmri2image evaluate --out` writes."
        )
    names = rows[0][1:]
    stems = tuple(r[0] for r in rows[1:] if r)
    if len(set(stems)) != len(stems):
        raise DataFormatError(f"{path} lists some images twice; each stem must appear once.")
    scores: dict[str, np.ndarray] = {}
    for j, name in enumerate(names, start=1):
        try:
            scores[name] = np.array(
                [float(r[j]) if j < len(r) and r[j] != "" else math.nan for r in rows[1:] if r]
            )
        except ValueError as exc:
            raise DataFormatError(f"{path}: column {name!r} is not numeric ({exc}).") from exc
    return stems, scores


def resolve_metrics(
    names: Sequence[str] | None = None, *, device: str = "cpu", labels: bool = False
) -> tuple[list[Metric], dict[str, str]]:
    """The metrics to compute, and the ones left out by default with the reason.

    Parameters
    ----------
    names : sequence of str, optional
        Metric names (``--metrics``); default every image metric, except that on a CPU
        those marked ``gpu_recommended`` are left out (ask for them by name to run
        them), plus the label metrics (:data:`~.labels.LABEL_METRICS`) when ``labels``.
    device : str
    labels : bool
        Whether a label table is given (``--labels``).

    Raises
    ------
    ConfigError
        An unknown name, a label metric without ``labels``, or a metric computed
        elsewhere (embedding metrics, database coverage).
    """
    from fmri2image.evaluation.labels import LABEL_METRICS

    skipped: dict[str, str] = {}
    if names is None:
        chosen = [get_metric(n) for n in LABEL_METRICS] if labels else []
        for m in image_metrics():
            if m.gpu_recommended and not str(device).startswith("cuda"):
                skipped[m.name] = (
                    f"its network ({m.network}) is slow on {device}; ask for it with "
                    f"--metrics {m.name} to run it anyway, or use --device cuda"
                )
            else:
                chosen.append(m)
        return sorted(chosen, key=lambda m: m.kind == "labels"), skipped
    chosen = []
    for name in dict.fromkeys(names):  # keep order, drop repeats
        m = get_metric(name)
        if name in LABEL_METRICS:
            if not labels:
                raise ConfigError(
                    f"--metrics {name}: a label metric; give the true and predicted labels "
                    "with --labels FILE (a CSV image,true_wnid,pred_wnid or a run's "
                    "maps/s<S>-<ROI>/<model>/retrieval/<database>/semantic_per_query.parquet)."
                )
            chosen.append(m)
            continue
        if m.score is None:
            raise ConfigError(
                f"--metrics {name}: a {m.kind} metric, computed by `fmri2image decode` on "
                "predicted embeddings / retrieved labels, not on images. Image metrics: "
                + ", ".join(x.name for x in image_metrics())
                + "."
            )
        chosen.append(m)
    return chosen, skipped


def _derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (n >= 2)."""
    rng = np.random.default_rng([seed, n])
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def _images_digest(images: Sequence[Image.Image]) -> str:
    """SHA-256 of the images' modes, sizes and pixels (which ground truth this is)."""
    h = hashlib.sha256()
    for im in images:
        h.update(f"{im.mode}{im.size}".encode())
        h.update(im.tobytes())
    return h.hexdigest()


def evaluate_images(
    pairs: ImagePairs,
    metrics: Sequence[str] | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 32,
    seed: int = 0,
    n_bootstrap: int = 2000,
    weights: Mapping[str, str | os.PathLike] | None = None,
    labels: LabelTable | None = None,
    progress: bool = True,
    networks: MutableMapping[str, Any] | None = None,
) -> Evaluation:
    """Compute image metrics per image and summarize them.

    Parameters
    ----------
    pairs : ImagePairs
        Matched ground truths and reconstructions (:func:`~.images.pair_images`).
    metrics : sequence of str, optional
        Registry names (``"pixcorr"``, ``"alex2"``, ...); default: see
        :func:`resolve_metrics`.
    device : str
        Where the metric networks run (``"cpu"``, ``"cuda"``, ...).
    batch_size : int
        Images per network forward pass.
    seed : int
        Seed of the bootstrap, the n-way draws and the unpaired derangement.
    n_bootstrap : int
        Bootstrap resamples of each mean.
    weights : mapping of network name to path, optional
        Local weights for metric networks (``{"alexnet": "alexnet.safetensors"}``),
        instead of the standard ones.
    labels : LabelTable, optional
        True and predicted WordNet ids per stem (:func:`~.labels.read_label_table`):
        adds the label metrics ``hit1``, ``hit5``, ``wup``, ``path``.
    progress : bool
    networks : dict, optional
        A cache of loaded metric networks, filled and reused across calls (a run
        that evaluates many image sets loads each network once), and of the ground
        truth's features per network (keyed by the images' pixels: a run scores every
        set of pictures against the same stimuli, whose features are computed once).

    Returns
    -------
    Evaluation
    """
    from fmri2image.evaluation import networks as nets
    from fmri2image.evaluation.lowlevel import protocol_info

    chosen, skipped = resolve_metrics(metrics, device=device, labels=labels is not None)
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(nets.NETWORKS.names()))
    if unknown:
        raise ConfigError(
            f"--metric-weights names unknown network(s) {', '.join(unknown)}; metric networks: "
            f"{', '.join(nets.NETWORKS.names())}."
        )
    n = len(pairs.stems)
    if n == 0:
        raise DataFormatError("No image pair to evaluate.")
    t_start = time.perf_counter()
    perm = _derangement(n, seed) if n >= 2 else None
    per_image: dict[str, np.ndarray] = {}
    unpaired: dict[str, float] = {}
    timing: dict[str, Any] = {}
    networks_info: dict[str, Any] = {}

    def record(m: Metric, y_true: Any, y_pred: Any) -> None:
        if n < m.min_images:
            skipped[m.name] = f"needs at least {m.min_images} image pairs, got {n}"
            return
        per_image[m.name] = np.asarray(m.score(y_true, y_pred, seed=seed), dtype=np.float64)
        if m.chance is None and perm is not None:
            shuffled = [y_true[i] for i in perm] if isinstance(y_true, list) else y_true[perm]
            unpaired[m.name] = float(np.nanmean(m.score(shuffled, y_pred, seed=seed)))

    pixel = [m for m in chosen if m.kind == "pixels"]
    if pixel:
        t0 = time.perf_counter()
        if any(takes_protocol_pixels(m) for m in pixel):
            true_px, pred_px = _protocol_arrays(pairs, networks)
        for m in pixel:
            if takes_protocol_pixels(m):
                record(m, true_px, pred_px)
            else:
                record(m, pairs.true, pairs.pred)
        timing["pixels"] = _rate(time.perf_counter() - t0, n)
    by_network: dict[str, list[Metric]] = {}
    for m in chosen:
        if m.network is not None:
            by_network.setdefault(m.network, []).append(m)
    for net_name, net_metrics in by_network.items():
        cache_key = f"{net_name}\x00{weights.get(net_name)}\x00{device}"
        try:
            if networks is not None and cache_key in networks:
                net = networks[cache_key]
                if isinstance(net, Exception):  # unavailable when first asked: say so again
                    raise net
            else:
                try:
                    net = nets.load_network(net_name, weights=weights.get(net_name), device=device)
                except (ModelUnavailableError, DependencyError) as exc:
                    if networks is not None:
                        networks[cache_key] = exc
                    raise
                if networks is not None:
                    networks[cache_key] = net
        except (ModelUnavailableError, DependencyError) as exc:
            for m in net_metrics:
                skipped[m.name] = f"network {net_name} unavailable: {exc}"
            logger.info(
                "skipping %s: network %s unavailable (reason at the end)",
                ", ".join(m.name for m in net_metrics),
                net_name,
            )
            continue
        t0 = time.perf_counter()
        # The ground truth is the same for every set of pictures a run scores: its
        # features are computed once per network and image set (keyed by the pixels).
        gt_key = f"{cache_key}\x00ground-truth\x00{_images_digest(pairs.true)}"
        f_true = networks.get(gt_key) if networks is not None else None
        if f_true is None:
            f_true = nets.network_features(
                net, pairs.true, batch_size=batch_size, progress=progress
            )
            if networks is not None:
                networks[gt_key] = f_true
        f_pred = nets.network_features(net, pairs.pred, batch_size=batch_size, progress=progress)
        timing[net_name] = _rate(time.perf_counter() - t0, 2 * n)
        networks_info[net_name] = net.network.to_dict()
        for m in net_metrics:
            record(m, f_true[m.layer], f_pred[m.layer])
        del net, f_true, f_pred
    label_metrics = [m.name for m in chosen if m.kind == "labels"]
    if label_metrics and labels is not None:
        t0 = time.perf_counter()
        cols, refs = _label_columns(pairs.stems, labels, label_metrics, perm, skipped)
        per_image.update(cols)
        unpaired.update(refs)
        timing["labels"] = _rate(time.perf_counter() - t0, n)
    timing["total"] = _rate(time.perf_counter() - t_start, n)

    order = [m.name for m in chosen if m.name in per_image]
    scores = {name: per_image[name] for name in order}
    summary = {}
    for name in order:
        m = get_metric(name)
        s = summarize_scores(scores[name], n_resamples=n_bootstrap, seed=seed)
        summary[name] = MetricScore(
            name=name,
            mean=s.mean,
            ci_low=s.ci_low,
            ci_high=s.ci_high,
            n=s.n,
            chance=m.chance_for(n),
            unpaired=unpaired.get(name),
            higher_is_better=m.higher_is_better,
            network=m.network,
            confidence=s.confidence,
        )
    protocol = {
        "low_level": protocol_info() if pixel else None,
        "networks": networks_info,
        "device": device,
        "batch_size": batch_size,
        "seed": seed,
        "bootstrap": {"resamples": n_bootstrap, "interval": "percentile", "unit": "image"},
        "unpaired": "mean score of each reconstruction against the ground truth of another "
        "image (a seeded derangement)",
        "versions": package_versions(
            ("fmri2image", "torch", "torchvision", "transformers", "scikit-image", "Pillow")
        ),
    }
    return Evaluation(
        stems=tuple(pairs.stems),
        scores=scores,
        summary=summary,
        skipped=skipped,
        pairs=pairs.to_dict(),
        protocol=protocol,
        timing=timing,
    )


def _protocol_arrays(pairs: ImagePairs, cache: MutableMapping[str, Any] | None) -> tuple:
    """Both sides of a small evaluation as protocol pixels, resized once for every
    pixel metric and the unpaired reference (the ground truth once per run, kept in
    ``cache``); a large one stays as images, which the metrics resize a batch at a
    time (a 425 px float64 image is 4.3 MB)."""
    from fmri2image.evaluation import lowlevel

    if len(pairs.stems) > lowlevel._BATCH:
        return pairs.true, pairs.pred

    def pixels(images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([lowlevel.protocol_pixels(im) for im in images])

    key = f"protocol-pixels\x00{_images_digest(pairs.true)}"
    true = cache.get(key) if cache is not None else None
    if true is None:
        true = pixels(pairs.true)
        if cache is not None:
            cache[key] = true
    return true, pixels(pairs.pred)


def _label_columns(
    stems: Sequence[str],
    table: LabelTable,
    names: Sequence[str],
    perm: np.ndarray | None,
    skipped: dict[str, str],
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Per-image hit@1 / hit@5 / Wu–Palmer / path, and their unpaired references."""
    from fmri2image.errors import DependencyError
    from fmri2image.evaluation.semantic import label_scores
    from fmri2image.wordnet import WordNet

    known = np.array([s in table.true for s in stems])
    if not known.any():
        for name in names:
            skipped[name] = f"no evaluated image is listed in --labels {table.path}"
        return {}, {}
    true = [table.true.get(s, "") for s in stems]
    top1 = [(table.top1.get(s, ""),) for s in stems]
    rank = np.array([table.rank.get(s, 0) for s in stems])
    wanted = list(names)
    if "hit5" in wanted and not table.ranked:
        skipped["hit5"] = f"the predictions in --labels {table.path} rank one label each"
        wanted.remove("hit5")
    wordnet: WordNet | bool = False
    if {"wup", "path"} & set(wanted):
        try:
            wordnet = WordNet.load()
        except DependencyError as exc:
            for name in ("wup", "path"):
                if name in wanted:
                    skipped[name] = str(exc)
                    wanted.remove(name)
    sims = label_scores(true, top1, wordnet=wordnet)
    values = {
        "hit1": (rank == 1).astype(np.float64),
        "hit5": ((rank >= 1) & (rank <= 5)).astype(np.float64),
        "wup": sims["wup"],
        "path": sims["path"],
    }
    cols = {}
    for name in wanted:
        col = values[name].copy()
        col[~known] = np.nan
        cols[name] = col
    refs: dict[str, float] = {}
    if perm is not None and (known & known[perm]).any():
        shuffled = label_scores([true[i] for i in perm], top1, wordnet=wordnet)
        ok = known & known[perm]
        for name in set(wanted) & {"hit1", "wup", "path"}:
            refs[name] = float(np.nanmean(np.where(ok, shuffled[name], np.nan)))
    return cols, refs


def _rate(seconds: float, n_images: int) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "images": n_images,
        "images_per_second": round(n_images / seconds, 2) if seconds > 0 else math.inf,
    }
