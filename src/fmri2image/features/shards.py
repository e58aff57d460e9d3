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
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmri2image._io import file_sha256, load_json, load_versioned_json, save_json, save_npy
from fmri2image.errors import ConfigError, DataFormatError

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

FORMAT = "fmri2image.features"
FORMAT_VERSION = 1
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
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in _VERSION_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_image_table(path: Path, relpaths: Sequence[str], wnids: Sequence[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fmri2image._io import atomic_path

    table = pa.table(
        {"path": pa.array(relpaths, pa.string()), "wnid": pa.array(wnids, pa.string())}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _read_image_table(path: Path) -> tuple[list[str], list[str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["path", "wnid"])
    return table.column("path").to_pylist(), table.column("wnid").to_pylist()


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
            feats = np.load(self.path / s["file"], mmap_mode="r", allow_pickle=False)
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
        """Check every shard's SHA-256 against the manifest (raises on mismatch)."""
        for s in self.shards:
            if file_sha256(self.path / s["file"]) != s["sha256"]:
                raise DataFormatError(
                    f"Shard {self.path / s['file']} does not match its checksum; re-run the "
                    "extraction (the damaged shard is recomputed after deleting it)."
                )


def open_feature_store(path: str | os.PathLike, *, allow_incomplete: bool = False) -> FeatureStore:
    """Open a feature store folder (one encoder) for reading.

    Parameters
    ----------
    path : path-like
        The store folder (``<out>/<encoder-name>``) holding ``manifest.json``.
    allow_incomplete : bool
        Open a store whose extraction has not finished (only completed shards are
        visible); by default this raises :class:`~fmri2image.errors.DataFormatError`.
    """
    path = Path(path)
    mpath = path / MANIFEST
    hint = ""
    if not mpath.is_file() and path.is_dir():
        subs = sorted(p.name for p in path.iterdir() if (p / MANIFEST).is_file())
        if subs:
            hint = f"It holds the stores {', '.join(subs)}; open one of them. "
    manifest = load_versioned_json(
        mpath,
        fmt=FORMAT,
        max_version=FORMAT_VERSION,
        what="a feature store",
        how_to_create=f"{hint}Create one with `fmri2image extract`.",
    )
    if not manifest.get("complete") and not allow_incomplete:
        done, total = len(manifest["shards"]), manifest["n_shards"]
        raise DataFormatError(
            f"Feature store {path} is incomplete ({done} of {total} shards); the extraction "
            "was interrupted. Run the same extract command again to resume it, or pass "
            "allow_incomplete=True to read the finished shards."
        )
    return FeatureStore(path, manifest)


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
                "layout": database.layout,
            },
            "n_shards": max(1, -(-n // shard_size)) if n else 0,
            "shards": [],
            "complete": False,
            "versions": library_versions(),
            "created": _now(),
            "updated": _now(),
        }
        mpath = path / MANIFEST
        if mpath.is_file() and not overwrite:
            old = load_json(mpath)
            problem = _incompatibility(old, fresh)
            if problem:
                raise ConfigError(
                    f"{path} already holds features that differ from this run ({problem}). "
                    "Use another output folder, or overwrite=True (CLI: --overwrite) to "
                    "discard them."
                )
            if old["config"].get("device") != fresh["config"].get("device"):
                logger.warning(
                    "resuming %s on device %s; earlier shards came from %s (numbers may "
                    "differ in the last digits)",
                    path,
                    fresh["config"].get("device"),
                    old["config"].get("device"),
                )
            writer = cls(path, old)
            writer._drop_missing_shards()
            return writer
        if overwrite and path.is_dir():
            _clear_store(path)
        path.mkdir(parents=True, exist_ok=True)
        _write_image_table(path / IMAGES, database.relpaths, database.wnids)
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

    def _drop_missing_shards(self) -> None:
        keep = []
        for s in self.manifest["shards"]:
            f = self.path / s["file"]
            if f.is_file() and f.stat().st_size == s["bytes"]:
                keep.append(s)
            else:
                logger.warning("shard %s is missing or damaged; it will be recomputed", f)
        if len(keep) != len(self.manifest["shards"]):
            self.manifest["shards"] = keep
            self.manifest["complete"] = False
            self._save()

    def _save(self) -> None:
        self.manifest["updated"] = _now()
        save_json(self.path / MANIFEST, self.manifest)

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
        fpath = save_npy(self.path / fname, np.ascontiguousarray(features, dtype=dtype))
        entry = {
            "k": int(k),
            "file": fname,
            "start": start,
            "stop": stop,
            "rows": rows,
            "bytes": fpath.stat().st_size,
            "sha256": file_sha256(fpath),
            "skipped": sorted(skipped, key=lambda d: d["index"]),
        }
        self.manifest["shards"] = [s for s in self.manifest["shards"] if s["k"] != k] + [entry]
        self.manifest["shards"].sort(key=lambda s: s["k"])
        self._save()
        return fpath

    def finalize(self) -> bool:
        """Mark the store complete if every shard is written; returns completeness."""
        self.manifest["complete"] = not self.pending()
        self.manifest["n_rows"] = int(sum(s["rows"] for s in self.manifest["shards"]))
        self.manifest["n_skipped"] = int(sum(len(s["skipped"]) for s in self.manifest["shards"]))
        self._save()
        return self.manifest["complete"]


def _incompatibility(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    if old.get("format") != FORMAT:
        return "its manifest.json is not an fmri2image feature manifest"
    if old["images"]["hash"] != new["images"]["hash"]:
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
