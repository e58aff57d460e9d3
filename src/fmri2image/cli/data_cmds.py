"""``fmri2image data-info``: summarize one subject of a dataset and its stimulus images."""

from __future__ import annotations

import argparse
from typing import Any

from fmri2image.cli import _options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data-info",
        help="summarize one subject of a dataset (samples, ROIs, splits, missing images)",
        description=(
            "Load one subject's fMRI file(s) and the stimulus lists and print sample "
            "counts, ROI voxel counts, category counts, repetitions and the stimulus images "
            "missing on disk. GOD: checks that every fMRI stimulus id is listed in the id "
            "files. Other datasets (--dataset deeprecon|things|nsd) are read through the "
            "dataset seam, as `fmri2image run` reads them."
        ),
        epilog=(
            "examples:\n"
            "  fmri2image data-info --data demo-output/data --subject 1 --roi ROI_HVC\n"
            "  fmri2image make-fixture deeprecon --out deeprecon-fixture\n"
            "  fmri2image data-info --dataset deeprecon --data deeprecon-fixture --subject 1 "
            "--roi ROI_hV4\n"
            "  fmri2image make-fixture nsd --out nsd-fixture\n"
            "  fmri2image data-info --dataset nsd --data nsd-fixture --subject 1 --option "
            "sessions=2"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset", default="god", metavar="NAME",
        help="the dataset: god (default), deeprecon, things, nsd, or a plugin's",
    )  # fmt: skip
    p.add_argument(
        "--data", "--god", dest="god", required=True, metavar="DIR",
        help="the dataset's folder (--god is the same flag)",
    )  # fmt: skip
    p.add_argument(
        "--subject", required=True, metavar="N", help="subject number (GOD 1-5, ...)"
    )  # fmt: skip
    p.add_argument(
        "--roi",
        metavar="EXPR",
        help="ROI query, e.g. 'ROI_VC', 'ROI_V1 + ROI_V2', 'ROI_V*' (GOD, Deeprecon), "
        "'V1', 'lFFA + rFFA' (THINGS) (default: the dataset's default ROI: ROI_VC for GOD)",
    )
    p.add_argument(
        "--release",
        choices=("auto", "spm", "fmriprep", "original"),
        default="auto",
        help="which release to read when a folder holds two (default: auto)",
    )
    _options.add_dataset_option_flag(p)
    p.add_argument(
        "--drop-nan-voxels",
        action="store_true",
        help="drop voxel columns that contain NaN instead of failing",
    )
    p.add_argument(
        "--require-images",
        action="store_true",
        help="fail if the stimulus id files or any stimulus image are missing or unreadable",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_data_info)


def data_info(
    god: str,
    subject: str | int,
    roi: str = "ROI_VC",
    *,
    release: str = "auto",
    drop_nan_voxels: bool = False,
    require_images: bool = False,
) -> dict[str, Any]:
    """Collect the ``data-info`` summary as a JSON-ready dict."""
    import numpy as np

    from fmri2image.data.bdata import MissingDataFileError
    from fmri2image.data.god import load_god_subject
    from fmri2image.data.ids import stimulus_id_keys
    from fmri2image.data.images import find_unreadable_images, unreadable_error
    from fmri2image.data.stimuli import check_stimulus_ids, load_stimulus_set

    subj = load_god_subject(god, subject, roi, release=release, drop_nan_voxels=drop_nan_voxels)
    dt = subj.data_types
    cats = subj.categories
    test_keys, n_rep = np.unique(stimulus_id_keys(subj.stimulus_ids[dt == 2]), return_counts=True)
    info: dict[str, Any] = {
        "subject": subj.subject,
        "roi": subj.roi,
        "sources": [str(p) for p in subj.sources],
        "n_samples": subj.n_samples,
        "n_train": int((dt == 1).sum()),
        "n_test_trials": int((dt == 2).sum()),
        "n_test_images": int(test_keys.size),
        "test_repeats": sorted({int(r) for r in n_rep}),
        "n_imagery_trials": int((dt == 3).sum()),
        "n_voxels": subj.n_voxels,
        "n_dropped_nan_voxels": subj.n_dropped_nan_voxels,
        "n_train_categories": int(np.unique(cats[dt == 1]).size),
        "n_test_categories": int(np.unique(cats[dt == 2]).size),
        "n_imagery_categories": int(np.unique(cats[dt == 3]).size),
        "n_runs": int(np.unique(subj.run_groups).size),
        "rois": dict(subj.roi_sizes),
        "stimuli": {},
        "missing_images": [],
        "unreadable_images": [],
    }
    for split, code in (("training", 1), ("test", 2)):
        try:
            stim = load_stimulus_set(god, split, allow_missing=not require_images)
        except MissingDataFileError:
            if require_images:
                raise
            info["stimuli"][split] = None
            continue
        check_stimulus_ids(subj.stimulus_ids[dt == code], stim, what=f"fMRI {split}")
        # Every present image is decoded once; missing ones are listed apart (stim.missing).
        bad = [b for b in find_unreadable_images(stim.paths) if stim.paths[b.position - 1]]
        if require_images and bad:  # one error listing every damaged file
            raise unreadable_error(
                bad, len(stim), what=f"{split} stimulus images",
                position_name=f"row of {stim.id_file.name}",
            )  # fmt: skip
        unreadable = [{"row": b.position, "path": b.path, "reason": b.reason} for b in bad]
        info["stimuli"][split] = {
            "id_file": str(stim.id_file),
            "image_dir": str(stim.image_dir),
            "n_images": len(stim),
            "n_missing": len(stim.missing),
            "n_unreadable": len(unreadable),
        }
        info["missing_images"].extend(stim.missing)
        info["unreadable_images"].extend(unreadable)
    return info


def _format_text(info: dict[str, Any]) -> str:
    lines = [
        f"GOD subject {info['subject']}  ROI {info['roi']}  ({info['n_voxels']} voxels)",
        f"  files: {', '.join(info['sources'])}",
        f"  training:  {info['n_train']} samples, {info['n_train_categories']} categories",
        f"  test:      {info['n_test_trials']} trials of {info['n_test_images']} images "
        f"({info['n_test_categories']} categories; repeats {info['test_repeats']})",
        f"  imagery:   {info['n_imagery_trials']} trials, "
        f"{info['n_imagery_categories']} categories",
        f"  runs:      {info['n_runs']}",
    ]
    if info["n_dropped_nan_voxels"]:
        lines.append(f"  dropped {info['n_dropped_nan_voxels']} NaN voxel columns")
    lines.append("  ROIs: " + ", ".join(f"{k} {v}" for k, v in info["rois"].items()))
    for split, st in info["stimuli"].items():
        if st is None:
            lines.append(f"  {split} stimuli: id file not found (images are optional here)")
        else:
            lines.append(
                f"  {split} stimuli: {st['n_images']} images listed in {st['id_file']}, "
                f"{st['n_missing']} missing, {st['n_unreadable']} unreadable"
            )
    missing = info["missing_images"]
    if missing:
        lines.append(f"  missing images ({len(missing)}):")
        lines.extend(f"    {m}" for m in missing[:20])
        if len(missing) > 20:
            lines.append(f"    ... and {len(missing) - 20} more (see --json)")
    bad = info["unreadable_images"]
    if bad:
        lines.append(f"  unreadable images ({len(bad)}; row of the id file, 1-based):")
        lines.extend(f"    {b['row']}: {b['path']} ({b['reason']})" for b in bad[:20])
        if len(bad) > 20:
            lines.append(f"    ... and {len(bad) - 20} more (see --json)")
    return "\n".join(lines)


def seam_info(
    dataset: str,
    folder: str,
    subject: str | int,
    roi: str | None = None,
    *,
    options: dict[str, Any] | None = None,
    drop_nan_voxels: bool = False,
    require_images: bool = False,
) -> dict[str, Any]:
    """The ``data-info`` summary of any registered dataset, read through the seam."""
    import numpy as np

    from fmri2image.data.dataset import get_dataset, split_recording
    from fmri2image.data.god import parse_subject
    from fmri2image.data.images import find_unreadable_images, unreadable_error
    from fmri2image.errors import MissingDataFileError, MissingImageError

    ds = get_dataset(dataset, folder, **(options or {}))
    roi = roi or ds.default_rois[0]
    number = parse_subject(subject)
    rec = ds.load(number, roi, drop_nan_voxels=drop_nan_voxels)
    splits: dict[str, Any] = {}
    for name in ["train", *ds.eval_splits]:
        mask = rec.mask(name)
        if not mask.any():
            continue
        rows, counts = np.unique(rec.stimulus[mask & (rec.stimulus >= 0)], return_counts=True)
        splits[name] = {
            "n_trials": int(mask.sum()),
            "n_stimuli": int(rows.size),
            "repeats": sorted({int(c) for c in counts}),
            "n_categories": int(np.unique(rec.groups[mask]).size),
        }
    info: dict[str, Any] = {
        "dataset": dataset,
        "subject": rec.subject,
        "roi": roi,
        "sources": [str(p) for p in rec.sources],
        "n_samples": rec.n_samples,
        "n_voxels": rec.n_voxels,
        "n_dropped_nan_voxels": rec.n_dropped_nan_voxels,
        "n_runs": int(np.unique(rec.runs).size),
        "average": ds.average,
        "splits": splits,
        "rois": dict(rec.roi_sizes),
        "stimuli": {},
        "missing_images": [],
        "unreadable_images": [],
    }
    if "test" in splits:  # what a map predicts, as a run prepares it
        split_recording(rec, normalization="none", split="test", average=ds.average)
    for name in dict.fromkeys(ds.stimuli_of(s) for s in splits):
        try:
            stim = ds.stimuli(name)
        except (MissingDataFileError, MissingImageError) as exc:
            if require_images:
                raise
            info["stimuli"][name] = {"error": str(exc)}
            continue
        entry: dict[str, Any] = {
            "n_stimuli": len(stim),
            "vocabulary": ds.vocabulary_of(stim),
            "source": str(stim.source) if stim.source else None,
            "labels": list(stim.labels[:3]),
        }
        if stim.files is not None:
            bad = find_unreadable_images([str(p) for p in stim.files])
            if require_images and bad:
                raise unreadable_error(bad, len(stim), what=f"{name} stimulus images")
            entry["n_unreadable"] = len(bad)
            info["unreadable_images"].extend(
                {"row": b.position, "path": b.path, "reason": b.reason} for b in bad
            )
        else:
            entry["images"] = "inside the container"
        info["stimuli"][name] = entry
    return info


def _format_seam(info: dict[str, Any]) -> str:
    lines = [
        f"{info['dataset']} subject {info['subject']}  ROI {info['roi']}  "
        f"({info['n_voxels']} voxels)",
        f"  files: {', '.join(info['sources'])}",
    ]
    for name, sp in info["splits"].items():
        lines.append(
            f"  {name + ':':<11}{sp['n_trials']} trials of {sp['n_stimuli']} stimuli "
            f"({sp['n_categories']} categories; repeats {sp['repeats']})"
        )
    lines.append(f"  runs:      {info['n_runs']}; repetitions averaged: {info['average']}")
    if info["n_dropped_nan_voxels"]:
        lines.append(f"  dropped {info['n_dropped_nan_voxels']} NaN voxel columns")
    lines.append("  ROIs: " + ", ".join(f"{k} {v}" for k, v in info["rois"].items()))
    for name, st in info["stimuli"].items():
        if "error" in st:
            lines.append(f"  {name} stimuli: {st['error']}")
            continue
        where = st.get("images") or f"{st['n_unreadable']} unreadable"
        lines.append(
            f"  {name} stimuli: {st['n_stimuli']} ({st['vocabulary']} labels, e.g. "
            f"{', '.join(map(repr, st['labels']))}); {where}"
        )
    return "\n".join(lines)


def run_data_info(args: argparse.Namespace) -> int:
    import json

    if args.dataset != "god":
        options = {} if args.release == "auto" else {"release": args.release}
        options.update(_options.dataset_options(args.dataset_options))
        info = seam_info(
            args.dataset, args.god, args.subject, args.roi, options=options,
            drop_nan_voxels=args.drop_nan_voxels, require_images=args.require_images,
        )  # fmt: skip
        print(json.dumps(info, indent=2) if args.json else _format_seam(info))
        return 0
    if args.release == "original":
        from fmri2image.errors import ConfigError

        raise ConfigError("--release original is Deeprecon's; GOD has auto, spm and fmriprep.")
    info = data_info(
        args.god,
        args.subject,
        args.roi or "ROI_VC",
        release=args.release,
        drop_nan_voxels=args.drop_nan_voxels,
        require_images=args.require_images,
    )
    print(json.dumps(info, indent=2) if args.json else _format_text(info))
    return 0
