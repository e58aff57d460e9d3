"""What a run leaves beside its tables: pictures, maps and an image grid.

* **Images** (:func:`export_images`): copies of the reconstructions beside the
  ground truth (reflinks where the file system shares blocks copy-on-write; never
  hard links into the cache or the dataset), under ``images/s<subject>-<roi>/``.
* **Maps** (:func:`export_maps`): each fitted map with its predictions, scores and
  retrieved labels, under ``maps/s<subject>-<roi>/<model>/<mapper>/``.
* **A grid** (:func:`image_grid`): ground truth on top, one row per method.

The tables are :mod:`fmri2image.pipeline.tables`'.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmri2image._io import PNG_COMPRESS_LEVEL, atomic_path, safe_name

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.pipeline.tables import ReconstructionScores

__all__ = ["export_images", "export_maps", "image_grid", "safe_name"]


# ------------------------------------------------------------------ images
#: ``FICLONE`` (linux/fs.h): share the source's blocks, copy-on-write (btrfs, XFS,
#: bcachefs, OCFS2; others refuse it and a plain copy is made).
_FICLONE = 0x40049409


def _clone(src: Path, dst: Path) -> None:
    """Copy ``src`` to the new file ``dst``: a reflink where the file system shares
    blocks copy-on-write (instant, no extra space), else an ordinary copy."""
    with open(src, "rb") as fin, open(dst, "r+b" if dst.exists() else "wb") as fout:
        try:
            import fcntl

            fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
            return
        except (ImportError, OSError):
            pass
        fout.truncate(0)
        shutil.copyfileobj(fin, fout, length=1 << 20)


def _same_copy(src: Path, dst: Path) -> bool:
    """``dst`` is an earlier copy of ``src``: a file of its own (not a hard link to
    ``src``) with its size and modification time (copies take the source's)."""
    try:
        a, b = src.stat(), dst.stat()
    except OSError:
        return False
    return (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) and (a.st_size, a.st_mtime_ns) == (
        b.st_size,
        b.st_mtime_ns,
    )


def _place(src: Path, dst: Path) -> None:
    """Put a copy of ``src`` at ``dst``, atomically, with the umask's mode.

    Never a hard link: a user who edits a picture under ``images/`` must not change
    the cached artifact or the dataset's own stimulus file (an export made by an
    older version as a hard link is replaced).  The copy is a reflink where the file
    system supports it.  An unchanged earlier copy (same size and time) is left alone.
    """
    if _same_copy(src, dst):
        return
    with atomic_path(dst) as tmp:
        _clone(src, tmp)
        st = src.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))


def export_images(
    folder: str | os.PathLike,
    entries: Sequence[ReconstructionScores],
    ground_truth: Mapping[tuple[int, str], Mapping[str, Path]],
) -> Path:
    """Lay the reconstructions out beside their ground truth.

    Parameters
    ----------
    folder : path
        The output folder; the images go under ``folder/images``.
    entries : sequence of ReconstructionScores
    ground_truth : mapping of (subject, roi) to mapping of stem to image path

    Returns
    -------
    Path
        ``folder/images``, holding per subject and ROI ``s<subject>-<roi>/ground_truth/
        <stem><suffix>`` (the ground truth's own suffix) and
        ``s<subject>-<roi>/<model>/<mapper>/<generator>/<condition>/<stem>.png``, each picture
        with its record ``<stem>.json`` (prompt or conditioning, the label it shows,
        seed, flagged, seconds) and the records as one table, ``generation.parquet``.

    Notes
    -----
    Every picture in ``entry.images`` is exported (blank or flagged ones too, which the
    evaluation left out), with the ground truth of each that ``ground_truth`` names.  The ROI becomes a path component with every character
    other than alphanumerics, ``-``, ``_`` and ``.`` replaced by ``_``; model, mapper and
    generator names go through :func:`~fmri2image.features.shards.store_dirname`
    (``hf:org/model`` -> ``hf_org_model``).  Files are copies (reflinks where the
    file system allows), made with the umask's mode; an existing file is replaced
    atomically unless it holds the same bytes.  Files from earlier exports that are not part of this one are left
    in place.
    """
    from fmri2image.features.shards import store_dirname

    root = Path(folder) / "images"
    if entries:  # (a run without pictures, decode, has no images folder)
        root.mkdir(parents=True, exist_ok=True)
    gt_stems: dict[tuple[int, str], dict[str, None]] = {}
    for e in entries:
        base = root / f"s{e.subject}-{safe_name(e.roi)}"
        target = (
            base / store_dirname(e.model) / store_dirname(e.mapper) / store_dirname(e.generator)
            / e.condition
        )  # fmt: skip
        # Every picture made, blank or flagged ones too (the evaluation left those out).
        stems = [p.stem for p in sorted(Path(e.images).glob("*.png"))]
        for stem in dict.fromkeys([*e.evaluation.stems, *stems]):
            for name in (f"{stem}.png", f"{stem}.json"):
                src = Path(e.images) / name
                if src.is_file():
                    _place(src, target / name)
            gt_stems.setdefault((e.subject, e.roi), {})[stem] = None
        table = Path(e.images) / "generation.parquet"
        if table.is_file():
            _place(table, target / table.name)
    for (subject, roi), stems in gt_stems.items():
        images = ground_truth.get((subject, roi)) or {}
        target = root / f"s{subject}-{safe_name(roi)}" / "ground_truth"
        for stem in stems:
            src = images.get(stem)
            if src is not None and Path(src).is_file():
                _place(Path(src), target / f"{stem}{Path(src).suffix}")
    return root


_GREY = (128, 128, 128)
_PAD = 6


def export_maps(
    folder: str | os.PathLike,
    maps: Mapping[tuple[int, str, str, str], Path],
    retrievals: Mapping[tuple[int, str, str, str], Mapping[str, Path]] | None = None,
) -> Path:
    """Lay the fitted maps and their retrieved labels out by subject, ROI, model and
    mapper.

    ``maps`` gives the artifact folder of each (subject, roi, model, mapper) mapping
    stage; every file under it is copied (:func:`_place`) to
    ``folder/maps/s<subject>-<roi>/<model>/<mapper>/`` with the same relative path: the
    fitted model (``mapping/``, readable with :func:`fmri2image.mapping.load_mapping`),
    the predicted embeddings, the prediction metrics and ``fit.json``.
    ``retrievals`` gives, per (subject, roi, model, mapper), each database's retrieval
    stage folder, placed under ``.../<mapper>/retrieval/<database>/`` (the retrieved labels
    per image, ``semantic_per_query.parquet``, and the neighbours).  The stages' own
    manifests are left out.  Returns ``folder/maps``.
    """
    from fmri2image.features.shards import store_dirname
    from fmri2image.pipeline.graph import MANIFEST

    root = Path(folder) / "maps"

    def place_all(src: Path, dst: Path) -> None:
        for path in sorted(Path(src).rglob("*")):
            if path.is_file() and path.name != MANIFEST:
                _place(path, dst / path.relative_to(src))

    for (subject, roi, model, mapper), src in maps.items():
        dst = root / f"s{subject}-{safe_name(roi)}" / store_dirname(model) / store_dirname(mapper)
        place_all(src, dst)
        for database, ret in (retrievals or {}).get((subject, roi, model, mapper), {}).items():
            place_all(ret, dst / "retrieval" / safe_name(database))
    return root


def image_grid(
    path: str | os.PathLike,
    ground_truth: Mapping[str, Path],
    rows: Sequence[tuple[str, Path]],
    stems: Sequence[str],
    *,
    size: int = 128,
    max_images: int = 10,
) -> Path:
    """One PNG: the ground truth on top, then one row of reconstructions per method.

    Parameters
    ----------
    path : path
        The PNG to write (atomically).
    ground_truth : mapping of stem to image path
    rows : sequence of (label, folder)
        Each folder holds ``<stem>.png``; the label is drawn in the left margin.
    stems : sequence of str
        The columns, in order; at most ``max_images`` are shown.
    size : int, default 128
        Side of each (square) cell in pixels.
    max_images : int, default 10

    Returns
    -------
    Path
        ``path``: an image ``margin + n * size`` wide and ``(1 + len(rows)) * size``
        high, where the margin fits the widest label (PIL's default font) and
        ``n = min(len(stems), max_images)``.  Missing or unreadable images are grey
        cells.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    stems = list(stems)[: max(0, max_images)]
    font = ImageFont.load_default()
    labels = ["ground truth", *(label for label, _ in rows)]
    widths = [font.getbbox(label)[2] for label in labels]
    margin = int(max(widths)) + 2 * _PAD
    n_rows = 1 + len(rows)
    grid = Image.new("RGB", (margin + len(stems) * size, n_rows * size), "white")
    draw = ImageDraw.Draw(grid)
    sources = [
        [ground_truth.get(s) for s in stems],
        *([Path(folder) / f"{s}.png" for s in stems] for _, folder in rows),
    ]
    for r, (label, files) in enumerate(zip(labels, sources)):
        top = r * size
        _, t, _, bottom = font.getbbox(label)
        draw.text((_PAD, top + (size - (bottom - t)) // 2 - t), label, fill="black", font=font)
        for c, file in enumerate(files):
            cell = None
            if file is not None:
                try:
                    with Image.open(file) as im:
                        cell = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                except OSError:  # missing or unreadable: a grey cell
                    cell = None
            if cell is None:
                cell = Image.new("RGB", (size, size), _GREY)
            grid.paste(cell, (margin + c * size, top))
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return path
