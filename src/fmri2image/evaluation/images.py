"""Reading reconstructions and ground truths, and pairing them for the image metrics.

Each side (``--recon``, ``--gt``) is a folder of image files or one ``.npy`` array:

* a **folder** is read non-recursively; files are keyed by their stem
  (``n01440764_10026.JPEG`` → ``n01440764_10026``), suffixes in
  :data:`IMAGE_SUFFIXES` in any case; hidden files (``.name``) and other files are
  ignored.  A stem that appears with two suffixes (``a.png`` and ``a.jpg``) is
  ambiguous: it is excluded and reported, never guessed;
* a **.npy array** holds ``n`` images in a stated order, shape ``(n, H, W, 3)``,
  ``(n, 3, H, W)`` or ``(n, H, W)`` (grayscale), ``uint8`` in ``[0, 255]`` or float in
  ``[0, 1]``.  It is memory-mapped (``np.load(mmap_mode="r", allow_pickle=False)``)
  and read one row at a time.  Its rows are named by ``--order`` (one stem per line),
  or, when the other side is a folder with as many stems, by that folder's sorted
  stems (an assumption :class:`ImagePairs` states in its notes).

:func:`pair_images` keeps every pair it can evaluate and says why each other stem is
left out (missing on one side, unreadable file, blank reconstruction, ambiguous stem);
only when no pair is left does it raise.  Every file is decoded once, at full
resolution (:func:`fmri2image.data.images.decode_image` with ``min_side=None``), since
the metrics must see the exact pixels.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fmri2image.data.images import decode_errors, decode_image
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError
from fmri2image.evaluation.lowlevel import PROTOCOL_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

__all__ = [
    "BLANK_MAX_RANGE",
    "IMAGE_SUFFIXES",
    "ImagePairs",
    "ImageSource",
    "is_blank",
    "pair_images",
    "read_image_source",
    "read_order_file",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
"""Suffixes of image files in a folder source, compared case-insensitively."""

BLANK_MAX_RANGE = 2
"""An image is blank when ``max - min <= BLANK_MAX_RANGE`` (of 255) in every RGB channel."""

_FLOAT_SLACK = 1e-6
"""Float pixels this far outside ``[0, 1]`` (rounding in a decoder) are clipped silently."""

_SHOWN = 5
"""Stems named per reason in the error raised when no pair is left."""

_MODE_NAMES = {
    "L": "grayscale (L; gray copied to R, G and B)",
    "LA": "grayscale with alpha (LA; alpha dropped, not composited)",
    "RGBA": "RGBA (alpha dropped, not composited on a background)",
    "P": "palette (P)",
    "1": "1-bit (1)",
    "CMYK": "CMYK",
    "I;16": "16-bit grayscale (I;16)",
}

Side = Literal["reconstruction", "ground truth"]


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ImageSource:
    """A folder of images keyed by file stem, or a ``.npy`` array of images in a stated order.

    Build it with :func:`read_image_source`.

    Attributes
    ----------
    path : Path
        The folder or the ``.npy`` file.
    kind : {"folder", "npy"}
        Which of the two.
    stems : tuple of str
        The loadable stems: for a folder the unambiguous file stems, sorted; for an
        array the names of its rows, in row order.
    ambiguous : Mapping[str, tuple of str]
        Folder stems with more than one image file (stem -> file names); not loadable.
    named : bool
        False for an array whose rows carry the default names ``"0000"``, ``"0001"``, ...
        (no ``--order`` given); :func:`pair_images` may then name them after the other
        side's folder.
    notes : tuple of str
        Observations made while reading (ignored files, float quantisation).
    files : Mapping[str, Path]
        Folder only: stem -> file.
    array : numpy.ndarray or None
        Array only: the memory-mapped images.
    layout : str
        Array only: ``"NHWC"``, ``"NCHW"`` or ``"NHW"``.
    rows : Mapping[str, int]
        Array only: stem -> row index.
    """

    path: Path
    kind: Literal["folder", "npy"]
    stems: tuple[str, ...]
    ambiguous: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    named: bool = True
    notes: tuple[str, ...] = ()
    files: Mapping[str, Path] = field(default_factory=dict, repr=False, compare=False)
    array: np.ndarray | None = field(default=None, repr=False, compare=False)
    layout: str = ""
    rows: Mapping[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, stem: str) -> Image.Image:
        """The image named ``stem``, decoded at full resolution and converted to RGB.

        Raises
        ------
        KeyError
            If ``stem`` is not in :attr:`stems`.
        OSError, ValueError, SyntaxError
            For a file that cannot be decoded (see ``decode_errors``).
        DataFormatError
            For an array row with NaN or values outside the stated range.
        """
        return self.load_with_mode(stem)[0]

    def load_with_mode(self, stem: str) -> tuple[Image.Image, str]:
        """Like :meth:`load`, also returning the PIL mode before conversion (``"L"``, ``"RGBA"``)."""
        if self.kind == "npy":
            return self._load_row(stem)
        from PIL import Image

        path = self.files[stem]
        with Image.open(path) as im:  # header only: the mode before conversion
            mode = im.mode
        return decode_image(path, min_side=None), mode

    def with_stems(self, stems: Sequence[str], *, label: str = "the .npy array") -> ImageSource:
        """This array with its rows named by ``stems`` (same length, no duplicates).

        Raises
        ------
        ConfigError
            If this is a folder, or ``stems`` has the wrong length or duplicates.
        """
        if self.kind != "npy":
            raise ConfigError(
                f"{label} {self.path} is a folder, whose files are named by their stems; "
                "--order only names the rows of a .npy array."
            )
        stems = _checked_order(stems, len(self.stems), label, self.path)
        return dataclasses.replace(
            self, stems=stems, named=True, rows={s: i for i, s in enumerate(stems)}
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready description: path, kind, number of images."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "n_images": len(self.stems),
            "n_ambiguous": len(self.ambiguous),
        }

    def _load_row(self, stem: str) -> tuple[Image.Image, str]:
        from PIL import Image

        i = self.rows[stem]
        assert self.array is not None
        row = np.asarray(self.array[i])
        if self.layout == "NCHW":
            row = np.moveaxis(row, 0, -1)
        if row.dtype != np.uint8:
            row = _quantised(row, self.path, i, stem)
        image = Image.fromarray(np.ascontiguousarray(row))  # (H, W): L; (H, W, 3): RGB
        return image.convert("RGB"), image.mode


def read_image_source(
    path: str | os.PathLike | ImageSource,
    *,
    order: Sequence[str] | None = None,
    label: str = "image source",
) -> ImageSource:
    """Read a folder of images or a ``.npy`` array of images (see the module docstring).

    Parameters
    ----------
    path : path-like or ImageSource
        A folder, or a ``.npy`` file; an :class:`ImageSource` is returned as is (or
        renamed by ``order``).
    order : sequence of str, optional
        ``.npy`` only: the stem of each row, in row order (its length must be ``n``).
        Without it rows are named ``"0000"``, ``"0001"``, ... (:attr:`ImageSource.named`
        is False).
    label : str
        How messages name the source (``"--recon"``, ``"--gt"``).

    Returns
    -------
    ImageSource

    Raises
    ------
    MissingDataFileError
        If ``path`` does not exist.
    DataFormatError
        If a folder holds no image file, or an array has an unsupported shape or dtype,
        or cannot be read without pickle.
    ConfigError
        If ``order`` is given for a folder, or does not match the array.
    """
    if isinstance(path, ImageSource):
        return path if order is None else path.with_stems(order, label=label)
    path = Path(path)
    if path.is_dir():
        if order is not None:
            raise ConfigError(
                f"{label} {path} is a folder, whose files are named by their stems; "
                "--order only names the rows of a .npy array."
            )
        return _read_folder(path, label)
    if not path.exists():
        raise MissingDataFileError(
            f"{label} {path} does not exist; pass a folder of images or a .npy array."
        )
    if path.suffix.lower() != ".npy":
        raise DataFormatError(
            f"{label} {path} is neither a folder nor a .npy file; pass a folder of images "
            f"({', '.join(IMAGE_SUFFIXES)}) or a .npy array of shape (n, H, W, 3)."
        )
    source = _read_npy(path, label)
    return source if order is None else source.with_stems(order, label=label)


def read_order_file(path: str | os.PathLike) -> tuple[str, ...]:
    """The stems listed in an ``--order`` file: one per line, in row order.

    Surrounding whitespace and empty lines are ignored; a line that names a file
    (``a.png``) stands for its stem.

    Raises
    ------
    MissingDataFileError
        If the file does not exist.
    ConfigError
        If it lists no stem or a stem twice.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(f"--order file {path} does not exist.")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    stems = tuple(_stem_of(ln) for ln in lines if ln)
    if not stems:
        raise ConfigError(f"--order file {path} lists no stem (one per line expected).")
    return _checked_order(stems, len(stems), "--order file", path)


def _stem_of(name: str) -> str:
    return Path(name).stem if name.lower().endswith(IMAGE_SUFFIXES) else name


def _checked_order(stems: Sequence[str], n: int, label: str, path: Path) -> tuple[str, ...]:
    """``stems`` as a tuple, or a :class:`ConfigError` if its length or uniqueness is wrong."""
    if isinstance(stems, (str, bytes)):
        raise ConfigError("--order must be a sequence of stems, not one string.")
    stems = tuple(str(s) for s in stems)
    if len(stems) != n:
        raise ConfigError(
            f"--order lists {len(stems)} stems but {label} {path} holds {n} images; "
            "the order file needs exactly one stem per row of the array, in row order."
        )
    dupes = sorted(s for s, c in Counter(stems).items() if c > 1)
    if dupes:
        raise ConfigError(
            f"--order lists {len(dupes)} stems more than once ({', '.join(dupes[:_SHOWN])}); "
            "each row of the array needs its own stem."
        )
    return stems


def _read_folder(path: Path, label: str) -> ImageSource:
    """A folder source: unambiguous image files keyed by stem, ambiguous stems set apart."""
    by_stem: dict[str, list[Path]] = {}
    ignored = 0
    subfolders = 0
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            subfolders += 1
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(entry.stem, []).append(entry)
        else:
            ignored += 1
    if not by_stem:
        sub = f" (it has {subfolders} subfolders; folders are not searched recursively)"
        raise DataFormatError(
            f"{label} folder {path} holds no image file ({', '.join(IMAGE_SUFFIXES)}, any "
            f"case){sub if subfolders else ''}."
        )
    files = {s: ps[0] for s, ps in by_stem.items() if len(ps) == 1}
    ambiguous = {s: tuple(p.name for p in ps) for s, ps in by_stem.items() if len(ps) > 1}
    notes = []
    if ignored or subfolders:
        notes.append(
            f"{label} {path}: {ignored} non-image files and {subfolders} subfolders ignored "
            "(only image files directly in the folder are read)"
        )
    return ImageSource(
        path=path,
        kind="folder",
        stems=tuple(sorted(files)),
        ambiguous=ambiguous,
        notes=tuple(notes),
        files=files,
    )


def _read_npy(path: Path, label: str) -> ImageSource:
    """An array source with default row names; shape and dtype checked, pixels not yet read."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataFormatError(
            f"{label} {path} cannot be read as a numeric .npy array ({exc}); save the "
            "images with np.save(path, images) as uint8 or float, not as objects."
        ) from exc
    if not isinstance(array, np.ndarray):  # pragma: no cover - np.load of .npy
        raise DataFormatError(f"{label} {path} does not hold one array.")
    layout = _layout(array.shape, label, path)
    if not (array.dtype == np.uint8 or np.issubdtype(array.dtype, np.floating)):
        raise DataFormatError(
            f"{label} {path} has dtype {array.dtype}; images must be uint8 in [0, 255] or "
            "float in [0, 1] (convert with images.astype(np.uint8) if they hold 0-255 values)."
        )
    n = len(array)
    width = max(4, len(str(n - 1)))
    stems = tuple(f"{i:0{width}d}" for i in range(n))
    notes = []
    if array.dtype != np.uint8:
        notes.append(
            f"{label} {path} holds {array.dtype} pixels in [0, 1]; they are rounded to 8 bits "
            "(round(x·255)) before the protocol's PIL resize"
        )
    return ImageSource(
        path=path,
        kind="npy",
        stems=stems,
        named=False,
        notes=tuple(notes),
        array=array,
        layout=layout,
        rows={s: i for i, s in enumerate(stems)},
    )


def _layout(shape: tuple[int, ...], label: str, path: Path) -> str:
    """``"NHWC"``, ``"NCHW"`` or ``"NHW"`` for an image array shape, else a DataFormatError."""
    if len(shape) == 4 and shape[-1] == 3:
        layout = "NHWC"
    elif len(shape) == 4 and shape[1] == 3:
        layout = "NCHW"
    elif len(shape) == 3:
        layout = "NHW"
    else:
        raise DataFormatError(
            f"{label} {path} has shape {shape}; expected (n, H, W, 3), (n, 3, H, W) or "
            "(n, H, W) for grayscale."
        )
    if 0 in shape:
        raise DataFormatError(f"{label} {path} has shape {shape}: it holds no image.")
    return layout


def _quantised(row: np.ndarray, path: Path, i: int, stem: str) -> np.ndarray:
    """Float pixels in ``[0, 1]`` as uint8, or a DataFormatError that says how to convert."""
    row = row.astype(np.float64, copy=False)
    if not np.isfinite(row).all():
        raise DataFormatError(f"{path} row {i} ({stem}) contains NaN or infinite values.")
    lo, hi = float(row.min()), float(row.max())
    if lo < -_FLOAT_SLACK or hi > 1 + _FLOAT_SLACK:
        raise DataFormatError(
            f"{path} row {i} ({stem}) has float values in [{lo:.4g}, {hi:.4g}]; float "
            f"images must be in [0, 1]. {_range_hint(lo, hi)}"
        )
    return np.rint(np.clip(row, 0.0, 1.0) * 255.0).astype(np.uint8)


def _range_hint(lo: float, hi: float) -> str:
    if lo >= -1 - _FLOAT_SLACK and hi <= 1 + _FLOAT_SLACK:
        return (
            "It looks like [-1, 1] (a diffusion VAE's output): save "
            "np.clip((x + 1) / 2, 0, 1) instead."
        )
    if lo >= 0 and hi <= 255:
        return "It looks like 0-255 values: save x.astype(np.uint8) (or x / 255) instead."
    return "Rescale the array to [0, 1] (or uint8 [0, 255]) and save it again."


# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class ImagePairs:
    """Ground truths and reconstructions paired by stem, with what was left out and why.

    Attributes
    ----------
    stems : tuple of str
        The evaluated pairs, sorted by stem.
    true : list of PIL.Image.Image
        RGB ground truths, aligned with ``stems`` (original size).
    pred : list of PIL.Image.Image
        RGB reconstructions, aligned with ``stems`` (original size).
    excluded : dict of str to str
        Stem -> why it is not evaluated (missing reconstruction, missing ground truth,
        unreadable file with path and error, blank reconstruction, ambiguous stem).
    blank : tuple of str
        Stems whose reconstruction is blank (:func:`is_blank`); excluded unless
        ``keep_blank``, in which case they are in ``stems`` too.
    notes : tuple of str
        One line per observation: size differences, mode conversions, the ``.npy``
        order assumption.
    reasons : dict of str to tuple of str
        Stem -> the reason categories behind ``excluded[stem]`` (for counting).
    sources : dict of str to dict
        ``"recon"`` / ``"gt"`` -> :meth:`ImageSource.describe`.
    """

    stems: tuple[str, ...]
    true: list[Image.Image]
    pred: list[Image.Image]
    excluded: dict[str, str] = field(default_factory=dict)
    blank: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    reasons: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.stems)

    def reason_counts(self) -> dict[str, int]:
        """How many excluded stems each reason category accounts for (a stem may have two)."""
        counts: Counter[str] = Counter()
        for cats in self.reasons.values():
            counts.update(cats)
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: counts, exclusions with reasons, blank stems, notes, sources."""
        return {
            "n_pairs": len(self.stems),
            "n_excluded": len(self.excluded),
            "excluded_by_reason": self.reason_counts(),
            "excluded": dict(sorted(self.excluded.items())),
            "n_blank": len(self.blank),
            "blank": list(self.blank),
            "blank_evaluated": bool(set(self.blank) & set(self.stems)),
            "notes": list(self.notes),
            "sources": dict(self.sources),
        }


def is_blank(image: Image.Image) -> bool:
    """Whether an image is (near-)constant, as safety-filtered or failed generations are.

    The rule: in every RGB channel, ``max - min <= BLANK_MAX_RANGE`` (2 of 255).  A
    safety checker's all-black output, a uniform gray failure and such an image after
    JPEG compression (which adds ±1 ripples) are blank; any real picture, even a dark
    or foggy one, spans more than 2 levels somewhere.

    Parameters
    ----------
    image : PIL.Image.Image
        Any mode (converted to RGB for the test).

    Returns
    -------
    bool
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return all(hi - lo <= BLANK_MAX_RANGE for lo, hi in rgb.getextrema())


def pair_images(
    recon: str | os.PathLike | ImageSource,
    gt: str | os.PathLike | ImageSource,
    *,
    order: Sequence[str] | None = None,
    keep_blank: bool = False,
) -> ImagePairs:
    """Load and pair reconstructions with their ground truths by stem.

    Parameters
    ----------
    recon, gt : path-like or ImageSource
        ``--recon`` and ``--gt``: each a folder of images or a ``.npy`` array.
    order : sequence of str, optional
        ``--order``: the stem of each row of the ``.npy`` side(s).  Without it, a
        ``.npy`` side facing a folder with as many stems takes the folder's sorted
        stems (stated in the notes); two ``.npy`` sides are paired row by row.
    keep_blank : bool
        ``--keep-blank``: evaluate blank reconstructions instead of excluding them
        (they stay listed in :attr:`ImagePairs.blank`).

    Returns
    -------
    ImagePairs
        Every pair that can be evaluated; each other stem in ``excluded`` with its reason.

    Raises
    ------
    ConfigError
        If a ``.npy`` side has no ``--order`` and its count does not match the other
        side, or ``--order`` does not fit, or ``--order`` is given with two folders.
    DataFormatError
        If no valid pair is left (the message counts the reasons), or a source cannot
        be read at all.
    MissingDataFileError
        If a path does not exist.
    """
    rec_src, gt_src = _read_sides(recon, gt, order)
    rec_src, gt_src, order_notes = _aligned(rec_src, gt_src)
    reasons = _structural_reasons(rec_src, gt_src)
    loaded = _load_pairs(rec_src, gt_src, reasons, keep_blank)
    if not loaded.stems:
        raise _nothing_left_error(rec_src, gt_src, reasons, loaded.blank)
    notes = [
        *rec_src.notes,
        *gt_src.notes,
        *order_notes,
        *_same_source_note(rec_src, gt_src),
        *_size_notes(loaded.true, loaded.pred),
        *_mode_notes(loaded.modes),
        *_blank_notes(loaded.blank, keep_blank),
    ]
    return ImagePairs(
        stems=tuple(loaded.stems),
        true=loaded.true,
        pred=loaded.pred,
        excluded={s: "; ".join(d for _, d in rs) for s, rs in sorted(reasons.items())},
        blank=tuple(loaded.blank),
        notes=tuple(notes),
        reasons={s: tuple(c for c, _ in rs) for s, rs in sorted(reasons.items())},
        sources={"recon": rec_src.describe(), "gt": gt_src.describe()},
    )


def _read_sides(
    recon: str | os.PathLike | ImageSource,
    gt: str | os.PathLike | ImageSource,
    order: Sequence[str] | None,
) -> tuple[ImageSource, ImageSource]:
    """Both sources, ``order`` applied to the ``.npy`` side(s) only."""
    rec_src = read_image_source(recon, label="--recon")
    gt_src = read_image_source(gt, label="--gt")
    if order is None:
        return rec_src, gt_src
    if rec_src.kind == "folder" and gt_src.kind == "folder":
        raise ConfigError(
            "--order names the rows of a .npy array, but --recon and --gt are both folders, "
            "whose files are paired by stem; drop --order."
        )
    if rec_src.kind == "npy":
        rec_src = rec_src.with_stems(order, label="--recon")
    if gt_src.kind == "npy":
        gt_src = gt_src.with_stems(order, label="--gt")
    return rec_src, gt_src


def _aligned(rec: ImageSource, gt: ImageSource) -> tuple[ImageSource, ImageSource, list[str]]:
    """Name unnamed ``.npy`` rows after the other side; the notes that state the assumption."""
    notes = [
        f"{label} {src.path}: rows named by --order ({len(src)} stems)"
        for label, src in (("--recon", rec), ("--gt", gt))
        if src.kind == "npy" and src.named
    ]
    if rec.named and gt.named:
        return rec, gt, notes
    if not rec.named and not gt.named:
        if len(rec) != len(gt):
            raise ConfigError(
                f"--recon {rec.path} holds {len(rec)} images and --gt {gt.path} holds "
                f"{len(gt)}, so they cannot be paired row by row; pass --order FILE (a text "
                "file with one stem per line, in row order) naming the rows of both."
            )
        notes.append(
            f"--recon and --gt are both .npy arrays without --order: paired row by row "
            f"({len(rec)} rows, named {rec.stems[0]}..{rec.stems[-1]})"
        )
        return rec, gt, notes
    if not rec.named:
        rec, note = _named_after(rec, "--recon", gt, "--gt")
    else:
        gt, note = _named_after(gt, "--gt", rec, "--recon")
    notes.append(note)
    return rec, gt, notes


def _named_after(
    array: ImageSource, label: str, other: ImageSource, other_label: str
) -> tuple[ImageSource, str]:
    """``array``'s rows named after ``other``'s stems, and the note saying so.

    A folder's stems are taken sorted (ambiguous ones included: the array presumably
    has a row for them); a named array's stems in its row order (row-by-row pairing).
    """
    if other.kind == "folder":
        stems = sorted({*other.stems, *other.ambiguous})
        what = f"the sorted stems of {other_label} folder {other.path}"
    else:
        stems = list(other.stems)
        what = f"the rows of {other_label} {other.path} (paired row by row)"
    if len(stems) != len(array):
        raise ConfigError(
            f"{label} {array.path} is a .npy array of {len(array)} images without --order, "
            f"and {other_label} {other.path} has {len(stems)} stems, so the rows cannot be "
            "named after it; pass --order FILE (a text file with one stem per line, in the "
            "array's row order)."
        )
    note = (
        f"{label} {array.path} has no --order: its {len(array)} rows are assumed to follow "
        f"{what} ({stems[0]} .. {stems[-1]}); pass --order FILE if the array was written "
        "in another order"
    )
    if other.kind == "folder" and stems != sorted(stems, key=_natural_key):
        note += f" (string order, not numeric: e.g. {_numeric_misorder_example(stems)})"
    return array.with_stems(stems, label=label), note


def _natural_key(stem: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", stem) if t]


def _numeric_misorder_example(stems: list[str]) -> str:
    """Two adjacent stems whose string order differs from their numeric order."""
    for a, b in itertools.pairwise(stems):
        if _natural_key(a) > _natural_key(b):
            return f"{a} before {b}"
    return ""  # pragma: no cover - only called when the orders differ


_Reasons = dict[str, list[tuple[str, str]]]
"""Stem -> [(category, detail)]: why the stem is not evaluated."""


def _structural_reasons(rec: ImageSource, gt: ImageSource) -> _Reasons:
    """Reasons that need no decoding: stems missing on one side, ambiguous stems."""
    reasons: _Reasons = {}
    everything = {*rec.stems, *rec.ambiguous, *gt.stems, *gt.ambiguous}
    for stem in everything:
        found: list[tuple[str, str]] = []
        for label, src, side in (("--recon", rec, "reconstruction"), ("--gt", gt, "ground truth")):
            if stem in src.ambiguous:
                names = ", ".join(src.ambiguous[stem])
                found.append(
                    ("ambiguous stem", f"ambiguous stem in {label}: {names} in {src.path}")
                )
            elif stem not in src.rows and stem not in src.files:
                found.append((f"missing {side}", f"missing {side} (not in {label} {src.path})"))
        if found:
            reasons[stem] = found
    return reasons


@dataclass
class _Loaded:
    stems: list[str] = field(default_factory=list)
    true: list[Image.Image] = field(default_factory=list)
    pred: list[Image.Image] = field(default_factory=list)
    blank: list[str] = field(default_factory=list)
    modes: Counter[tuple[str, str]] = field(default_factory=Counter)


def _load_pairs(rec: ImageSource, gt: ImageSource, reasons: _Reasons, keep_blank: bool) -> _Loaded:
    """Decode each stem present on both sides once; add unreadable and blank stems to ``reasons``."""
    out = _Loaded()
    for stem in sorted(set(rec.stems) & set(gt.stems) - set(reasons)):
        pred, pred_problem = _load_one(rec, stem, "reconstruction", "--recon")
        true, true_problem = _load_one(gt, stem, "ground truth", "--gt")
        problems = [p for p in (pred_problem, true_problem) if p]
        if true is not None and is_blank(true[0]):
            problems.append(
                ("blank ground truth", "blank ground truth (constant image: PixCorr undefined)")
            )
        if pred is not None and is_blank(pred[0]):
            out.blank.append(stem)
            if not keep_blank:
                problems.append(
                    (
                        "blank reconstruction",
                        f"blank reconstruction (max - min <= {BLANK_MAX_RANGE} of 255 in "
                        "every channel; pass --keep-blank to evaluate it)",
                    )
                )
        if problems:
            reasons[stem] = problems
            continue
        assert pred is not None and true is not None
        out.stems.append(stem)
        out.pred.append(pred[0])
        out.true.append(true[0])
        out.modes[("reconstruction", pred[1])] += 1
        out.modes[("ground truth", true[1])] += 1
    return out


def _load_one(
    src: ImageSource, stem: str, side: Side, label: str
) -> tuple[tuple[Image.Image, str] | None, tuple[str, str] | None]:
    """``((image, mode), None)``, or ``(None, (category, detail))`` for a file that fails to decode."""
    try:
        return src.load_with_mode(stem), None
    except decode_errors() as exc:
        if isinstance(exc, DataFormatError):
            raise
        where = src.files.get(stem, src.path)
        detail = f"unreadable {side}: {where} ({str(exc) or type(exc).__name__})"
        return None, (f"unreadable {side}", detail)


def _same_source_note(rec: ImageSource, gt: ImageSource) -> list[str]:
    if rec.path.resolve() == gt.path.resolve():
        return [f"--recon and --gt are the same {rec.kind} ({rec.path}): every score is perfect"]
    return []


def _size_notes(true: list[Image.Image], pred: list[Image.Image]) -> list[str]:
    """One note on size differences and aspect ratio, or none when all pairs match and are square."""
    n = len(true)
    differ = sum(t.size != p.size for t, p in zip(true, pred))
    non_square = sum(im.width != im.height for im in (*true, *pred))
    resize = (
        f"resized to {PROTOCOL_SIZE}×{PROTOCOL_SIZE} for PixCorr/SSIM (PIL bilinear, "
        "antialiased), aspect ratio not kept"
    )
    if differ:
        return [
            f"{differ} of {n} pairs differ in size (width×height; reconstructions: "
            f"{_size_summary(pred)}; ground truths: {_size_summary(true)}); both are {resize}"
        ]
    if non_square:
        return [
            f"reconstructions and ground truths have the same sizes ({_size_summary(true)}); "
            f"non-square images are {resize}"
        ]
    return []


def _size_summary(images: Iterable[Image.Image], shown: int = 3) -> str:
    counts = Counter(im.size for im in images).most_common()
    text = ", ".join(f"{w}×{h} ({c})" for (w, h), c in counts[:shown])
    rest = len(counts) - shown
    return text + (f", {rest} other sizes" if rest > 0 else "")


def _mode_notes(modes: Counter[tuple[str, str]]) -> list[str]:
    notes = []
    for (side, mode), count in sorted(modes.items()):
        if mode != "RGB":
            what = _MODE_NAMES.get(mode, mode)
            noun, verb = (side, "was") if count == 1 else (f"{side}s", "were")
            notes.append(f"{count} {noun} {verb} {what}, converted to RGB")
    return notes


def _blank_notes(blank: list[str], keep_blank: bool) -> list[str]:
    if not blank:
        return []
    action = (
        "evaluated anyway (--keep-blank; PixCorr is nan for an exactly constant image)"
        if keep_blank
        else "excluded (pass --keep-blank to evaluate them)"
    )
    count = "1 reconstruction is" if len(blank) == 1 else f"{len(blank)} reconstructions are"
    return [
        f"{count} blank (e.g. {', '.join(blank[:_SHOWN])}): "
        f"safety-filtered or failed generations, {action}"
    ]


def _nothing_left_error(
    rec: ImageSource, gt: ImageSource, reasons: _Reasons, blank: list[str]
) -> DataFormatError:
    """The error for "no valid pair": counts per reason, a few stems each, and a hint."""
    by_cat: dict[str, list[str]] = {}
    for stem, rs in sorted(reasons.items()):
        for cat, _ in rs:
            by_cat.setdefault(cat, []).append(stem)
    parts = [
        f"{len(stems)} {cat} (e.g. {', '.join(stems[:_SHOWN])})"
        for cat, stems in sorted(by_cat.items(), key=lambda kv: -len(kv[1]))
    ]
    msg = (
        f"No image pair left to evaluate between --recon {rec.path} ({len(rec)} images) and "
        f"--gt {gt.path} ({len(gt)} images): {'; '.join(parts)}."
    )
    if not set(rec.stems) & set(gt.stems):
        msg += (
            f" The two sides share no stem (reconstructions are named like "
            f"{_examples(rec)}, ground truths like {_examples(gt)}): name each "
            "reconstruction after its ground truth's file stem, or name the rows of a .npy "
            "with --order FILE."
        )
    if blank and "blank reconstruction" in by_cat:
        msg += " Pass --keep-blank to evaluate blank reconstructions anyway."
    unreadable = [c for c in by_cat if c.startswith("unreadable")]
    if unreadable:
        msg += " Replace the damaged files with intact copies (a truncated copy causes this)."
    return DataFormatError(msg)


def _examples(src: ImageSource, n: int = 2) -> str:
    stems = list(src.stems[:n]) or list(src.ambiguous)[:n]
    return ", ".join(repr(s) for s in stems)
