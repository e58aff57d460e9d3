"""On-disk feature stores: sharded ``.npy`` features + ``images.parquet`` + ``manifest.json``.

Layout of one store (one encoder)::

    <store>/manifest.json      encoder spec, config, image-list hash, shard list, versions
    <store>/images.parquet     the full image list: columns ``path`` (relative), ``wnid``
    <store>/shard-00000.npy    float32/float16 array (rows, dim)
    <store>/shard-00001.npy    ...

Shard ``k`` covers images ``[k * shard_size, min((k + 1) * shard_size, n_images))`` of
the image list.  Images that could not be decoded are *dropped* from the shard and
recorded (index, path, reason) in the manifest, so every stored row is a real
embedding; :attr:`FeatureStore.image_index` maps rows back to the image list.  Each
shard file is written atomically and is a pure function of its image range, the
encoder and the config, which is what makes an interrupted extraction resumable
with byte-identical results.

Integrity policy (format version 2)
-----------------------------------
*Recorded.*  Every shard's size and SHA-256 are computed from the bytes while they
are written (no re-read) and stored in its manifest entry.  The manifest records the
input identity: the resolved absolute image root, and per image ``size`` and
``mtime_ns`` (columns of ``images.parquet``, summarized by ``images.stats_hash``),
plus the SHA-256 of ``images.parquet`` itself.  The manifest carries
``manifest_sha256``, the SHA-256 of its own canonical JSON (sorted keys, compact
separators) without that field.

*Checked on every read* (:func:`open_feature_store` and a resume): the manifest
checksum; the structure (unique shard numbers in ``0..n_shards-1``, all of them when
``complete``; each shard's start/stop/rows consistent with ``shard_size``,
``n_images`` and its skipped images, which lie inside its range); the image table's
checksum and row count; each shard file's existence and size.  A violation, or a
truncated manifest / image table / shard, is a
:class:`~fmri2image.errors.DataFormatError` naming the store and the fix (delete
the folder or re-run with ``--overwrite``).

*Checked on resume* (also when the run turns out to have nothing to do): the full
SHA-256 of every finished shard; a missing, changed or damaged shard is recomputed
(a warning names the file), never trusted on its size.  Images whose size or mtime
changed since they were embedded are re-embedded (their shards are recomputed, a
warning names the first changed file).  A different image root is refused with a
:class:`~fmri2image.errors.ConfigError` that names both roots (fix: another output
folder or ``--overwrite``).

*Opt-in on open*: ``open_feature_store(path, verify=True)`` (or
:meth:`FeatureStore.verify`) hashes every shard; hashing runs in threads and reads
at disk speed or at about 1.1-1.6 GB/s per core (measured), whichever is lower (a 6.5 GB
ImageNet-train store takes seconds).

*Old stores* (format version 1: no manifest checksum or input identity) are
unverifiable: a resume logs a warning saying so and recomputes every shard;
:func:`open_feature_store` refuses them with a message to re-run the extraction
with ``--overwrite``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import (
    atomic_write,
    file_sha256,
    package_versions,
)
from fmri2image._manifest import CHECKSUM, manifest_digest, write_manifest
from fmri2image.errors import ConfigError, DataFormatError, MissingDataFileError

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.features.databases import ImageDatabase

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FeatureShard",
    "FeatureStore",
    "FeatureStoreWriter",
    "open_feature_store",
    "store_dirname",
]

logger = logging.getLogger(__name__)


class StoreMismatchError(ConfigError):
    """The folder holds a store made from other images or another config."""


FORMAT = "fmri2image.features"
FORMAT_VERSION = 2
# Oldest format whose manifests carry checksums and the input identity.
_VERIFIABLE_VERSION = 2
MANIFEST = "manifest.json"
IMAGES = "images.parquet"
_STORE_DTYPES = ("float32", "float16")
# Config entries that do not change the numbers; a resumed run may differ in them.
_VOLATILE_CONFIG = frozenset({"num_workers", "executor", "progress", "prefetch_factor"})
_VERSION_PACKAGES = (
    "fmri2image",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "transformers",
    "timm",
    "open-clip-torch",
    "efficientnet-lite-pytorch",
    "ray",
)


def store_dirname(encoder_name: str) -> str:
    """File-system safe folder name for an encoder (``hf:org/model`` -> ``hf_org_model``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name).strip("._") or "encoder"


def shard_filename(k: int) -> str:
    return f"shard-{k:05d}.npy"


def library_versions() -> dict[str, str]:
    """Versions of the packages that affect extracted features (installed ones only)."""
    installed = {k: v for k, v in package_versions(_VERSION_PACKAGES).items() if v}
    return {"python": platform.python_version(), **installed}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_image_table(
    path: Path,
    relpaths: Sequence[str],
    wnids: Sequence[str],
    sizes: np.ndarray,
    mtimes: np.ndarray,
) -> str:
    """Write ``images.parquet`` atomically; returns its SHA-256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmri2image._io import atomic_path

    table = pa.table(
        {
            "path": pa.array(relpaths, pa.string()),
            "wnid": pa.array(wnids, pa.string()),
            "size": pa.array(np.asarray(sizes, dtype=np.int64), pa.int64()),
            "mtime_ns": pa.array(np.asarray(mtimes, dtype=np.int64), pa.int64()),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
        digest = file_sha256(tmp)
    return digest


def _damaged(store: Path, what: str) -> str:
    return (
        f"Feature store {store} is damaged: {what}. Delete the folder, or re-run the "
        "extraction with overwrite=True (CLI: --overwrite) to rebuild it."
    )


def _read_image_table(path: Path, columns: Sequence[str] = ("path", "wnid")) -> list[list]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=list(columns))
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise DataFormatError(
            _damaged(path.parent, f"{path} cannot be read as a Parquet table ({exc})")
        ) from exc
    return [table.column(c).to_pylist() for c in columns]


def _stats_hash(sizes: np.ndarray, mtimes: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(sizes, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(mtimes, dtype="<i8").tobytes())
    return h.hexdigest()


class _HashingWriter:
    """File-like wrapper that hashes and counts the bytes written through it."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.nbytes += view.nbytes
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _save_npy_hashed(path: Path, array: np.ndarray) -> tuple[int, str]:
    """Write ``array`` as ``.npy`` atomically; returns (bytes, SHA-256) of what was written."""
    from numpy.lib import format as npformat

    array = np.ascontiguousarray(array)
    with atomic_write(path, "wb") as fh:
        hw = _HashingWriter(fh)
        header = npformat.header_data_from_array_1_0(array)
        try:  # the bytes np.save writes: a version 1.0 header when it fits, then the data
            npformat.write_array_header_1_0(hw, header)
        except ValueError:  # pragma: no cover - header too long for version 1.0
            npformat.write_array_header_2_0(hw, header)
        if array.size:
            hw.write(memoryview(array).cast("B"))
    return hw.nbytes, hw.sha.hexdigest()


def _hash_files(paths: Sequence[Path]) -> list[str | None]:
    """SHA-256 of each file (``None`` when unreadable), hashed in parallel threads."""

    def one(p: Path) -> str | None:
        try:
            return file_sha256(p)
        except OSError:
            return None

    if len(paths) <= 1:
        return [one(p) for p in paths]
    workers = max(1, min(8, os.cpu_count() or 1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, paths))


def _shard_problems(store: Path, entries: Sequence[Mapping[str, Any]], deep: bool) -> list[str]:
    """Per shard entry: ``""`` if its file is sound, else what is wrong with it.

    ``deep=False`` checks existence and size only; ``deep=True`` also the SHA-256.
    """
    out = []
    for s in entries:
        f = store / s["file"]
        try:
            size = f.stat().st_size
        except OSError:
            out.append(f"{f} is missing")
            continue
        if size != s.get("bytes"):
            out.append(f"{f} has {size} bytes, the manifest says {s.get('bytes')} (truncated?)")
        else:
            out.append("")
    if deep:
        todo = [i for i, p in enumerate(out) if not p]
        digests = _hash_files([store / entries[i]["file"] for i in todo])
        for i, d in zip(todo, digests):
            if d is None:
                out[i] = f"{store / entries[i]['file']} cannot be read"
            elif d != entries[i].get("sha256"):
                out[i] = f"{store / entries[i]['file']} does not match its SHA-256 checksum"
    return out


def _load_manifest(path: Path, hint: str = "") -> dict[str, Any]:
    """Read ``<path>/manifest.json``: missing, non-JSON, foreign or too-new is an error."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise MissingDataFileError(
            f"{path} is not a feature store (no {MANIFEST}). {hint}"
            "Create one with `fmri2image extract`."
        )
    try:
        meta = json.loads(mpath.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(
            _damaged(path, f"{mpath} is not valid JSON ({exc}); it is truncated or corrupt")
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataFormatError(
            f"{mpath} does not describe a feature store (format is not {FORMAT!r})."
        )
    try:
        version = int(meta.get("format_version", 0))
    except (TypeError, ValueError):
        version = -1
    if version > FORMAT_VERSION:
        raise DataFormatError(
            f"{mpath} has format version {meta.get('format_version')}, newer than this "
            f"fmri2image understands ({FORMAT_VERSION}); upgrade fmri2image."
        )
    return meta


def _is_verifiable(manifest: Mapping[str, Any]) -> bool:
    try:
        return int(manifest.get("format_version", 0)) >= _VERIFIABLE_VERSION
    except (TypeError, ValueError):
        return False


def _validate_manifest(path: Path, m: Mapping[str, Any]) -> None:
    """Check the manifest checksum, its structure and the image table (cheap: no shard reads)."""
    if m.get(CHECKSUM) != manifest_digest(m):
        raise DataFormatError(
            _damaged(
                path,
                f"{path / MANIFEST} does not match its own checksum (manifest_sha256); it "
                "was edited or corrupted",
            )
        )
    try:
        problem = _structure_problem(m)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"a field is missing or has the wrong type ({type(exc).__name__}: {exc})"
    if problem:
        raise DataFormatError(_damaged(path, f"{path / MANIFEST} is inconsistent: {problem}"))
    tpath = path / IMAGES
    if not tpath.is_file():
        raise DataFormatError(_damaged(path, f"{tpath} is missing"))
    if file_sha256(tpath) != m["images"].get("table_sha256"):
        raise DataFormatError(
            _damaged(path, f"{tpath} does not match its checksum (truncated or replaced)")
        )
    import pyarrow.parquet as pq

    try:
        n_rows = pq.ParquetFile(tpath).metadata.num_rows
    except Exception as exc:  # pragma: no cover - the checksum matched what we wrote
        raise DataFormatError(
            _damaged(path, f"{tpath} is not a readable Parquet file ({exc})")
        ) from exc
    if n_rows != int(m["images"]["n"]):
        raise DataFormatError(
            _damaged(
                path, f"{tpath} has {n_rows} rows, the manifest says {m['images']['n']} images"
            )
        )


def _structure_problem(m: Mapping[str, Any]) -> str:
    n = int(m["images"]["n"])
    size = int(m["config"]["shard_size"])
    if n < 0 or size < 1:
        return f"n_images={n}, shard_size={size}"
    n_shards = int(m["n_shards"])
    if n_shards != -(-n // size):
        return f"n_shards={n_shards}, but {n} images in shards of {size} make {-(-n // size)}"
    dim = int(m["dim"])
    if dim < 1:
        return f"dim={dim}"
    seen: set[int] = set()
    for s in m["shards"]:
        k = s["k"]
        if not isinstance(k, int) or not 0 <= k < n_shards:
            return f"shard number {k!r} is outside 0..{n_shards - 1}"
        if k in seen:
            return f"shard {k} is listed twice"
        seen.add(k)
        start, stop = k * size, min((k + 1) * size, n)
        if (s["start"], s["stop"]) != (start, stop):
            return f"shard {k} covers {s['start']}..{s['stop']}, expected {start}..{stop}"
        if s["file"] != shard_filename(k):
            return f"shard {k} is stored as {s['file']!r}, expected {shard_filename(k)!r}"
        idx = [d["index"] for d in s["skipped"]]
        if len(set(idx)) != len(idx) or any(not start <= i < stop for i in idx):
            return f"shard {k} lists skipped images outside {start}..{stop - 1} or twice"
        if s["rows"] != stop - start - len(idx):
            return f"shard {k} has {s['rows']} rows, expected {stop - start - len(idx)}"
        if not isinstance(s.get("sha256"), str) or not isinstance(s.get("bytes"), int):
            return f"shard {k} has no checksum"
    if m.get("complete"):
        missing = sorted(set(range(n_shards)) - seen)
        if missing:
            return f"it is marked complete but shards {missing[:10]} are not listed"
        for key, total in (
            ("n_rows", sum(s["rows"] for s in m["shards"])),
            ("n_skipped", sum(len(s["skipped"]) for s in m["shards"])),
        ):
            if key in m and m[key] != total:
                return f"{key}={m[key]}, but the shards add up to {total}"
    return ""


@dataclass(frozen=True)
class FeatureShard:
    """One shard of a store.

    Attributes
    ----------
    k : int
        Shard number.
    start, stop : int
        Image-list range the shard covers.
    features : ndarray of shape (rows, dim)
        Memory-mapped, read-only features (``rows`` = images in range minus skipped).
    image_index : ndarray of shape (rows,)
        Position of each row in the image list.
    """

    k: int
    start: int
    stop: int
    features: np.ndarray
    image_index: np.ndarray


def _shard_image_index(start: int, stop: int, skipped: Sequence[int]) -> np.ndarray:
    idx = np.arange(start, stop, dtype=np.int64)
    if skipped:
        idx = idx[~np.isin(idx, np.asarray(skipped, dtype=np.int64))]
    return idx


class FeatureStore:
    """Read access to a feature store written by the extraction engine.

    Use :func:`open_feature_store` to get one.  Rows are the successfully embedded
    images in image-list order; skipped images are listed in :attr:`skipped`.
    """

    def __init__(self, path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = dict(manifest)

    def __repr__(self) -> str:
        return (
            f"FeatureStore({str(self.path)!r}, encoder={self.encoder_name!r}, n={self.n}, "
            f"dim={self.dim}, complete={self.complete})"
        )

    # -- metadata -------------------------------------------------------------------
    @property
    def encoder(self) -> dict[str, Any]:
        """The encoder's :class:`~fmri2image.features.base.EncoderSpec` as a dict."""
        return self.manifest["encoder"]

    @property
    def encoder_name(self) -> str:
        return self.manifest["encoder"]["name"]

    @property
    def kind(self) -> str:
        """``"images"`` (extracted features) or ``"prototypes"`` (classifier weights)."""
        return self.manifest.get("kind", "images")

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def dtype(self) -> np.dtype:
        """Storage dtype of the shards."""
        return np.dtype(self.manifest["config"]["store_dtype"])

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete", False))

    @property
    def image_list_hash(self) -> str:
        return self.manifest["images"]["hash"]

    @property
    def n_images(self) -> int:
        """Length of the image list (stored rows + skipped + not yet extracted)."""
        return int(self.manifest["images"]["n"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Completed shards (manifest entries), sorted by shard number."""
        return sorted(self.manifest["shards"], key=lambda s: s["k"])

    @property
    def n(self) -> int:
        """Number of stored feature rows."""
        return int(sum(s["rows"] for s in self.shards))

    @property
    def skipped(self) -> list[dict[str, Any]]:
        """Images that could not be embedded: dicts with ``index``, ``path``, ``reason``."""
        out = []
        for s in self.shards:
            out.extend(s["skipped"])
        return out

    # -- image list -----------------------------------------------------------------
    @cached_property
    def _image_table(self) -> tuple[list[str], list[str]]:
        return _read_image_table(self.path / IMAGES)

    @cached_property
    def image_index(self) -> np.ndarray:
        """Row -> image-list position, shape (n,)."""
        parts = [
            _shard_image_index(s["start"], s["stop"], [d["index"] for d in s["skipped"]])
            for s in self.shards
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @cached_property
    def wnids(self) -> tuple[str, ...]:
        """WordNet id of each stored row, length n."""
        all_wnids = self._image_table[1]
        return tuple(all_wnids[i] for i in self.image_index)

    @cached_property
    def paths(self) -> tuple[str, ...]:
        """Image path of each stored row (absolute when the root is known), length n."""
        rel = self._image_table[0]
        root = self.manifest["images"].get("root")
        if root is None:
            return tuple(rel[i] for i in self.image_index)
        return tuple(str(Path(root) / rel[i]) if rel[i] else "" for i in self.image_index)

    def database(self) -> ImageDatabase:
        """The full image list the store was extracted from."""
        from fmri2image.features.databases import ImageDatabase

        rel, wnids = self._image_table
        root = self.manifest["images"].get("root")
        paths = tuple(str(Path(root) / r) if root and r else r for r in rel)
        return ImageDatabase(
            paths=paths,
            wnids=tuple(wnids),
            root=Path(root) if root else None,
            layout=self.manifest["images"].get("layout", "list"),
        )

    # -- features -------------------------------------------------------------------
    def iter_shards(self) -> Iterator[FeatureShard]:
        """Yield the shards in order, features memory-mapped (read-only)."""
        for s in self.shards:
            fpath = self.path / s["file"]
            try:
                feats = np.load(fpath, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataFormatError(
                    _damaged(self.path, f"shard {fpath} cannot be read as a .npy array ({exc})")
                ) from exc
            idx = _shard_image_index(s["start"], s["stop"], [d["index"] for d in s["skipped"]])
            if feats.shape != (len(idx), self.dim):
                raise DataFormatError(
                    f"Shard {self.path / s['file']} has shape {feats.shape}, but the manifest "
                    f"says ({len(idx)}, {self.dim}); the store is damaged. Re-run the "
                    "extraction with overwrite (CLI: --overwrite)."
                )
            yield FeatureShard(
                k=int(s["k"]),
                start=int(s["start"]),
                stop=int(s["stop"]),
                features=feats,
                image_index=idx,
            )

    def load(self, dtype: np.dtype | str | None = np.float32) -> np.ndarray:
        """All features in memory, shape (n, dim); ``dtype=None`` keeps the storage dtype."""
        out = np.empty((self.n, self.dim), dtype=dtype or self.dtype)
        row = 0
        for shard in self.iter_shards():
            m = shard.features.shape[0]
            out[row : row + m] = shard.features
            row += m
        return out

    def verify(self) -> None:
        """Check every shard's size and SHA-256 against the manifest (raises on mismatch).

        Shards are hashed in parallel threads; the cost is reading the store once.
        """
        problems = [p for p in _shard_problems(self.path, self.shards, deep=True) if p]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DataFormatError(
                f"Feature store {self.path} is damaged: {problems[0]}{more}. Run the same "
                "extract command again to recompute the damaged shards, or delete the "
                "folder (or re-run with --overwrite) to rebuild it."
            )


def open_feature_store(
    path: str | os.PathLike, *, allow_incomplete: bool = False, verify: bool = False
) -> FeatureStore:
    """Open a feature store folder (one encoder) for reading.

    The manifest's checksum and structure, the image table's checksum and row count
    and every shard file's size are always checked (cheap: no shard is read); see
    the module docstring for the policy.

    Parameters
    ----------
    path : path-like
        The store folder (``<out>/<encoder-name>``) holding ``manifest.json``.
    allow_incomplete : bool
        Open a store whose extraction has not finished (only completed shards are
        visible); by default this raises :class:`~fmri2image.errors.DataFormatError`.
    verify : bool
        Also hash every shard and compare with its recorded SHA-256 (reads the whole
        store once, in parallel threads).

    Raises
    ------
    DataFormatError
        If the store is damaged, inconsistent, incomplete, or was written by an
        older fmri2image without checksums (format version 1).
    """
    path = Path(path)
    hint = ""
    if not (path / MANIFEST).is_file() and path.is_dir():
        subs = sorted(p.name for p in path.iterdir() if (p / MANIFEST).is_file())
        if subs:
            hint = f"It holds the stores {', '.join(subs)}; open one of them. "
    manifest = _load_manifest(path, hint)
    if not _is_verifiable(manifest):
        raise DataFormatError(
            f"Feature store {path} was written by an older fmri2image (format version "
            f"{manifest.get('format_version')}) that recorded no manifest checksum or "
            "input identity, so it cannot be verified. Rebuild it: run the extract "
            "command again with --overwrite (API: overwrite=True)."
        )
    _validate_manifest(path, manifest)
    if not manifest.get("complete") and not allow_incomplete:
        done, total = len(manifest["shards"]), manifest["n_shards"]
        raise DataFormatError(
            f"Feature store {path} is incomplete ({done} of {total} shards); the extraction "
            "was interrupted. Run the same extract command again to resume it, or pass "
            "allow_incomplete=True to read the finished shards."
        )
    problems = [p for p in _shard_problems(path, manifest["shards"], deep=False) if p]
    if problems:
        raise DataFormatError(_damaged(path, problems[0]))
    store = FeatureStore(path, manifest)
    if verify:
        store.verify()
    return store


class FeatureStoreWriter:
    """Creates or resumes a store and records shards as they are written.

    Use :meth:`create`; then :meth:`write_shard` for each pending shard (any order)
    and :meth:`finalize`.  The manifest is rewritten atomically after every shard, so
    a crash at any point leaves a consistent, resumable store.
    """

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        database: ImageDatabase,
        spec: Mapping[str, Any],
        config: Mapping[str, Any],
        shard_size: int,
        store_dtype: str = "float32",
        kind: str = "images",
        overwrite: bool = False,
    ) -> FeatureStoreWriter:
        """Start a store at ``path`` or resume the compatible one already there.

        Raises
        ------
        ConfigError
            If ``path`` holds a store for another image list, encoder or config and
            ``overwrite`` is false.
        """
        path = Path(path)
        if store_dtype not in _STORE_DTYPES:
            raise ConfigError(f"store_dtype must be one of {_STORE_DTYPES}, got {store_dtype!r}.")
        if shard_size < 1:
            raise ConfigError(f"shard_size must be a positive integer, got {shard_size}.")
        n = len(database)
        sizes, mtimes = database.file_stats()
        fresh = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "encoder": dict(spec),
            "dim": int(spec["dim"]),
            "config": {**dict(config), "shard_size": int(shard_size), "store_dtype": store_dtype},
            "images": {
                "file": IMAGES,
                "n": n,
                "hash": database.hash,
                "root": str(database.root) if database.root is not None else None,
                "root_resolved": database.resolved_root,
                "layout": database.layout,
                "stats": "size+mtime_ns",
                "stats_hash": _stats_hash(sizes, mtimes),
                "table_sha256": None,
            },
            "n_shards": -(-n // shard_size),
            "shards": [],
            "complete": False,
            "versions": library_versions(),
            "created": _now(),
            "updated": _now(),
        }
        mpath = path / MANIFEST
        if mpath.is_file() and not overwrite:
            old = _load_manifest(path)
            if _is_verifiable(old):
                _validate_manifest(path, old)
            try:
                problem = _incompatibility(old, fresh)
            except (KeyError, TypeError, AttributeError) as exc:
                raise DataFormatError(
                    _damaged(path, f"{mpath} lacks a field ({type(exc).__name__}: {exc})")
                ) from exc
            if problem:
                raise StoreMismatchError(
                    f"{path} already holds features that differ from this run ({problem}). "
                    "Use another output folder, or overwrite=True (CLI: --overwrite) to "
                    "discard them."
                )
            if _is_verifiable(old):
                if old["config"].get("device") != fresh["config"].get("device"):
                    logger.warning(
                        "resuming %s on device %s; earlier shards came from %s (numbers may "
                        "differ in the last digits)",
                        path,
                        fresh["config"].get("device"),
                        old["config"].get("device"),
                    )
                writer = cls(path, old)
                writer._refresh_inputs(database, sizes, mtimes, fresh["images"]["stats_hash"])
                writer._drop_unsound_shards()
                return writer
            logger.warning(
                "%s was written by an older fmri2image (format version %s) without shard "
                "checksums and input identity, so its shards cannot be verified; all of "
                "them are recomputed",
                path,
                old.get("format_version"),
            )
            overwrite = True
        if overwrite and path.is_dir():
            _clear_store(path)
        path.mkdir(parents=True, exist_ok=True)
        fresh["images"]["table_sha256"] = _write_image_table(
            path / IMAGES, database.relpaths, database.wnids, sizes, mtimes
        )
        writer = cls(path, fresh)
        writer._save()
        return writer

    # -- state ----------------------------------------------------------------------
    @property
    def n_images(self) -> int:
        return int(self.manifest["images"]["n"])

    @property
    def shard_size(self) -> int:
        return int(self.manifest["config"]["shard_size"])

    @property
    def n_shards(self) -> int:
        return int(self.manifest["n_shards"])

    def shard_range(self, k: int) -> tuple[int, int]:
        start = k * self.shard_size
        return start, min(start + self.shard_size, self.n_images)

    @property
    def done(self) -> set[int]:
        return {int(s["k"]) for s in self.manifest["shards"]}

    def pending(self) -> list[int]:
        done = self.done
        return [k for k in range(self.n_shards) if k not in done]

    def _refresh_inputs(
        self, database: ImageDatabase, sizes: np.ndarray, mtimes: np.ndarray, stats_hash: str
    ) -> None:
        """Drop shards holding images whose size or mtime changed; record the new stats."""
        images = self.manifest["images"]
        if images.get("stats_hash") == stats_hash:
            return
        old_sizes, old_mtimes = _read_image_table(self.path / IMAGES, ("size", "mtime_ns"))
        changed = np.flatnonzero(
            (np.asarray(old_sizes, dtype=np.int64) != sizes)
            | (np.asarray(old_mtimes, dtype=np.int64) != mtimes)
        )
        stale = sorted({int(i) // self.shard_size for i in changed} & self.done)
        if stale:
            i = int(changed[0])
            logger.warning(
                "%d images changed (size or mtime) since their features in %s were computed, "
                "first %s (size %d -> %d, mtime_ns %d -> %d); recomputing shards %s",
                len(changed),
                self.path,
                database.paths[i],
                old_sizes[i],
                sizes[i],
                old_mtimes[i],
                mtimes[i],
                stale,
            )
            self.manifest["shards"] = [s for s in self.manifest["shards"] if s["k"] not in stale]
            self.manifest["complete"] = False
        images["table_sha256"] = _write_image_table(
            self.path / IMAGES, database.relpaths, database.wnids, sizes, mtimes
        )
        images["stats_hash"] = stats_hash
        self._save()

    def _drop_unsound_shards(self) -> None:
        """Verify every finished shard (size and SHA-256); drop the ones that fail."""
        entries = self.manifest["shards"]
        problems = _shard_problems(self.path, entries, deep=True)
        keep = []
        for s, problem in zip(entries, problems):
            if problem:
                logger.warning("%s; shard %d will be recomputed", problem, s["k"])
            else:
                keep.append(s)
        if len(keep) != len(entries):
            self.manifest["shards"] = keep
            self.manifest["complete"] = False
            self._save()

    def _save(self) -> None:
        self.manifest["updated"] = _now()
        self.manifest = write_manifest(self.path / MANIFEST, self.manifest)

    # -- writing --------------------------------------------------------------------
    def write_shard(
        self,
        k: int,
        features: np.ndarray,
        skipped: Sequence[tuple[int, str, str]] | Sequence[Mapping[str, Any]],
    ) -> Path:
        """Write shard ``k`` atomically and record it in the manifest.

        Parameters
        ----------
        k : int
            Shard number.
        features : ndarray of shape (rows, dim)
            Embeddings of the shard's images in order, skipped images left out.
        skipped : sequence
            ``(index, path, reason)`` tuples (or dicts) for the skipped images.
        """
        start, stop = self.shard_range(k)
        skipped = [
            dict(s)
            if isinstance(s, Mapping)
            else {"index": int(s[0]), "path": s[1], "reason": s[2]}
            for s in skipped
        ]
        rows = stop - start - len(skipped)
        dim = int(self.manifest["dim"])
        features = np.asarray(features)
        if features.shape != (rows, dim):
            raise DataFormatError(
                f"shard {k} of {self.path}: got features of shape {features.shape}, expected "
                f"({rows}, {dim})."
            )
        dtype = np.dtype(self.manifest["config"]["store_dtype"])
        fname = shard_filename(k)
        fpath = self.path / fname
        nbytes, digest = _save_npy_hashed(fpath, np.ascontiguousarray(features, dtype=dtype))
        entry = {
            "k": int(k),
            "file": fname,
            "start": start,
            "stop": stop,
            "rows": rows,
            "bytes": nbytes,
            "sha256": digest,
            "skipped": sorted(skipped, key=lambda d: d["index"]),
        }
        self.manifest["shards"] = [s for s in self.manifest["shards"] if s["k"] != k] + [entry]
        self.manifest["shards"].sort(key=lambda s: s["k"])
        self._save()
        return fpath

    def seed_from(self, source: str | os.PathLike, paths: Sequence[str]) -> list[int]:
        """Write the pending shards whose images an earlier store already embedded.

        ``source`` is a complete store of the same encoder and configuration over
        another list of images under the same root: typically this database before
        images were added, removed or edited.  A pending shard is written from it
        when every one of its images is in ``source`` under the same relative path
        with the same size and modification time: the rows are copied (an image that
        could not be decoded there is skipped here too, with its reason), so adding
        one image to ImageNet costs one shard of extraction, not all of them.  Each
        source shard is checked against its SHA-256 before a row of it is used.  The
        other shards are left to the extraction.

        Copied rows are bit-identical to the source's; a fresh extraction may differ
        from them in the last float bits where it batches the images differently.
        The manifest records the source and the shards taken from it (``seeded``).

        Parameters
        ----------
        source : path-like
            The earlier store's folder.
        paths : sequence of str
            This store's image paths as the extraction records them (for the
            skipped images' entries).

        Returns
        -------
        list of int
            The shards written.  Empty, with the reason logged, when ``source`` is
            not a usable store for this one (never raises for that).
        """
        source = Path(source)
        try:
            old = _load_manifest(source)
            if not _is_verifiable(old):
                raise DataFormatError("it was written by an older fmri2image")
            _validate_manifest(source, old)
            if not old.get("complete"):
                raise DataFormatError("its extraction did not finish")
            problem = _incompatibility(old, self.manifest, same_images=False)
            if problem:
                raise ConfigError(problem)
            src_rel, src_sizes, src_mtimes = _read_image_table(
                source / IMAGES, ("path", "size", "mtime_ns")
            )
            rel, sizes, mtimes = _read_image_table(self.path / IMAGES, ("path", "size", "mtime_ns"))
        except (DataFormatError, ConfigError, OSError, KeyError, TypeError, AttributeError) as exc:
            logger.info("features of %s not reused: %s", source, exc)
            return []
        # Image of this list -> the same, unchanged image of the source (or -1).
        where = {p: j for j, p in enumerate(src_rel)}
        src = np.fromiter((where.get(p, -1) for p in rel), dtype=np.int64, count=len(rel))
        found = src >= 0
        j = np.where(found, src, 0)
        same = found & (np.asarray(src_sizes, dtype=np.int64)[j] == np.asarray(sizes, np.int64))
        same &= np.asarray(src_mtimes, dtype=np.int64)[j] == np.asarray(mtimes, np.int64)
        # Source image -> (its shard entry, its row there); skipped images -> reason.
        entries = {int(e["k"]): e for e in old["shards"]}
        src_size = int(old["config"]["shard_size"])
        row_in_shard = np.full(len(src_rel), -1, dtype=np.int64)
        reasons: dict[int, str] = {}
        for e in entries.values():
            skipped = [int(d["index"]) for d in e["skipped"]]
            idx = _shard_image_index(int(e["start"]), int(e["stop"]), skipped)
            row_in_shard[idx] = np.arange(idx.size)
            reasons.update((int(d["index"]), str(d["reason"])) for d in e["skipped"])
        verified: set[int] = set()
        mapped: dict[int, np.ndarray] = {}  # the last few source shards read (in order)

        def shard_rows(k: int) -> np.ndarray:
            if k not in mapped:
                if k not in verified:
                    problem = _shard_problems(source, [entries[k]], deep=True)[0]
                    if problem:
                        raise DataFormatError(problem)
                    verified.add(k)
                if len(mapped) >= 4:
                    del mapped[next(iter(mapped))]
                mapped[k] = np.load(source / entries[k]["file"], mmap_mode="r")
            return mapped[k]

        written: list[int] = []
        dim = int(self.manifest["dim"])
        for k in self.pending():
            start, stop = self.shard_range(k)
            if not same[start:stop].all():
                continue
            images = src[start:stop]  # their positions in the source
            kept = row_in_shard[images] >= 0
            skipped = [
                (start + o, paths[start + o], reasons.get(int(images[o]), "skipped in the source"))
                for o in np.flatnonzero(~kept).tolist()
            ]
            # The rows, gathered source shard by source shard, in this shard's order.
            rows = np.empty((int(kept.sum()), dim), dtype=self._store_dtype)
            src_shard, src_row = images[kept] // src_size, row_in_shard[images[kept]]
            try:
                for ks in np.unique(src_shard):
                    take = src_shard == ks
                    rows[take] = shard_rows(int(ks))[src_row[take]]
            except (DataFormatError, OSError, ValueError) as exc:
                logger.warning("features of %s not reused for shard %d: %s", source, k, exc)
                continue
            self.write_shard(k, rows, skipped)
            written.append(k)
        if written:
            seeded = self.manifest.setdefault("seeded", {"from": str(source), "shards": []})
            seeded["shards"] = sorted(set(seeded["shards"]) | set(written))
            self._save()
            logger.info(
                "%d of %d shards of %s taken from %s (their images are unchanged)",
                len(written),
                self.n_shards,
                self.path,
                source,
            )
        return written

    @property
    def _store_dtype(self) -> np.dtype:
        return np.dtype(self.manifest["config"]["store_dtype"])

    def finalize(self) -> bool:
        """Mark the store complete if every shard is written; returns completeness."""
        self.manifest["complete"] = not self.pending()
        self.manifest["n_rows"] = int(sum(s["rows"] for s in self.manifest["shards"]))
        self.manifest["n_skipped"] = int(sum(len(s["skipped"]) for s in self.manifest["shards"]))
        self._save()
        return self.manifest["complete"]


def _incompatibility(
    old: Mapping[str, Any], new: Mapping[str, Any], *, same_images: bool = True
) -> str:
    """Why a store with manifest ``old`` cannot hold this run's features ("" if it
    can); ``same_images=False`` lets the image lists differ (seeding)."""
    if old.get("format") != FORMAT:
        return "its manifest.json is not an fmri2image feature manifest"
    old_root = old["images"].get("root_resolved", new["images"]["root_resolved"])
    if old_root != new["images"]["root_resolved"]:
        return (
            f"image root: {old_root} there, {new['images']['root_resolved']} now; the same "
            "file names in another folder are other images"
        )
    if same_images and old["images"]["hash"] != new["images"]["hash"]:
        return (
            f"image list: {old['images']['n']} images with hash {old['images']['hash'][:12]} "
            f"there, {new['images']['n']} images with hash {new['images']['hash'][:12]} now"
        )
    for key in ("name", "weights", "layer", "dim", "image_size", "preprocessing"):
        if old["encoder"].get(key) != new["encoder"].get(key):
            return (
                f"encoder {key}: {old['encoder'].get(key)!r} there, {new['encoder'].get(key)!r} now"
            )
    keys = (set(old["config"]) | set(new["config"])) - _VOLATILE_CONFIG - {"device"}
    for key in sorted(keys):
        if old["config"].get(key) != new["config"].get(key):
            return f"{key}: {old['config'].get(key)!r} there, {new['config'].get(key)!r} now"
    if old.get("kind", "images") != new.get("kind", "images"):
        return f"kind: {old.get('kind')} there, {new.get('kind')} now"
    return ""


def _clear_store(path: Path) -> None:
    """Remove a store's files (only the ones a store consists of)."""
    for p in path.iterdir():
        if p.name in (MANIFEST, IMAGES) or re.fullmatch(r"shard-\d{5}\.npy", p.name):
            p.unlink()
        elif p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink()
