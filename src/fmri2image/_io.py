"""Atomic, pickle-free storage helpers.

Every artifact is written to a temporary file in the destination folder and then
renamed over the target (``os.replace`` is atomic on POSIX), so a crash never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write",
    "current_umask",
    "file_mode",
    "file_sha256",
    "load_json",
    "load_safetensors",
    "load_versioned_json",
    "save_json",
    "save_npy",
    "save_safetensors",
    "strict_json",
]


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    Linux exposes it in ``/proc/self/status``; elsewhere it is read with the
    ``os.umask`` set-and-restore idiom under a lock.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """Permission bits of a new regular file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is created private (``mkstemp``: 0600) and gets the
    ordinary permissions of a new file (``0o666 & ~umask``) just before the
    rename, so results are as readable to colleagues as any file the user makes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def strict_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by ``None`` (JSON has no NaN).

    Numpy scalars and arrays become Python numbers and lists, paths strings;
    mappings, lists and tuples are walked recursively.
    """
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON atomically.

    Numpy scalars/arrays and paths are allowed; NaN and infinities are written as
    ``null`` (see :func:`strict_json`), so every JSON reader accepts the file.
    """
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(
            strict_json(obj), fh, indent=indent, default=_to_jsonable, sort_keys=False,
            allow_nan=False,
        )  # fmt: skip
        fh.write("\n")
    return Path(path)


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a damaged one is a :class:`~fmri2image.errors.DataFormatError`."""
    from fmri2image.errors import DataFormatError

    with open(path, encoding="utf-8") as fh:
        try:
            return json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(
                f"{path} is not valid JSON ({exc}); the file is damaged or truncated. "
                "Delete it (and the result it describes) and run the command again."
            ) from exc


def load_versioned_json(
    path: str | os.PathLike, *, fmt: str, max_version: int, what: str, how_to_create: str
) -> dict[str, Any]:
    """Read a manifest-like JSON file that declares ``format`` and ``format_version``.

    Raises :class:`~fmri2image.errors.MissingDataFileError` when the file is absent
    (``what``/``how_to_create`` make the message), and
    :class:`~fmri2image.errors.DataFormatError` when it is another format or a newer
    version than this release understands.
    """
    from fmri2image.errors import DataFormatError, MissingDataFileError

    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(f"{path.parent} is not {what} (no {path.name}). {how_to_create}")
    meta = load_json(path)
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise DataFormatError(f"{path} does not describe {what} (format is not {fmt!r}).")
    if int(meta.get("format_version", 0)) > max_version:
        raise DataFormatError(
            f"{path} has format version {meta.get('format_version')}, newer than this "
            f"fmri2image understands ({max_version}); upgrade fmri2image."
        )
    return meta


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array as ``.npy`` atomically (``allow_pickle`` is never used)."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write numpy arrays as a safetensors file atomically.

    ``metadata`` values must be strings (a safetensors restriction); store
    structured metadata as a JSON string.
    """
    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(arrays, str(tmp), metadata=dict(metadata) if metadata else None)
    return Path(path)


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file into numpy arrays; returns ``(tensors, metadata)``."""
    from safetensors import safe_open

    out: dict[str, np.ndarray] = {}
    with safe_open(str(path), framework="np") as fh:
        meta = fh.metadata() or {}
        for key in fh.keys():
            out[key] = fh.get_tensor(key)
    return out, dict(meta)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical strict JSON (sorted keys, compact separators).

    The digest of a manifest's own content (feature stores, stage artifacts) and of
    a cache key: equal for equal content whatever the key order.
    """
    text = json.dumps(strict_json(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_versions(names: Sequence[str]) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


#: zlib level of the pictures a run writes: a third of the time of Pillow's default (6),
#: files about 5 % larger.
PNG_COMPRESS_LEVEL = 3


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def tqdm_kwargs(progress: bool) -> dict[str, Any]:
    """Keyword arguments for a ``tqdm`` bar that ``progress=False`` switches off.

    ``disable`` is passed only to switch the bar off: an explicit ``disable=False``
    or ``None`` would override ``TQDM_DISABLE=1`` (set by ``--quiet``).
    """
    return {} if progress else {"disable": True}


def safe_name(text: str) -> str:
    """``text`` as one path component: every character but ASCII letters, digits,
    ``-``, ``_`` and ``.`` replaced by ``_`` (stage names, ROI expressions)."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", str(text)) or "_"


def shown(text: object, limit: int | None = None) -> str:
    """``text`` safe to print or log: control and other non-printable characters (a
    terminal escape code, a newline) as Python writes them in a string literal
    (``\\x1b``, ``\\n``), a backslash doubled so what is shown reads back
    unambiguously, and cut at ``limit`` characters (with an ellipsis)."""
    text = str(text)
    if not (text.isprintable() and "\\" not in text):
        text = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
