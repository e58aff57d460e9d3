"""``write_demo_dataset``: a GOD-layout folder from real photos and a simulated brain.

The folder::

    <out>/Subject1.h5 ... SubjectN.h5      BData, GOD's keys (fmri2image.data.layout)
    <out>/training/<wnid>_<n>.JPEG         training stimuli
    <out>/test/...                         test stimuli
    <out>/imageID_training.csv             "2123045.001003,n02123045_1003.JPEG"
    <out>/imageID_test.csv
    <out>/database/<wnid>/<wnid>_<n>.JPEG  labelled image database (other crops)
    <out>/demo_dataset.json                provenance (not part of the GOD release)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import tqdm_kwargs
from fmri2image.demo.catalogue import (
    CategorySplit,
    DemoCategory,
    PhotoRoots,
    available_categories,
    find_photo,
    split_categories,
)
from fmri2image.demo.info import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, DemoDatasetInfo
from fmri2image.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.data.layout import StimulusFiles
    from fmri2image.demo.database import DatabaseInfo
    from fmri2image.demo.stimuli import PhotoCache
    from fmri2image.features.base import Encoder

__all__ = ["DemoRequest", "resolve_demo_request", "write_demo_dataset"]

logger = logging.getLogger(__name__)

#: Files and folders of a demo dataset (removed by ``overwrite``; nothing else is).
_OWNED_GLOBS = (
    "Subject*.h5",
    "imageID_training.csv",
    "imageID_test.csv",
    MANIFEST_NAME,
    "training/*.JPEG",
    "test/*.JPEG",
    "database/n*/n*.JPEG",
)
_OWNED_DIRS = ("training", "test", "database/n*", "database")

#: CLI flag of each parameter, for error messages.
FLAGS = {
    "n_subjects": "--subjects",
    "seed": "--seed",
    "n_train_categories": "--n-train-categories",
    "images_per_category": "--images-per-category",
    "n_test_categories": "--n-test-categories",
    "n_test_repeats": "--n-test-repeats",
    "n_imagery_repeats": "--n-imagery-repeats",
    "n_voxels": "--n-voxels",
    "snr": "--snr",
    "drift": "--drift",
    "imagery_gain": "--imagery-gain",
    "image_size": "--image-size",
    "database_images_per_category": "--database-images",
    "encoder": "--encoder",
}


def _name(param: str) -> str:
    flag = FLAGS.get(param)
    return f"{param} ({flag})" if flag else param


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{_name(name)} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{_name(name)} must be {bound}, got {value}.")
    return int(value)


def _check_float(name: str, value: Any, *, positive: bool) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{_name(name)} must be a number, got {value!r}.") from None
    if not np.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{_name(name)} must be a finite {kind} number, got {value!r}.")
    return v


@dataclass(frozen=True)
class DemoRequest:
    """A validated call of :func:`write_demo_dataset`, defaults resolved.

    Attributes
    ----------
    parameters : dict
        Every parameter as the manifest records it.
    split : CategorySplit
        Training, test and distractor categories (installed regions only).
    photo_sources : tuple of str
        ``package:file`` of every photo the dataset uses, sorted.
    photo_roots : mapping or None
        Where photos are looked for (see :func:`fmri2image.demo.find_photo`).
    """

    parameters: dict[str, Any]
    split: CategorySplit
    photo_sources: tuple[str, ...]
    photo_roots: PhotoRoots | None

    @property
    def categories(self) -> tuple[DemoCategory, ...]:
        """Every available category: training, test, then distractors."""
        s = self.split
        return (*s.train, *s.test, *s.distractors)


def resolve_demo_request(
    *,
    n_subjects: int = 1,
    seed: int = 0,
    n_train_categories: int | None = None,
    images_per_category: int = 8,
    n_test_categories: int | None = None,
    n_test_repeats: int = 5,
    n_imagery_repeats: int = 2,
    n_voxels: int = 1500,
    snr: float = 1.0,
    drift: float = 0.5,
    imagery_gain: float = 0.5,
    image_size: int = 256,
    database_images_per_category: int = 4,
    encoder: str | Encoder = "effnet-lite0",
    photo_roots: PhotoRoots | None = None,
) -> DemoRequest:
    """Validate the arguments of :func:`write_demo_dataset` and resolve its defaults.

    Parameters are those of :func:`write_demo_dataset`.

    Returns
    -------
    DemoRequest

    Raises
    ------
    ConfigError
        A bad value (the message names the CLI flag) or more categories than the
        installed photos give.
    """
    from fmri2image.demo.brain import ROI_FRACTIONS

    params: dict[str, Any] = {
        "n_subjects": _check_int("n_subjects", n_subjects, 1, 100),
        "seed": _check_int("seed", seed, 0),
        "images_per_category": _check_int("images_per_category", images_per_category, 1, 500),
        "n_test_repeats": _check_int("n_test_repeats", n_test_repeats, 1, 1000),
        "n_imagery_repeats": _check_int("n_imagery_repeats", n_imagery_repeats, 0, 1000),
        "n_voxels": _check_int("n_voxels", n_voxels, len(ROI_FRACTIONS) * 2, 100_000),
        "snr": _check_float("snr", snr, positive=True),
        "drift": _check_float("drift", drift, positive=False),
        "imagery_gain": _check_float("imagery_gain", imagery_gain, positive=False),
        "image_size": _check_int("image_size", image_size, 32, 2048),
        "database_images_per_category": _check_int(
            "database_images_per_category", database_images_per_category, 0, 1000
        ),
    }
    if n_test_categories is not None:
        n_test_categories = _check_int("n_test_categories", n_test_categories, 2)
    if n_train_categories is not None:
        n_train_categories = _check_int("n_train_categories", n_train_categories, 2)
    if isinstance(encoder, str):
        if not encoder.strip():
            raise ConfigError(f"{_name('encoder')} must name a registered encoder, got ''.")
        params["encoder"] = encoder
    else:
        params["encoder"] = str(getattr(encoder, "name", type(encoder).__name__))
    cats = available_categories(photo_roots)
    split = split_categories(cats, n_test_categories, n_train_categories)
    if len(split.train) < 2:
        raise ConfigError(
            f"Only {len(split.train)} training categories remain with "
            f"{len(split.test)} test categories on this machine; lower "
            "--n-test-categories (at least 2 training categories are needed)."
        )
    params["n_train_categories"] = len(split.train)
    params["n_test_categories"] = len(split.test)
    used = (*split.train, *split.test)
    if params["database_images_per_category"] > 0:
        used = (*used, *split.distractors)
    sources = tuple(sorted({r.source for c in used for r in c.regions}))
    order = [
        "n_subjects",
        "seed",
        "n_train_categories",
        "images_per_category",
        "n_test_categories",
        "n_test_repeats",
        "n_imagery_repeats",
        "n_voxels",
        "snr",
        "drift",
        "imagery_gain",
        "image_size",
        "database_images_per_category",
        "encoder",
    ]
    return DemoRequest({k: params[k] for k in order}, split, sources, photo_roots)


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder. Choose another OUT_DIR.")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{out} is not empty. Choose a new or empty folder, or pass --force "
                "(overwrite=True) to replace a demo dataset written there before (only "
                "the demo's own files are removed)."
            )
        for pattern in _OWNED_GLOBS:
            for p in out.glob(pattern):
                if p.is_file():
                    p.unlink()
        for pattern in _OWNED_DIRS:
            for d in sorted(out.glob(pattern), reverse=True):
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    out.mkdir(parents=True, exist_ok=True)


def write_demo_dataset(
    out_dir: str | os.PathLike,
    *,
    n_subjects: int = 1,
    seed: int = 0,
    n_train_categories: int | None = None,
    images_per_category: int = 8,
    n_test_categories: int | None = None,
    n_test_repeats: int = 5,
    n_imagery_repeats: int = 2,
    n_voxels: int = 1500,
    snr: float = 1.0,
    drift: float = 0.5,
    imagery_gain: float = 0.5,
    image_size: int = 256,
    database_images_per_category: int = 4,
    encoder: str | Encoder = "effnet-lite0",
    photo_roots: PhotoRoots | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoDatasetInfo:
    """Write a GOD-layout dataset from installed photos and a simulated brain.

    The encoding model is described in :mod:`fmri2image.demo.brain` and in
    ``docs/demo-dataset.md``.  Defaults adapt to the photos on the machine: every
    available category is used (training, test, or database-only).

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder; created if missing, must be empty unless ``overwrite``.
    n_subjects : int, default 1
        Subjects (each with its own random voxel model and noise; same stimuli).
    seed : int, default 0
        Seed of every random choice (images, design, voxel model, noise).
    n_train_categories : int, optional
        Training categories; default: every category that shares no photo with a
        test category.
    images_per_category : int, default 8
        Training images per category (GOD: 8); also the number of training runs.
    n_test_categories : int, optional
        Test categories, one image each (GOD: 50); default 10 when at least 40
        categories are available (Debian photos installed), else 6.
    n_test_repeats : int, default 5
        Presentations of each test image, one per run (GOD: 35).
    n_imagery_repeats : int, default 2
        Imagery trials per test category, one per run (GOD: 10); 0 for none.
    n_voxels : int, default 1500
        Voxels per subject, split over V1..PPA by ``ROI_FRACTIONS``.
    snr : float, default 1.0
        Single-trial signal-to-noise variance ratio of every voxel.
    drift : float, default 0.5
        Standard deviation of the per-run voxel offsets, in signal units.
    imagery_gain : float, default 0.5
        Scale of the high-level signal in imagery trials.
    image_size : int, default 256
        Longer side of the stimulus and database images in pixels.
    database_images_per_category : int, default 4
        Images per category in ``<out>/database/<wnid>/`` (other crops than the
        stimuli, of every available category); 0 writes no database.
    encoder : str or Encoder, default "effnet-lite0"
        Model whose pooled features drive V4/LOC/FFA/PPA (a registry name or an
        instance from :func:`fmri2image.features.get_encoder`).
    photo_roots : mapping of str to folder(s), optional
        Where to look for the photos of each package (see
        :func:`fmri2image.demo.find_photo`); ``{}`` uses the pip photos only.
    overwrite : bool, default False
        Replace the demo files in a non-empty ``out_dir`` (other files are kept).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    DemoDatasetInfo

    Raises
    ------
    ConfigError
        Bad sizes, more categories than the installed photos allow, or a non-empty
        ``out_dir`` without ``overwrite``.
    """
    t0 = time.perf_counter()
    req = resolve_demo_request(
        n_subjects=n_subjects,
        seed=seed,
        n_train_categories=n_train_categories,
        images_per_category=images_per_category,
        n_test_categories=n_test_categories,
        n_test_repeats=n_test_repeats,
        n_imagery_repeats=n_imagery_repeats,
        n_voxels=n_voxels,
        snr=snr,
        drift=drift,
        imagery_gain=imagery_gain,
        image_size=image_size,
        database_images_per_category=database_images_per_category,
        encoder=encoder,
        photo_roots=photo_roots,
    )
    p = req.parameters
    if isinstance(encoder, str):  # an unknown name fails before anything is written
        from fmri2image.features import get_encoder

        enc = get_encoder(encoder)
    else:
        enc = encoder
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)

    from tqdm.auto import tqdm

    from fmri2image.data.ids import image_name_to_stimulus_id
    from fmri2image.data.layout import write_god_subject, write_stimulus_set
    from fmri2image.demo import brain
    from fmri2image.demo.database import DATABASE_DIR, write_image_database
    from fmri2image.demo.design import make_design
    from fmri2image.demo.stimuli import STIMULI, PhotoCache, category_rng, decode, render_images

    photos = PhotoCache(photo_roots)
    # Stimuli, each category from its own stream; id-file order (sorted by id).
    plan = [(c, "training", p["images_per_category"]) for c in req.split.train]
    plan += [(c, "test", 1) for c in req.split.test]
    stimuli = []
    for cat, split, n in tqdm(plan, desc="stimuli", unit="category", **tqdm_kwargs(progress)):
        rng = category_rng(p["seed"], STIMULI, cat.wnid)
        for img in render_images(cat, n, rng, image_size=p["image_size"], photos=photos):
            stimuli.append((split, img))
    stimuli.sort(key=lambda s: (s[0] != "training", s[1].wnid, s[1].number))
    files = {
        split: write_stimulus_set(out, split, {i.name: i.jpeg for s, i in stimuli if s == split})
        for split in ("training", "test")
    }

    # Everything downstream sees the decoded JPEGs, exactly as a user's loader does.
    images = [decode(img.jpeg) for _, img in stimuli]
    feats = brain.encoder_features(enc, images, progress=progress)
    low_maps = brain.low_level_maps(images)
    train_rows = np.array([s == "training" for s, _ in stimuli])
    components = brain.feature_components(feats, train_rows, brain.N_COMPONENTS)

    # Child 0 of the seed draws the design, child s subject s's brain and noise, so
    # adding subjects leaves the earlier ones unchanged.
    def child(k: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(p["seed"], spawn_key=(k,)))

    design_rng = child(0)
    design = make_design(
        [s for s, _ in stimuli],
        [img.wnid for _, img in stimuli],
        p["images_per_category"],
        p["n_test_repeats"],
        p["n_imagery_repeats"],
        design_rng,
    )
    stim_ids = np.array([image_name_to_stimulus_id(img.name) for _, img in stimuli])
    per_sample_id = np.where(
        design.data_type == 3,
        np.floor(stim_ids[design.stim_row]),  # imagery: the category id only
        stim_ids[design.stim_row],
    )
    sizes = brain.roi_sizes(p["n_voxels"])
    roi_index = np.repeat(np.arange(len(sizes)), list(sizes.values()))
    rois = {roi: roi_index == k for k, roi in enumerate(sizes)}

    subject_files = []
    subjects = range(1, p["n_subjects"] + 1)
    for subj in tqdm(subjects, desc="simulate subjects", **tqdm_kwargs(progress)):
        rng = child(subj)
        voxels = brain.simulate_subject(
            low_maps,
            components,
            train_rows,
            design,
            sizes,
            rng,
            snr=p["snr"],
            drift=p["drift"],
            imagery_gain=p["imagery_gain"],
        )
        path = write_god_subject(
            out / f"Subject{subj}.h5",
            voxels,
            data_type=design.data_type,
            run=design.run,
            block=design.block,
            stimulus_id=per_sample_id,
            rois=rois,
            voxel_xyz=brain.voxel_coordinates(sizes, rng),
            header={"fmri2image_demo": f"seed={p['seed']} subject={subj}"},
        )
        subject_files.append(path)

    database = None
    if p["database_images_per_category"] > 0:
        taken: dict[str, list[int]] = {}
        for _, img in stimuli:
            taken.setdefault(img.wnid, []).append(img.number)
        database = write_image_database(
            out / DATABASE_DIR,
            req.categories,
            p["database_images_per_category"],
            seed=p["seed"],
            image_size=p["image_size"],
            photos=photos,
            exclude_numbers=taken,
            progress=progress,
        )

    roi_sizes = {f"ROI_{k}": v for k, v in sizes.items()}
    roi_sizes["ROI_LVC"] = sum(sizes[r] for r in brain.LOW_ROIS)
    roi_sizes["ROI_HVC"] = sum(sizes[r] for r in brain.HIGH_ROIS)
    roi_sizes["ROI_VC"] = p["n_voxels"]
    counts = {
        "training": int((design.data_type == 1).sum()),
        "test": int((design.data_type == 2).sum()),
        "imagery": int((design.data_type == 3).sum()),
        "total": len(design),
    }
    manifest = _manifest(req, files, subject_files, database, roi_sizes, counts, photos, out)
    n_bytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    manifest["n_bytes"] = n_bytes
    manifest["seconds"] = round(time.perf_counter() - t0, 3)

    from fmri2image._io import save_json

    # Written last: a folder without it is an unfinished dataset.
    save_json(out / MANIFEST_NAME, manifest)
    info = DemoDatasetInfo.load(out)
    logger.debug("wrote demo dataset to %s in %.1f s", out, info.seconds)
    return info


def _manifest(
    req: DemoRequest,
    files: dict[str, StimulusFiles],
    subject_files: list[Path],
    database: DatabaseInfo | None,
    roi_sizes: dict[str, int],
    counts: dict[str, int],
    photos: PhotoCache,
    out: Path,
) -> dict[str, Any]:
    """The content of ``demo_dataset.json`` (see :mod:`fmri2image.demo.info`)."""
    from fmri2image import __version__
    from fmri2image._io import file_sha256
    from fmri2image.imagenet import imagenet1k_wnids

    in1k = set(imagenet1k_wnids())
    split_of = {c.wnid: "training" for c in req.split.train}
    split_of |= {c.wnid: "test" for c in req.split.test}
    split_of |= {c.wnid: "distractor" for c in req.split.distractors}
    used = set(req.photo_sources)
    photo_rows = {}
    for cat in req.categories:
        for r in cat.regions:
            if r.source in used and r.source not in photo_rows:
                path = find_photo(r, req.photo_roots)
                assert path is not None  # available_categories() kept only installed ones
                photo_rows[r.source] = {
                    "source": r.source,
                    "package": r.package,
                    "file": r.file,
                    "path": str(path),
                    "sha256": file_sha256(path),
                }
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "description": "fmri2image demo dataset: real photographs, simulated fMRI "
        "(see docs/demo-dataset.md)",
        "fmri2image_version": __version__,
        "parameters": req.parameters,
        "categories": [
            {
                "wnid": c.wnid,
                "name": c.name,
                "split": split_of[c.wnid],
                "imagenet1k": c.wnid in in1k,
                "regions": [
                    {"source": r.source, "box": list(photos.region(r)[1])}
                    for r in c.regions
                    if r.source in used
                ],
                **({"note": c.note} if c.note else {}),
            }
            for c in req.categories
            if split_of[c.wnid] != "distractor" or database is not None
        ],
        "photos": sorted(photo_rows.values(), key=lambda r: r["source"]),
        "files": {
            "subjects": [f.name for f in subject_files],
            "training_dir": "training",
            "test_dir": "test",
            "training_id_file": files["training"].id_file.name,
            "test_id_file": files["test"].id_file.name,
        },
        "n_images": {"training": len(files["training"].names), "test": len(files["test"].names)},
        "n_samples": counts,
        "roi_sizes": roi_sizes,
        "database": (
            {
                "path": database.root.relative_to(out).as_posix(),
                "layout": "wnid",
                "n_classes": database.n_classes,
                "n_images": database.n_images,
                "images_per_category": req.parameters["database_images_per_category"],
            }
            if database is not None
            else None
        ),
    }
