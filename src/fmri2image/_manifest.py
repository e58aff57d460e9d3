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

Verified fingerprints
---------------------
Hashing every file on every check costs seconds per gigabyte, which a warm run over
an ImageNet-size feature store pays per model.  A caller that passes ``verify``
(``"fast"`` or ``"full"``) gets a *fingerprint*: after a check that hashed every
listed file and found each intact (and right after :func:`write_manifest` hashed
them, given ``fingerprint=``), a sidecar JSON records the manifest's own checksum
and, per file, its ``(size, st_mtime_ns, st_ctime_ns, st_ino, st_dev)`` as stat()
gave them *before* the file was hashed.  A later ``"fast"`` check of the same
manifest compares stat() results only; any difference, a missing, damaged or
foreign sidecar (another manifest checksum, other files), or a file changed in the
same clock tick as the sidecar was written ("racy", as git calls it: its times are
not older than the sidecar's) falls back to hashing every file, and a pass records
the fingerprint again.  ``"full"`` always hashes (and records).

What that trusts: a program that rewrites a file changes its size or times, and the
ctime cannot be set back (``os.utime`` restoring the mtime sets the ctime to now),
so an edited, replaced, truncated or restored file is hashed again.  What it does
not see: bytes that change without a write through the file system (a failing
disk, a tool writing the block device); ``--verify full`` re-hashes everything.
The sidecar is not listed in the manifest, and writing it is best-effort (an
atomic rename; a read-only cache or a folder removed meanwhile just means no
speed-up).  ``verify=None`` (the default) is the plain check: every file hashed,
no sidecar read or written; a resumed stage checks its items that way, so damage
that a full check of the whole artifact found is never vouched for again from a
stale fingerprint of one item.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fmri2image import _io
from fmri2image.errors import ConfigError, DataFormatError

__all__ = [
    "CHECKSUM",
    "FILES",
    "VERIFY_MODES",
    "check_verify",
    "files_problem",
    "fingerprint_path",
    "folder_files",
    "manifest_digest",
    "manifest_problem",
    "read_manifest",
    "record_fingerprints",
    "write_manifest",
]

#: The field holding a manifest's own checksum.
CHECKSUM = "manifest_sha256"
#: The field mapping each file (relative to the manifest's folder) to its SHA-256.
FILES = "files"
#: How reuse is verified: ``fast`` trusts a file whose stat() matches its fingerprint,
#: ``full`` hashes every file.
VERIFY_MODES = ("fast", "full")
FINGERPRINT_FORMAT = "fmri2image.verified"
FINGERPRINT_VERSION = 1

log = logging.getLogger(__name__)


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


def fingerprint_path(path: str | os.PathLike) -> Path:
    """Where the fingerprint of manifest ``path`` is kept by default: a hidden file
    beside it (``.<name>.verified.json``)."""
    path = Path(path)
    return path.parent / f".{path.name}.verified.json"


def check_verify(verify: str) -> str:
    """``verify`` if it is one of :data:`VERIFY_MODES`; else a ConfigError."""
    if verify not in VERIFY_MODES:
        raise ConfigError(
            f"--verify {verify!r} is not a verification mode; use fast (trust a cached "
            "file whose size, times and inode match its last full check) or full "
            "(re-hash every cached file)."
        )
    return verify


def _stat(path: Path) -> list[int]:
    """What a fingerprint records of a file: size, mtime, ctime (ns), inode, device."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _record_fingerprint(
    where: Path, manifest: Mapping[str, Any], stats: Mapping[str, list[int]]
) -> None:
    """Write a fingerprint atomically, best-effort: nothing is raised (another process
    may have removed the folder, or the cache is read-only), and no folder is made."""
    body = {
        "format": FINGERPRINT_FORMAT,
        "format_version": FINGERPRINT_VERSION,
        CHECKSUM: manifest.get(CHECKSUM),
        FILES: dict(stats),
    }
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{where.name}.", suffix=".tmp", dir=where.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(body, fh, separators=(",", ":"))
        os.chmod(tmp, _io.file_mode())
        os.replace(tmp, where)
        tmp = None
    except OSError as exc:
        log.debug("no fingerprint written to %s: %s", where, exc)
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fingerprint_holds(where: Path, manifest: Mapping[str, Any], folder: Path) -> bool:
    """Whether the fingerprint at ``where`` vouches for every file of ``manifest``
    as stat() sees them now (no file is read)."""
    files = manifest.get(FILES) or {}
    try:
        stamp = os.stat(where).st_mtime_ns
        with open(where, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return False
    if (
        not isinstance(record, dict)
        or record.get("format") != FINGERPRINT_FORMAT
        or record.get("format_version") != FINGERPRINT_VERSION
        or record.get(CHECKSUM) != manifest.get(CHECKSUM)
        or not isinstance(record.get(FILES), dict)
        or record[FILES].keys() != files.keys()
    ):
        return False
    for rel, recorded in record[FILES].items():
        try:
            now = _stat(folder / rel)
        except OSError:
            return False
        # Racy: changed in the clock tick the fingerprint was written in, a later
        # write in that same tick would leave the times as recorded.
        if now != recorded or max(now[1], now[2]) >= stamp:
            return False
    return True


def _hashed(
    folder: Path, files: Mapping[str, str]
) -> tuple[str | None, dict[str, list[int]] | None]:
    """:func:`files_problem`, and the stat() of each file taken before it was hashed
    (None when a file changed while it was read: no fingerprint to record then)."""
    stats: dict[str, list[int]] | None = {}
    for rel, digest in files.items():
        p = folder / rel
        if not p.is_file():
            return f"{p} is missing", None
        try:
            before = _stat(p)
            same = _io.file_sha256(p) == digest
            after = _stat(p)
        except OSError:
            return f"{p} is missing", None
        if not same:
            return f"{p} changed after it was written", None
        if stats is not None and before == after:
            stats[rel] = before
        else:
            stats = None
    return None, stats


def write_manifest(
    path: str | os.PathLike,
    body: Mapping[str, Any],
    *,
    folder: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
    fingerprint: str | os.PathLike | None = None,
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
        file under it but the manifest (and fingerprints); else the named ``files``
        (relative to it).
    files : iterable of str, optional
        Files relative to ``folder`` (default: the manifest's own folder).
    fingerprint : path, optional
        Record the fingerprint of the files just hashed there (best-effort), so
        that the next ``verify="fast"`` check of this manifest (given the same
        path) reads none of them.  Not recorded when ``body`` already listed files
        that this call did not hash.

    Returns
    -------
    dict
        The manifest as written, :data:`CHECKSUM` included.
    """
    path = Path(path)
    manifest = dict(_io.strict_json(dict(body)))
    stats: dict[str, list[int]] | None = None
    if folder is not None or files is not None:
        base = Path(folder) if folder is not None else path.parent
        listed = dict(manifest.get(FILES) or {})
        if files is None:
            hidden = {path.name, fingerprint_path(path).name}
            if fingerprint is not None:
                hidden.add(Path(fingerprint).name)
            names = [
                p.relative_to(base).as_posix()
                for p in sorted(base.rglob("*"))
                if p.is_file() and not _is_fingerprint(p.name, hidden)
            ]
        else:
            names = list(files)
        stats = {} if fingerprint is not None and not listed else None
        for rel in names:
            before = _stat(base / rel) if stats is not None else None
            listed[rel] = _io.file_sha256(base / rel)
            if stats is not None:
                if before != _stat(base / rel):
                    stats = None  # changed while it was read: nothing to vouch for
                else:
                    stats[rel] = before  # type: ignore[assignment]
        manifest[FILES] = listed
    manifest.pop(CHECKSUM, None)
    manifest[CHECKSUM] = manifest_digest(manifest)
    _io.save_json(path, manifest)
    if stats is not None and fingerprint is not None:
        _record_fingerprint(Path(fingerprint), manifest, stats)
    return manifest


def _is_fingerprint(name: str, hidden: set[str]) -> bool:
    """``name`` is the manifest, a fingerprint, or a fingerprint's temporary file."""
    return name in hidden or any(
        name.startswith(f".{h}.") and name.endswith(".tmp") for h in hidden if h.startswith(".")
    )


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
    return _hashed(Path(folder), files)[0]


def manifest_problem(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    identity: Mapping[str, Any] | None = None,
    folder: str | os.PathLike | None = None,
    verify: str | None = None,
    fingerprint: str | os.PathLike | None = None,
    due: list[tuple[Path, Mapping[str, Any], Any]] | None = None,
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
    verify : {"fast", "full"} or None
        ``"fast"``: files that stat() finds as the fingerprint recorded them are not
        read; ``"full"``: every file is hashed.  Both record the fingerprint when
        every file passed.  None: every file is hashed and no fingerprint is read
        or written (see the module docstring).
    fingerprint : path, optional
        Where the fingerprint is kept (default: :func:`fingerprint_path`).
    due : list, optional
        Collects the fingerprint to record instead of writing it now, for a caller
        that checks before it holds the cache's lock (:func:`record_fingerprints`).

    Raises
    ------
    ConfigError
        ``verify`` is not a mode of :data:`VERIFY_MODES` (or None).
    """
    if verify is not None:
        check_verify(verify)
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
    base = Path(folder) if folder is not None else path.parent
    if verify is None:
        return files_problem(base, files)
    where = Path(fingerprint) if fingerprint is not None else fingerprint_path(path)
    if verify == "fast" and _fingerprint_holds(where, manifest, base):
        return None
    problem, stats = _hashed(base, files)
    if problem is None and stats is not None:
        if due is None:
            _record_fingerprint(where, manifest, stats)
        else:  # the caller records it later (once it holds the cache's lock)
            due.append((where, manifest, stats))
    return problem


def record_fingerprints(due: Iterable[tuple[Path, Mapping[str, Any], Any]]) -> None:
    """Record the fingerprints :func:`manifest_problem` left in its ``due`` list
    (best-effort, as it would have; each folder is made when missing)."""
    for where, manifest, stats in due:
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        _record_fingerprint(where, manifest, stats)
