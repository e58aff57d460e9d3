"""One verified manifest for every cache: what was made, from what, and its checksums.

Every cache fmri2image keeps (stage artifacts, feature-store shards, per-image
generation records) says what it holds with a *manifest*: a JSON object naming its
``format``, the identity of its inputs (a key), the SHA-256 of each file it vouches
for, and ``manifest_sha256``, the SHA-256 of its own canonical JSON without that
field.  :func:`write_manifest` is the one place that writes one (atomically, last,
so a manifest on disk means its files are complete); :func:`read_manifest` and
:func:`manifest_problem` are the one place that verifies one::

    write_manifest(folder / "artifact.json", {"format": "fmri2image.artifact",
                   "key": key, ...}, folder=folder)            # checksums every file
    problem = manifest_problem(folder / "artifact.json", format="fmri2image.artifact",
                               identity={"key": key}, folder=folder)
    if problem is None:  ...                                    # reuse it

A manifest is reused only when it parses, its own checksum matches, it has the
expected format and identity, and every file it lists exists with its recorded
SHA-256.  Anything else is a reason, in words, to make the thing again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image.errors import DataFormatError

__all__ = [
    "CHECKSUM",
    "FILES",
    "files_problem",
    "folder_files",
    "manifest_digest",
    "manifest_problem",
    "read_manifest",
    "write_manifest",
]

#: The field holding a manifest's own checksum.
CHECKSUM = "manifest_sha256"
#: The field mapping each file (relative to the manifest's folder) to its SHA-256.
FILES = "files"


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of a manifest's canonical JSON without its :data:`CHECKSUM` field."""
    return _io.json_sha256({k: v for k, v in manifest.items() if k != CHECKSUM})


def folder_files(folder: str | os.PathLike, *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """``{relative path: SHA-256}`` of every file under ``folder`` (sorted; ``exclude``:
    names left out, e.g. the manifest itself)."""
    folder = Path(folder)
    skip = set(exclude)
    return {
        p.relative_to(folder).as_posix(): _io.file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def write_manifest(
    path: str | os.PathLike,
    body: Mapping[str, Any],
    *,
    folder: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Write a verified manifest atomically and return it.

    Parameters
    ----------
    path : path
        The manifest file.
    body : mapping
        Its content: at least ``format``; usually a ``key`` or other input identity.
        A :data:`FILES` entry already in ``body`` is kept (and extended).
    folder : path, optional
        The folder whose files the manifest vouches for: with ``files`` None, every
        file under it but the manifest; else the named ``files`` (relative to it).
    files : iterable of str, optional
        Files relative to ``folder`` (default: the manifest's own folder).

    Returns
    -------
    dict
        The manifest as written, :data:`CHECKSUM` included.
    """
    path = Path(path)
    manifest = dict(_io.strict_json(dict(body)))
    if folder is not None or files is not None:
        base = Path(folder) if folder is not None else path.parent
        listed = dict(manifest.get(FILES) or {})
        if files is None:
            listed.update(folder_files(base, exclude=(path.name,)))
        else:
            listed.update({f: _io.file_sha256(base / f) for f in files})
        manifest[FILES] = listed
    manifest.pop(CHECKSUM, None)
    manifest[CHECKSUM] = manifest_digest(manifest)
    _io.save_json(path, manifest)
    return manifest


def read_manifest(path: str | os.PathLike, *, format: str | None = None) -> dict[str, Any]:
    """A manifest, its own checksum (and ``format``, when given) verified.

    Raises
    ------
    DataFormatError
        Missing, not a JSON object, another format, or changed after it was written.
    """
    path = Path(path)
    manifest = _io.load_json(path)
    if not isinstance(manifest, dict):
        raise DataFormatError(f"{path} is not a manifest (a JSON object expected).")
    if format is not None and manifest.get("format") != format:
        raise DataFormatError(
            f"{path} is not a {format} manifest (its format is {manifest.get('format')!r})."
        )
    if manifest_digest(manifest) != manifest.get(CHECKSUM):
        raise DataFormatError(f"{path} was changed after it was written (checksum mismatch).")
    return manifest


def files_problem(folder: str | os.PathLike, files: Mapping[str, str]) -> str | None:
    """Why the files a manifest lists cannot be trusted (None: every one is there with
    its recorded SHA-256)."""
    folder = Path(folder)
    for rel, digest in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{p} is missing"
        if _io.file_sha256(p) != digest:
            return f"{p} changed after it was written"
    return None


def manifest_problem(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    identity: Mapping[str, Any] | None = None,
    folder: str | os.PathLike | None = None,
) -> str | None:
    """Why the thing ``path`` describes cannot be reused; None when it can.

    Parameters
    ----------
    path : path
        The manifest.
    format : str, optional
        The format it must have.
    identity : mapping, optional
        Fields that must hold these exact values (the key of the inputs).
    folder : path, optional
        Where the files it lists are (default: the manifest's folder).
    """
    path = Path(path)
    if not path.is_file():
        return "not computed yet"
    try:
        manifest = read_manifest(path, format=format)
    except DataFormatError as exc:
        return str(exc)
    for field, value in (identity or {}).items():
        if manifest.get(field) != _io.strict_json(value):
            return f"{path} belongs to another {field}"
    files = manifest.get(FILES) or {}
    if not isinstance(files, dict):
        return f"{path} lists its files wrongly"
    return files_problem(folder if folder is not None else path.parent, files)
