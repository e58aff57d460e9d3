"""Labelled image databases: ImageNet-style folders and class-prototype stores.

An :class:`ImageDatabase` is an ordered, typed list of image files with one WordNet
id per image.  Its order is deterministic (plain code-point sort of class folders,
then of file names), so feature shards computed from it are reproducible and an
interrupted extraction can resume.

Supported folder layouts (``layout="auto"`` detects them):

``"wnid"``
    ILSVRC train: ``<root>/<wnid>/*.JPEG`` (``<root>/train/<wnid>/...`` also found).
``"wnid-images"``
    Tiny ImageNet: ``<root>/<wnid>/images/*.JPEG``.
``"class-name"``
    Class-name folders (e.g. the Kaggle "imagenet-256" release): ``<root>/<name>/*.jpg``;
    names are mapped to WordNet ids with :func:`fmri2image.imagenet.resolve_class_name`,
    overridable with a class map (JSON object or two-column CSV, folder -> wnid).
``"flat"``
    One folder of images (GOD stimuli, ILSVRC val); a file named ``n01518878_10042.JPEG``
    gets the wnid ``n01518878``, other files the empty label ``""``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from fmri2image._io import tqdm_kwargs
from fmri2image.errors import ConfigError, DataFormatError, MissingImageError
from fmri2image.imagenet import imagenet1k_wnids, is_wnid, resolve_class_name

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.base import Encoder
    from fmri2image.features.shards import FeatureStore

__all__ = [
    "IMAGE_EXTENSIONS",
    "ClassResolution",
    "ImageDatabase",
    "class_prototype_database",
    "load_class_map",
    "resolve_class_folders",
    "scan_image_folder",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
Layout = Literal["auto", "wnid", "wnid-images", "class-name", "flat"]
_WNID_PREFIX = re.compile(r"^(n\d{8})_")


@dataclass(frozen=True)
class ImageDatabase:
    """An ordered list of labelled images.

    Attributes
    ----------
    paths : tuple of str, length n_images
        Absolute file paths, in extraction order.
    wnids : tuple of str, length n_images
        WordNet id of each image (``""`` when unlabelled).
    root : Path or None
        Folder the database was scanned from; paths are hashed relative to it, so
        moving the folder keeps the image-list hash.
    layout : str
        ``"wnid"``, ``"wnid-images"``, ``"class-name"``, ``"flat"`` or ``"list"``.
    class_folders : dict
        Folder name -> wnid, for folder layouts (empty for lists).
    """

    paths: tuple[str, ...]
    wnids: tuple[str, ...]
    root: Path | None = None
    layout: str = "list"
    class_folders: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.wnids):
            raise ConfigError(
                f"ImageDatabase got {len(self.paths)} paths but {len(self.wnids)} wnids; "
                "pass one WordNet id per image (or none at all)."
            )

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | os.PathLike],
        wnids: Sequence[str] | None = None,
        *,
        root: str | os.PathLike | None = None,
    ) -> ImageDatabase:
        """Database from an explicit list of files (order kept as given).

        Parameters
        ----------
        paths : iterable of path-like, length n_images
            Image files.
        wnids : sequence of str, length n_images, optional
            Labels; by default taken from ``nXXXXXXXX_*`` file names, else ``""``.
        root : path-like, optional
            Base folder for the order-independent hash; defaults to the common
            parent folder of ``paths``.
        """
        abs_paths = tuple(str(Path(p).absolute()) for p in paths)
        if wnids is None:
            wnids = tuple(_wnid_from_filename(p) for p in abs_paths)
        if root is None and abs_paths:
            root = os.path.commonpath([os.path.dirname(p) for p in abs_paths])
        return cls(
            paths=abs_paths,
            wnids=tuple(wnids),
            root=Path(root).absolute() if root is not None else None,
            layout="list",
        )

    # -- views --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def relpaths(self) -> tuple[str, ...]:
        """POSIX paths relative to :attr:`root` (absolute paths when there is no root)."""
        if self.root is None:
            return tuple(Path(p).as_posix() for p in self.paths)
        root = str(self.root)
        return tuple(Path(os.path.relpath(p, root)).as_posix() for p in self.paths)

    @cached_property
    def classes(self) -> tuple[str, ...]:
        """Sorted distinct non-empty wnids."""
        return tuple(sorted({w for w in self.wnids if w}))

    @cached_property
    def labels(self) -> np.ndarray:
        """Index of each image's wnid in :attr:`classes`, shape (n_images,), -1 if unlabelled."""
        lookup = {w: i for i, w in enumerate(self.classes)}
        return np.fromiter((lookup.get(w, -1) for w in self.wnids), dtype=np.int64, count=len(self))

    @cached_property
    def hash(self) -> str:
        """SHA-256 of the ordered (relative path, wnid) list: identifies the image list.

        It does not cover the root or the file contents (moving the folder keeps the
        hash); feature stores record :attr:`resolved_root` and :meth:`file_stats` for
        that.
        """
        h = hashlib.sha256()
        for rel, wnid in zip(self.relpaths, self.wnids):
            h.update(f"{rel}\t{wnid}\n".encode())
        return h.hexdigest()

    def file_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Size and modification time of each file: the cheap input identity.

        Returns two int64 arrays of shape (n_images,): ``st_size`` and ``st_mtime_ns``
        (both ``-1`` for a file that does not exist or cannot be stat'ed, and for the
        empty paths of prototype databases).  Feature stores record them so that a
        resumed extraction notices images that were replaced since their features
        were computed (see :mod:`fmri2image.features.shards`).
        """
        sizes = np.full(len(self), -1, dtype=np.int64)
        mtimes = np.full(len(self), -1, dtype=np.int64)
        for i, p in enumerate(self.paths):
            if not p:
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            sizes[i] = st.st_size
            mtimes[i] = st.st_mtime_ns
        return sizes, mtimes

    @property
    def resolved_root(self) -> str | None:
        """:attr:`root` with symlinks resolved (absolute), or ``None`` without a root."""
        return str(Path(self.root).resolve()) if self.root is not None else None

    def select(self, indices: Sequence[int] | np.ndarray) -> ImageDatabase:
        """A database holding the images at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ImageDatabase(
            paths=tuple(self.paths[i] for i in idx),
            wnids=tuple(self.wnids[i] for i in idx),
            root=self.root,
            layout=self.layout,
            class_folders=dict(self.class_folders),
        )

    def head(self, n: int) -> ImageDatabase:
        """The first ``n`` images."""
        return self.select(np.arange(min(int(n), len(self))))

    def summary(self) -> str:
        return (
            f"{len(self)} images, {len(self.classes)} classes, layout={self.layout}, "
            f"root={self.root}"
        )


# ---------------------------------------------------------------------------------
# Class-name resolution
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassResolution:
    """How folder names were mapped to WordNet ids.

    Attributes
    ----------
    mapping : dict
        Folder name -> wnid, for every resolved folder.
    ambiguous : dict
        Folder name -> candidate wnids, when the name matches several synsets.
    unknown : tuple of str
        Folder names that match no synset lemma.
    """

    mapping: dict[str, str]
    ambiguous: dict[str, tuple[str, ...]]
    unknown: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.ambiguous and not self.unknown


def resolve_class_folders(
    names: Iterable[str], class_map: Mapping[str, str] | None = None
) -> ClassResolution:
    """Map class-folder names to WordNet ids.

    Rule: an explicit ``class_map`` entry wins; a wnid passes through; otherwise a
    name with exactly one ImageNet-1k candidate takes it, and a name with no 1k
    candidate but exactly one ImageNet-21k candidate takes that.  Anything else is
    reported as ambiguous (several candidates) or unknown (none).
    """
    class_map = dict(class_map or {})
    in1k = set(imagenet1k_wnids())
    mapping: dict[str, str] = {}
    ambiguous: dict[str, tuple[str, ...]] = {}
    unknown: list[str] = []
    for name in names:
        if name in class_map:
            wnid = class_map[name]
            if not is_wnid(wnid):
                raise ConfigError(
                    f"The class map sends folder {name!r} to {wnid!r}, which is not a "
                    "WordNet id; use ids of the form 'n01440764'."
                )
            mapping[name] = wnid
            continue
        candidates = resolve_class_name(name)
        among_1k = tuple(c for c in candidates if c in in1k)
        if len(among_1k) == 1:
            mapping[name] = among_1k[0]
        elif not among_1k and len(candidates) == 1:
            mapping[name] = candidates[0]
        elif candidates:
            ambiguous[name] = among_1k or candidates
        else:
            unknown.append(name)
    return ClassResolution(mapping=mapping, ambiguous=ambiguous, unknown=tuple(unknown))


def load_class_map(path: str | os.PathLike) -> dict[str, str]:
    """Read a folder -> wnid map from JSON (an object) or CSV (two columns).

    A CSV may have a header row (``folder,wnid``); it is detected because its second
    cell is not a WordNet id.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Class map {path} does not exist; pass a JSON or CSV file.")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"Class map {path} is not valid JSON ({exc}).") from exc
        if not isinstance(data, dict):
            raise DataFormatError(
                f"Class map {path} must hold one JSON object, e.g. "
                '{"crane": "n02012849", "crane_1": "n03126707"}.'
            )
        return {str(k): str(v) for k, v in data.items()}
    out: dict[str, str] = {}
    for i, row in enumerate(csv.reader(text.splitlines())):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise DataFormatError(
                f"Class map {path}, line {i + 1}: expected 'folder,wnid', got {row!r}."
            )
        name, wnid = row[0].strip(), row[1].strip()
        if i == 0 and not is_wnid(wnid):
            continue  # header
        out[name] = wnid
    return out


# ---------------------------------------------------------------------------------
# Folder scanning
# ---------------------------------------------------------------------------------
def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not name.startswith(".")


def _wnid_from_filename(path: str) -> str:
    m = _WNID_PREFIX.match(os.path.basename(path))
    return m.group(1) if m else ""


def _list_images(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_file() and _is_image(e.name))


def _list_dirs(folder: str) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def scan_image_folder(
    root: str | os.PathLike,
    *,
    layout: Layout = "auto",
    class_map: Mapping[str, str] | str | os.PathLike | None = None,
    unresolved: Literal["error", "skip"] = "error",
    progress: bool = True,
) -> ImageDatabase:
    """Scan an ImageNet-style folder into an :class:`ImageDatabase`.

    Parameters
    ----------
    root : path-like
        The folder holding class folders (or ``train/`` holding them, or images).
    layout : {"auto", "wnid", "wnid-images", "class-name", "flat"}
        Folder layout; ``"auto"`` detects it (see the module docstring).
    class_map : mapping or path-like, optional
        Folder name -> wnid overrides (a dict, or a JSON/CSV file path).
    unresolved : {"error", "skip"}
        What to do with class folders whose name is ambiguous or unknown: raise a
        :class:`~fmri2image.errors.DataFormatError` listing them, or drop them with a
        warning.
    progress : bool
        Show a progress bar over class folders.

    Returns
    -------
    ImageDatabase
        Images sorted by class folder, then file name (code-point order).
    """
    root_path = Path(root).absolute()
    if not root_path.is_dir():
        raise MissingImageError(
            f"Image folder {root_path} does not exist or is not a folder; pass the folder "
            "that holds the class folders (e.g. ILSVRC 'train/')."
        )
    if layout not in ("auto", "wnid", "wnid-images", "class-name", "flat"):
        raise ConfigError(
            f"Unknown image-folder layout {layout!r}; use auto, wnid, wnid-images, "
            "class-name or flat."
        )
    if class_map is not None and not isinstance(class_map, Mapping):
        class_map = load_class_map(class_map)

    dirs = _list_dirs(str(root_path))
    top_images = _list_images(str(root_path))
    if (
        layout in ("auto", "wnid", "wnid-images")
        and "train" in dirs
        and not top_images
        and not any(is_wnid(d) for d in dirs)
    ):
        # An ILSVRC / Tiny ImageNet release root: its labelled images live in train/.
        sub = _list_dirs(str(root_path / "train"))
        if sub and all(is_wnid(d) for d in sub):
            root_path = root_path / "train"
            dirs, top_images = sub, _list_images(str(root_path))

    if layout == "auto":
        if not dirs:
            layout = "flat"
        elif all(is_wnid(d) for d in dirs):
            sample = root_path / dirs[0]
            has_images_sub = (sample / "images").is_dir() and not _list_images(str(sample))
            layout = "wnid-images" if has_images_sub else "wnid"
        else:
            layout = "class-name"

    if layout == "flat":
        names = top_images
        if not names:
            raise MissingImageError(
                f"No image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in {root_path}."
            )
        paths = tuple(str(root_path / n) for n in names)
        return ImageDatabase(
            paths=paths,
            wnids=tuple(_wnid_from_filename(n) for n in names),
            root=root_path,
            layout="flat",
        )

    if layout in ("wnid", "wnid-images"):
        bad = [d for d in dirs if not is_wnid(d) and d not in (class_map or {})]
        if bad:
            raise DataFormatError(
                f"Layout {layout!r} expects WordNet-id folders (n01440764, ...) in "
                f"{root_path}, but found {len(bad)} other folders ({', '.join(bad[:5])}). "
                "Use layout='class-name' (CLI: --layout class-name) or a class map."
            )
        mapping = {d: (class_map or {}).get(d, d) for d in dirs}
    else:
        res = resolve_class_folders(dirs, class_map)
        if not res.ok:
            lines = [f"{n!r} -> {'/'.join(c)}" for n, c in list(res.ambiguous.items())[:10]]
            lines += [f"{n!r} -> (no synset)" for n in res.unknown[:10]]
            msg = (
                f"{len(res.ambiguous)} class folders in {root_path} have ambiguous names and "
                f"{len(res.unknown)} match no WordNet synset: {'; '.join(lines)}"
                f"{' ...' if len(res.ambiguous) + len(res.unknown) > 20 else ''}. "
                "Pass a class map (JSON object or CSV 'folder,wnid'; CLI: --class-map) that "
                "names the wnid of each, or unresolved='skip' (CLI: --skip-unresolved) to "
                "leave those folders out."
            )
            if unresolved == "error":
                raise DataFormatError(msg)
            warnings.warn(msg, stacklevel=2)
        mapping = res.mapping

    from tqdm.auto import tqdm

    kw = tqdm_kwargs(progress)
    paths_out: list[str] = []
    wnids_out: list[str] = []
    for d in tqdm(dirs, desc="scanning class folders", unit="class", **kw):
        if d not in mapping:
            continue
        folder = root_path / d
        if layout == "wnid-images" and (folder / "images").is_dir():
            folder = folder / "images"
        names = _list_images(str(folder))
        paths_out.extend(str(folder / n) for n in names)
        wnids_out.extend([mapping[d]] * len(names))
    if not paths_out:
        raise MissingImageError(
            f"No image files found under the class folders of {root_path} (layout {layout})."
        )
    return ImageDatabase(
        paths=tuple(paths_out),
        wnids=tuple(wnids_out),
        root=root_path,
        layout=layout,
        class_folders={d: mapping[d] for d in dirs if d in mapping},
    )


# ---------------------------------------------------------------------------------
# Class prototypes
# ---------------------------------------------------------------------------------
def class_prototype_database(
    encoder: Encoder | str,
    out_dir: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    store_dtype: Literal["float32", "float16"] = "float32",
) -> FeatureStore:
    """Write an encoder's ImageNet class prototypes as a feature store.

    The rows are the classifier-head weight vectors (one per class, in the embedding
    space, not normalized), labelled with their wnids; retrieval indexes them exactly
    like extracted image features.

    Parameters
    ----------
    encoder : Encoder or str
        An encoder with a classification head (or its registry name).
    out_dir : path-like
        Parent folder; the store goes to ``out_dir/<encoder-name>.prototypes``.

    Returns
    -------
    FeatureStore
        ``n`` = number of classes (1000 for ImageNet-1k heads), ``paths`` empty strings.
    """
    from fmri2image.features.shards import FeatureStoreWriter, open_feature_store, store_dirname

    if isinstance(encoder, str):
        from fmri2image.features import get_encoder

        encoder = get_encoder(encoder, device=device, dtype=dtype)
    protos = encoder.class_prototypes()
    if protos is None:
        raise ConfigError(
            f"Encoder {encoder.name!r} has no classification head, so it has no class "
            "prototypes; build a database from images instead (fmri2image extract "
            "--images DIR) or pick an ImageNet classifier such as effnet-lite0."
        )
    weights, wnids = protos
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or weights.shape[0] != len(wnids) or weights.shape[1] != encoder.dim:
        raise DataFormatError(
            f"Encoder {encoder.name!r} returned prototypes of shape {weights.shape} for "
            f"{len(wnids)} classes and dim {encoder.dim}; expected ({len(wnids)}, {encoder.dim})."
        )
    db = ImageDatabase(paths=("",) * len(wnids), wnids=tuple(wnids), root=None, layout="prototypes")
    store_dir = Path(out_dir) / f"{store_dirname(encoder.name)}.prototypes"
    writer = FeatureStoreWriter.create(
        store_dir,
        database=db,
        spec=encoder.spec.to_dict(),
        config={"kind": "prototypes", "store_dtype": store_dtype, "shard_size": len(wnids)},
        shard_size=max(len(wnids), 1),
        store_dtype=store_dtype,
        kind="prototypes",
        overwrite=True,
    )
    writer.write_shard(0, weights, skipped=[])
    writer.finalize()
    return open_feature_store(store_dir)
