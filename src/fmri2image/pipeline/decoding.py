"""fMRI -> embedding -> label, for one GOD subject and several encoders side by side.

For each encoder the stages run in order, each writing a typed, pickle-free result
under ``out_dir/<encoder>/``:

1. stimulus features of every encoder from one decode pass of the images
   (``out_dir/stimulus_features/{training,test}/<encoder>/``, sharded stores that a
   rerun reads instead of recomputing);
2. a cross-validated :class:`~fmri2image.mapping.RidgeMapping` fitted on training
   samples only (``mapping.safetensors`` + ``.json``), CV folds grouped by category;
3. prediction metrics on the averaged test images, beside the training-mean
   baseline and chance levels (``prediction/``);
4. k-NN retrieval of a WordNet label for each predicted embedding, from the
   encoder's ImageNet class prototypes or from an extracted feature database
   (``retrieval/``), scored by hit@k, Wu–Palmer similarity and coverage.

``summary.json`` at the top collects one row per encoder.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmri2image import _io
from fmri2image.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["DecodingConfig", "DecodingResult", "EncoderResult", "run_decoding"]


@dataclass(frozen=True)
class DecodingConfig:
    """Settings of one decoding run (everything that changes its results).

    Attributes
    ----------
    subject : int
        GOD subject number.
    roi : str
        ROI expression (bdpy syntax), e.g. ``"ROI_VC"`` or ``"ROI_V1 + ROI_V2"``.
    encoders : tuple of str
        Encoder registry names compared side by side.
    normalization : {"run", "train", "none"}
        Voxel normalization (see :func:`fmri2image.data.make_splits`).
    cv : int
        Folds of the per-target alpha search, grouped by category.
    n_voxels : int or None
        Keep the voxels most correlated with the targets (training data only).
    database : str
        ``"prototypes"`` (the encoder's ImageNet-1k classifier head) or a folder
        written by ``fmri2image extract`` holding one sub-folder per encoder.
    k : int
        Neighbours retrieved per prediction.
    vote : {"nearest", "majority", "weighted"}
        How neighbour labels become a ranked label list.
    device : str
        Torch device for the encoders.
    batch_size : int
        Images per encoder forward pass.
    seed : int
        Seed of every random choice (CV folds, chance estimates).
    """

    subject: int = 1
    roi: str = "ROI_VC"
    encoders: tuple[str, ...] = ("effnet-lite0",)
    normalization: str = "run"
    cv: int = 5
    n_voxels: int | None = None
    database: str = "prototypes"
    k: int = 5
    vote: str = "nearest"
    device: str = "cpu"
    batch_size: int = 32
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderResult:
    """Results of one encoder: where they are and the headline numbers."""

    encoder: str
    dim: int
    out_dir: Path
    prediction: dict[str, Any]
    semantic: dict[str, Any]
    alpha_median: float
    seconds: float
    top1_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class DecodingResult:
    """All encoders of one run; :meth:`table` prints them side by side."""

    config: DecodingConfig
    out_dir: Path
    results: tuple[EncoderResult, ...]
    n_train: int
    n_test_images: int
    n_voxels: int
    test_wnids: tuple[str, ...]
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def summary_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.results:
            p, s = r.prediction, r.semantic
            rows.append(
                {
                    "encoder": r.encoder,
                    "dim": r.dim,
                    "alpha_median": r.alpha_median,
                    "pairwise_id": p["pairwise_identification"]["value"],
                    "pairwise_id_baseline": p["pairwise_identification"]["baseline"],
                    "nway_top1": p["nway_top1"]["value"],
                    "nway_chance": p["nway_top1"]["chance"],
                    "r2": p["r2_variance_weighted"]["value"],
                    "r2_baseline": p["r2_variance_weighted"]["baseline"],
                    "cosine": p["cosine"]["value"],
                    "cosine_baseline": p["cosine"]["baseline"],
                    "hit_at_1": s["hit1"],
                    "hit_at_1_chance": s["hit1_chance"],
                    "hit_at_5": s["hit5"],
                    "wup": s["wup"],
                    "wup_chance": s["wup_chance"],
                    "coverage": s["coverage"],
                    "seconds": r.seconds,
                }
            )
        return rows

    def labels_table(self) -> str:
        """True vs retrieved top-1 label of every test image, one column per encoder."""
        from fmri2image.imagenet import wnid_name

        def name(wnid: str) -> str:
            return f"{wnid_name(wnid)[:18]} ({wnid})"

        width = 32
        lines = [
            f"{'true category':<{width}}" + "".join(f"{r.encoder:<{width}}" for r in self.results)
        ]
        for i, true in enumerate(self.test_wnids):
            cells = []
            for r in self.results:
                got = r.top1_labels[i] if i < len(r.top1_labels) else ""
                mark = "* " if got == true else "  "
                cells.append(f"{mark}{name(got) if got else '-':<{width - 2}}")
            lines.append(f"{name(true):<{width}}" + "".join(cells))
        lines.append("* = retrieved label equals the true category")
        return "\n".join(lines)

    def table(self) -> str:
        """Plain-text comparison table (chance / baseline in brackets)."""

        def f(v: Any, fmt: str = ".3f") -> str:
            return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

        header = (
            f"{'encoder':<16}{'dim':>6}{'pairwise id':>20}{'n-way top-1':>20}"
            f"{'R2':>18}{'hit@1':>16}{'hit@5':>8}{'Wu-Palmer':>18}{'cover':>7}"
        )
        lines = [header, "-" * len(header)]
        for row in self.summary_rows():
            lines.append(
                f"{row['encoder']:<16}{row['dim']:>6}"
                f"{f(row['pairwise_id']):>9} [{f(row['pairwise_id_baseline'])}, 0.5]"
                f"{f(row['nway_top1']):>9} [{f(row['nway_chance'])}]    "
                f"{f(row['r2'], '+.3f'):>8} [{f(row['r2_baseline'], '+.3f')}]"
                f"{f(row['hit_at_1']):>8} [{f(row['hit_at_1_chance'])}]"
                f"{f(row['hit_at_5']):>8}"
                f"{f(row['wup']):>9} [{f(row['wup_chance'])}]"
                f"{f(row['coverage'], '.2f'):>7}"
            )
        lines.append(
            "[brackets]: pairwise id [training-mean baseline, chance]; n-way [chance 1/n]; "
            "R2 (variance-weighted) [training-mean baseline]; hit@1 [chance]; Wu-Palmer [random-label chance]."
        )
        return "\n".join(lines)


def _stimulus_features(
    stimuli, encoders: dict, config: DecodingConfig, out: Path
) -> dict[str, np.ndarray]:
    """Embed one stimulus set with every encoder in one decode pass (resumable store).

    ``encoders`` maps the configured names to built encoders (loaded once per run).
    Returns name -> features of shape (n_images, dim), rows in the order of
    ``stimuli.paths``.  A rerun with the same encoders and images reads the stores.
    """
    from fmri2image.features import ImageDatabase, extract_features

    db = ImageDatabase.from_paths(stimuli.paths, stimuli.wnids, root=stimuli.image_dir)
    result = extract_features(
        db,
        list(encoders.values()),
        out,
        batch_size=config.batch_size,
        device=config.device,
        on_unreadable="raise",
    )
    return {name: result[enc.name].load() for name, enc in encoders.items()}


def _database_index(encoder, config: DecodingConfig):
    from fmri2image.features.shards import store_dirname
    from fmri2image.retrieval import FeatureIndex, prototype_index

    if config.database == "prototypes":
        return prototype_index(encoder)
    root = Path(config.database)
    for candidate in (root / store_dirname(encoder.name), root / encoder.name, root):
        if (candidate / "manifest.json").exists():
            return FeatureIndex.from_store(candidate)
    raise ConfigError(
        f"No feature database for encoder '{encoder.name}' under {root}: expected "
        f"{root / store_dirname(encoder.name)}/manifest.json. Build it with: fmri2image extract "
        f"--model {encoder.name} --images IMAGENET_DIR --out {root}  (or use --database prototypes)."
    )


def run_decoding(
    god_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: DecodingConfig | None = None,
) -> DecodingResult:
    """Run data -> features -> mapping -> retrieval for every encoder in ``config``.

    Parameters
    ----------
    god_dir : path
        GOD release folder (``SubjectN.h5`` or the split files, id files, images).
    out_dir : path
        Results folder (created); one sub-folder per encoder plus ``summary.json``.
    config : DecodingConfig, optional
        Defaults to ``DecodingConfig()``.

    Returns
    -------
    DecodingResult
    """
    from fmri2image.data import load_god_subject, load_stimulus_set, make_splits
    from fmri2image.data.ids import stimulus_ids_to_categories
    from fmri2image.features import get_encoder
    from fmri2image.features.shards import store_dirname
    from fmri2image.mapping import RidgeMapping, prediction_metrics, save_mapping
    from fmri2image.retrieval import retrieve, semantic_metrics

    config = config or DecodingConfig()
    if not config.encoders:
        raise ConfigError("Give at least one encoder (e.g. --model effnet-lite0).")
    from fmri2image.features import ENCODERS

    for name in config.encoders:  # fail on a typo before any data is loaded
        ENCODERS.get(name)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    subject = load_god_subject(god_dir, config.subject, roi=config.roi)
    splits = make_splits(subject, normalization=config.normalization, seed=config.seed)
    train_set = load_stimulus_set(god_dir, "training")
    test_set = load_stimulus_set(god_dir, "test")
    train_rows = train_set.index_of(splits.train_ids)
    test_rows = test_set.index_of(splits.test_ids)
    groups = stimulus_ids_to_categories(splits.train_ids)
    test_names = [test_set.image_names[i] for i in test_rows]
    true_wnids = [str(w) for w in splits.test_wnids]
    log.info(
        "subject %d, %s: %d training samples, %d test images (mean of %s repeats), %d voxels",
        config.subject, config.roi, len(splits.train_ids), len(splits.test_ids),
        "/".join(map(str, sorted(set(splits.test_n_repeats.tolist())))), splits.n_voxels,
    )  # fmt: skip

    log.info(
        "embedding %d + %d stimuli with %s (one decode pass)",
        len(train_set), len(test_set), ", ".join(config.encoders),
    )  # fmt: skip
    encoders = {name: get_encoder(name, device=config.device) for name in config.encoders}
    stim_dir = out / "stimulus_features"
    feats_train = _stimulus_features(train_set, encoders, config, stim_dir / "training")
    feats_test = _stimulus_features(test_set, encoders, config, stim_dir / "test")

    results = []
    for name, encoder in encoders.items():
        t0 = time.perf_counter()
        enc_dir = out / store_dirname(name)
        Y_train = feats_train[name][train_rows]
        Y_test = feats_test[name][test_rows]

        log.info(
            "[%s] fitting ridge (%d-fold CV over alphas, grouped by category)", name, config.cv
        )
        model = RidgeMapping(cv=config.cv, n_voxels=config.n_voxels, random_state=config.seed)
        model.fit(splits.X_train, Y_train, groups=groups)
        save_mapping(model, enc_dir / "mapping")
        Y_pred = model.predict(splits.X_test)
        _io.save_npy(enc_dir / "predicted_test_embeddings.npy", Y_pred)
        pred = prediction_metrics(Y_test, Y_pred, Y_train.mean(axis=0), image_ids=test_names)
        pred.save(enc_dir / "prediction")

        log.info("[%s] retrieving labels from %s", name, config.database)
        index = _database_index(encoder, config)
        retrieved = retrieve(Y_pred, index, k=config.k, vote=config.vote)
        sem = semantic_metrics(retrieved, true_wnids, seed=config.seed)
        sem.save(enc_dir / "retrieval")
        seconds = time.perf_counter() - t0
        results.append(
            EncoderResult(
                encoder=name,
                dim=encoder.dim,
                out_dir=enc_dir,
                prediction=pred.to_dict()["metrics"],
                semantic=sem.summary,
                alpha_median=float(np.median(model.alpha_)),
                seconds=round(seconds, 2),
                top1_labels=tuple(str(x) for x in retrieved.top1),
            )
        )

    result = DecodingResult(
        config=config,
        out_dir=out,
        results=tuple(results),
        n_train=len(splits.train_ids),
        n_test_images=len(splits.test_ids),
        n_voxels=splits.n_voxels,
        test_wnids=tuple(true_wnids),
        seconds=round(time.perf_counter() - t_start, 2),
    )
    _io.save_json(
        out / "summary.json",
        {
            "config": config.to_dict(),
            "god_dir": str(god_dir),
            "n_train": result.n_train,
            "n_test_images": result.n_test_images,
            "n_voxels": result.n_voxels,
            "encoders": result.summary_rows(),
            "seconds": result.seconds,
        },
    )
    return result
