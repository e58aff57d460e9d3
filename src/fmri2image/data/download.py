"""Fetch the public GOD fMRI files from figshare (article 7387130), resumably.

The file list is read from the figshare API at run time (ids and download URLs
change between article versions), and the files of the requested subjects and
release are selected by name: ``SubjectN.h5`` (SPM release) or
``SubjectN_ImageNetTraining.h5``, ``SubjectN_ImageNetTest.h5`` and
``SubjectN_Imagery.h5`` (fmriprep release), exactly the names
:func:`fmri2image.data.god.find_subject_files` looks for.

Each file is streamed to ``DEST/.partial/<name>.part``.  An interrupted transfer
continues with an HTTP ``Range`` request on the next attempt (a server that
answers a range request with the whole file is read again from the start).  Once
the size and, when the article gives one, the MD5 match, the part file is renamed
onto ``DEST/<name>`` (atomic on POSIX), so a file under its final name is always
complete.  A file already complete in ``DEST`` is skipped.

The file list is not trusted: an entry is used only when its name is a plain file
name (no path separator, no ``..``, no leading dot, no control characters), its size
a positive number of bytes, its MD5 (if any) 32 hex digits and its URL http(s)
(redirects too).  Other entries are skipped with a warning, or, when they are files
the run asks for, refused before anything is written.  Names are printed with
control characters escaped (``\\x1b``), so a name cannot drive the terminal.

A run holds the lock of ``DEST`` (:func:`fmri2image._lock.output_lock`) and
removes the lock file when it ends.  Under the lock it first collects what earlier
runs left in ``DEST/.partial`` that cannot be resumed (empty parts, parts longer
than their file or of names the article does not list, anything else), and logs
it; a part of a listed file is resumed.  A failed run keeps only resumable parts,
and a run that leaves nothing leaves ``DEST`` as it found it (a folder it created
is removed again).

Only the standard library speaks HTTP (:mod:`urllib.request`); proxies are taken
from the usual ``HTTPS_PROXY`` / ``HTTP_PROXY`` variables.

The stimulus images are not in the article (ImageNet licence): see
:func:`stimulus_note`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fmri2image import __version__
from fmri2image._io import file_mode, tqdm_kwargs
from fmri2image._io import shown as _shown
from fmri2image._lock import output_lock
from fmri2image.errors import ConfigError, Fmri2ImageError

__all__ = [
    "FIGSHARE_API",
    "GOD_ARTICLE",
    "PARTIAL_DIR",
    "DatasetDownload",
    "DownloadError",
    "DownloadResult",
    "FileOutcome",
    "RemoteFile",
    "download_dataset",
    "download_god",
    "god_file_names",
    "list_article_files",
    "select_god_files",
    "stimulus_note",
]

log = logging.getLogger(__name__)

#: figshare article of the GOD fMRI files (Horikawa & Kamitani 2017).
GOD_ARTICLE = 7387130
#: Base of the public figshare API.
FIGSHARE_API = "https://api.figshare.com/v2"
#: Sub-folder of the destination that holds transfers in progress.
PARTIAL_DIR = ".partial"

_USER_AGENT = f"fmri2image/{__version__} (+https://github.com/fmri2image/fmri2image)"
_SPLIT_PARTS = ("ImageNetTraining", "ImageNetTest", "Imagery")
_REQUIRED_SPLIT_PARTS = ("ImageNetTraining", "ImageNetTest")
_GOD_NAME = re.compile(r"Subject(\d+)(?:_(ImageNetTraining|ImageNetTest|Imagery))?\.h5")
#: Errors of a network read or connection (disk writes happen outside these try blocks,
#: so a full disk still reaches the CLI as the OSError it is).
_NETWORK_ERRORS = (OSError, http.client.HTTPException)
_MAX_PAGES = 1000
_SCHEMES = ("http", "https")
_MD5 = re.compile(r"[0-9a-fA-F]{32}")

Release = Literal["spm", "fmriprep"]


class DownloadError(Fmri2ImageError):
    """A transfer from figshare failed (network, HTTP status, size or checksum).

    ``retryable`` is True for failures a new attempt may fix (a dropped
    connection, a timeout, an HTTP 5xx); the data fetched so far is kept.
    """

    def __init__(self, message: str, *, retryable: bool = False, reason: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason or message


@dataclass(frozen=True)
class RemoteFile:
    """One file of a figshare article.

    Attributes
    ----------
    name : str
        File name (also the name it gets in the destination folder).
    size : int
        Size in bytes, as the article states it.
    url : str
        Download URL.
    md5 : str or None
        Lower-case hex MD5 the article gives (``computed_md5``, else
        ``supplied_md5``), None when it gives none.
    file_id : int or None
        figshare file id.
    """

    name: str
    size: int
    url: str
    md5: str | None = None
    file_id: int | None = None


Action = Literal["fetched", "skipped", "fetch", "resume", "replace", "check"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened (or, in a dry run, would happen) to one file.

    ``action`` is ``"fetched"`` or ``"skipped"`` after a download; in a dry run it
    is ``"fetch"``, ``"resume"`` (a part file holds ``have`` bytes), ``"replace"``
    (a file of another size is in the way) or ``"check"`` (a file of the right
    size is there; a real run verifies its MD5 and skips it).
    """

    name: str
    path: Path
    size: int
    action: Action
    have: int = 0
    transferred: int = 0


@dataclass(frozen=True)
class DownloadResult:
    """Outcome of :func:`download_god`."""

    dest: Path
    article: int
    release: str
    subjects: tuple[int, ...]
    files: tuple[FileOutcome, ...]
    dry_run: bool = False

    @property
    def fetched(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.files if f.action == "fetched")

    @property
    def skipped(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.files if f.action == "skipped")

    @property
    def bytes_transferred(self) -> int:
        return sum(f.transferred for f in self.files)

    def format(self) -> str:
        """The per-file table and a one-line summary."""
        names = {f.name: _shown(f.name) for f in self.files}
        width = max(map(len, names.values()), default=4)
        subjects = ", ".join(map(str, self.subjects))
        if self.dry_run:
            lines = [
                f"dry run: GOD subject(s) {subjects} ({self.release} release) from figshare "
                f"article {self.article} into {self.dest}; nothing is fetched or written"
            ]
            notes = {
                "fetch": "fetch",
                "resume": "resume",
                "replace": "replace (a file of another size is there)",
                "check": "present with the right size (a real run checks its MD5 and skips it)",
            }
            for f in self.files:
                note = notes[f.action]
                if f.action == "resume":
                    note = f"resume after the {_human(f.have)} in {PARTIAL_DIR}/"
                lines.append(f"  {names[f.name]:<{width}}  {_human(f.size):>10}  {note}")
            todo = sum(f.size - f.have for f in self.files if f.action != "check")
            total = sum(f.size for f in self.files)
            lines.append(
                f"would transfer {_human(todo)} ({len(self.files)} file(s), {_human(total)} in all)"
            )
            return "\n".join(lines)
        lines = [
            f"GOD subject(s) {subjects} ({self.release} release) from figshare article "
            f"{self.article} in {self.dest}:"
        ]
        for f in self.files:
            note = "fetched" if f.action == "fetched" else "already complete, skipped"
            lines.append(f"  {names[f.name]:<{width}}  {_human(f.size):>10}  {note}")
        fetched, skipped = self.fetched, self.skipped
        lines.append(
            f"{len(fetched)} file(s) fetched ({_human(self.bytes_transferred)} transferred), "
            f"{len(skipped)} skipped as already complete "
            f"({_human(sum(f.size for f in skipped))})"
        )
        return "\n".join(lines)


def _human(n: int) -> str:
    """Bytes as ``512 B``, ``300.0 KiB``, ``1.21 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.2f} {unit}" if unit in ("GiB", "TiB") else f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _is_http(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in _SCHEMES and bool(parts.netloc)


def _reason(exc: BaseException, timeout: float | None = None) -> str:
    """One phrase for a network failure: ``HTTP 503 Service Unavailable``, ``timed out``."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout else "the connection timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close(exc: BaseException) -> None:
    """Release the connection an HTTPError holds (it is also a response)."""
    if isinstance(exc, urllib.error.HTTPError):
        exc.close()


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code in (408, 429)
    return True


class _HttpRedirectOnly(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to http(s) (urllib's own handler also follows ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not _is_http(newurl):
            raise urllib.error.HTTPError(
                req.full_url, code, f"{msg}, to {_shown(newurl)}: refused, only http and "
                "https URLs are fetched", headers, fp,
            )  # fmt: skip
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HttpRedirectOnly)


def _open(url: str, *, timeout: float, headers: dict[str, str] | None = None):
    if not _is_http(url):  # entries are checked when the list is read; this is the backstop
        raise DownloadError(
            f"Refusing to open {_shown(url)}: only http and https URLs are fetched."
        )
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    return _opener().open(request, timeout=timeout)


def _get_json(url: str, timeout: float) -> Any:
    with _open(url, timeout=timeout, headers={"Accept": "application/json"}) as resp:
        body = resp.read()
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the answer is not JSON ({exc})") from None


class _Refused(Exception):
    """An entry of the file list that is not used: ``name`` (as listed) and why."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name, reason)
        self.name, self.reason = name, reason


def _value(value: Any) -> str:
    """A JSON value for a message: repr (which escapes control characters), cut short."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain file name to create in the destination; None if it is."""
    if not name.isprintable():
        return "control or other non-printable characters in its name"
    if "/" in name or "\\" in name:
        return "a path separator in its name"
    if name.startswith(".") or ".." in name:
        return "a name that starts with '.' or holds '..'"
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        return "a name longer than 255 bytes"
    return None


def _parse_entry(entry: Any) -> RemoteFile | None:
    """A figshare file record -> :class:`RemoteFile`; None for a link-only record.

    Raises
    ------
    _Refused
        The record's name, size, URL or MD5 is not usable.
    """
    if not isinstance(entry, dict):
        raise _Refused(f"an entry {_value(entry)}", "no fields")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise _Refused(f"an entry named {_value(name)}", "no usable file name")
    problem = _name_problem(name)
    if problem is not None:
        raise _Refused(name, problem)
    if entry.get("is_link_only"):
        return None
    if "size" not in entry:
        raise _Refused(name, "no size")
    size = entry["size"]
    if type(size) is not int or size <= 0:  # bool is an int subclass: excluded too
        raise _Refused(
            name, f"the size {_value(size)}, which is not a positive whole number of bytes"
        )
    url = entry.get("download_url")
    if not isinstance(url, str) or not url:
        raise _Refused(name, "no download URL")
    if not url.isprintable() or " " in url or not _is_http(url):
        raise _Refused(
            name, f"the download URL {_shown(url)}, which is not an http or https URL (only "
            "those are fetched)",
        )  # fmt: skip
    md5 = entry.get("computed_md5") or entry.get("supplied_md5") or None
    if md5 is not None and not (isinstance(md5, str) and _MD5.fullmatch(md5.strip())):
        raise _Refused(name, f"the MD5 {_value(md5)}, which is not 32 hexadecimal digits")
    file_id = entry.get("id")
    return RemoteFile(
        name=name,
        size=size,
        url=url,
        md5=md5.strip().lower() if md5 else None,
        file_id=file_id if type(file_id) is int else None,
    )


def _check_api_url(api_url: str) -> None:
    if not isinstance(api_url, str) or not _is_http(api_url):
        raise ConfigError(
            f"--api-url must be an http:// or https:// URL, got {_shown(api_url)}; only "
            "http and https are fetched."
        )


def list_article_files(
    article: int = GOD_ARTICLE,
    *,
    api_url: str = FIGSHARE_API,
    page_size: int = 100,
    timeout: float = 60.0,
) -> tuple[RemoteFile, ...]:
    """The current files of a figshare article.

    Reads ``{api_url}/articles/{article}/files?page=N&page_size=M`` page by page
    (a page shorter than ``page_size`` is the last); where that endpoint is
    refused (HTTP 4xx), reads the ``files`` of the article record
    ``{api_url}/articles/{article}`` instead.  Either answer may be a list of
    file records or an object with a ``files`` list.

    Entries that cannot be used safely (a name that is not a plain file name, a
    size that is not a positive number of bytes, a URL that is not http(s), an
    MD5 that is not 32 hex digits) are left out, each with a warning.

    Raises
    ------
    ConfigError
        ``api_url`` is not an http(s) URL.
    DownloadError
        The API cannot be reached or answers something else.
    """
    files, refused = _read_file_list(article, api_url, page_size, timeout)
    for entry in refused:
        _warn_skipped(entry, article)
    return files


def _warn_skipped(entry: _Refused, article: int) -> None:
    log.warning(
        "warning: figshare article %s lists %s with %s; that entry is skipped",
        article, _shown(entry.name), entry.reason,
    )  # fmt: skip


def _read_file_list(
    article: int, api_url: str, page_size: int, timeout: float
) -> tuple[tuple[RemoteFile, ...], tuple[_Refused, ...]]:
    """The usable files of the article, and the entries refused (see list_article_files)."""
    _check_api_url(api_url)
    base = api_url.rstrip("/")
    hint = (
        "Check the network connection (api.figshare.com must be reachable; a proxy is "
        "taken from HTTPS_PROXY), --article and --api-url, and run the command again; "
        "files already downloaded are kept and a rerun resumes."
    )

    def fetch(url: str) -> Any:
        try:
            return _get_json(url, timeout)
        except ValueError as exc:
            raise DownloadError(
                f"The figshare API at {url} did not answer with the file list of article "
                f"{article}: {exc}. {hint}"
            ) from None

    def records(data: Any, url: str) -> list[Any]:
        if isinstance(data, dict) and isinstance(data.get("files"), list):
            return data["files"]
        if isinstance(data, list):
            return data
        raise DownloadError(
            f"The figshare API at {url} answered JSON that is neither a list of files nor "
            f"an article record with 'files'. {hint}"
        )

    entries: list[Any] = []
    seen: set[str] = set()
    url = ""
    try:
        for page in range(1, _MAX_PAGES + 1):
            url = f"{base}/articles/{article}/files?page={page}&page_size={page_size}"
            try:
                data = fetch(url)
            except urllib.error.HTTPError as exc:
                if page == 1 and 400 <= exc.code < 500:
                    _close(exc)
                    url = f"{base}/articles/{article}"
                    entries = records(fetch(url), url)
                    break
                raise
            if isinstance(data, dict):  # an article record: no pages
                entries = records(data, url)
                break
            items = records(data, url)
            new = [it for it in items if json.dumps(it, sort_keys=True) not in seen]
            seen.update(json.dumps(it, sort_keys=True) for it in new)
            entries.extend(new)
            if len(items) < page_size or not new:  # last page (or pages are ignored)
                break
    except _NETWORK_ERRORS as exc:
        _close(exc)
        if isinstance(exc, urllib.error.HTTPError) and exc.code == 404:
            raise DownloadError(
                f"figshare has no article {article} (HTTP 404 from {url}). Check --article "
                f"(the GOD fMRI files are article {GOD_ARTICLE}) and --api-url."
            ) from None
        raise DownloadError(
            f"Cannot read the file list of figshare article {article} from {url}: "
            f"{_reason(exc, timeout)}. {hint}",
            retryable=_retryable(exc),
        ) from None
    files: list[RemoteFile] = []
    refused: list[_Refused] = []
    for entry in entries:
        try:
            parsed = _parse_entry(entry)
        except _Refused as exc:
            refused.append(exc)
            continue
        if parsed is not None:
            files.append(parsed)
    return tuple(files), tuple(refused)


def god_file_names(subject: int, release: Release) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` file names of one subject in one release."""
    if release == "spm":
        return (f"Subject{subject}.h5",), ()
    if release == "fmriprep":
        return (
            tuple(f"Subject{subject}_{p}.h5" for p in _REQUIRED_SPLIT_PARTS),
            tuple(
                f"Subject{subject}_{p}.h5" for p in _SPLIT_PARTS if p not in _REQUIRED_SPLIT_PARTS
            ),
        )
    raise ConfigError(f"release must be 'spm' or 'fmriprep', got {release!r}.")


def _available(files: Iterable[RemoteFile]) -> dict[str, list[int]]:
    """Subjects that each release of the article covers."""
    parts: dict[int, set[str]] = {}
    for f in files:
        m = _GOD_NAME.fullmatch(f.name)
        if m:
            parts.setdefault(int(m.group(1)), set()).add(m.group(2) or "")
    return {
        "spm": sorted(n for n, p in parts.items() if "" in p),
        "fmriprep": sorted(n for n, p in parts.items() if set(_REQUIRED_SPLIT_PARTS) <= p),
    }


def _subject_numbers(subjects: Sequence[int | str]) -> list[int]:
    from fmri2image.data.god import parse_subject

    numbers = list(dict.fromkeys(parse_subject(s) for s in subjects))
    if not numbers:
        raise ConfigError("Name at least one subject (--subjects 3, or --subjects 1 2 3 4 5).")
    return numbers


def select_god_files(
    files: Sequence[RemoteFile],
    subjects: Sequence[int | str],
    release: Release = "spm",
    *,
    article: int = GOD_ARTICLE,
) -> tuple[RemoteFile, ...]:
    """The files of ``subjects`` in ``release``, in subject order.

    The fmriprep release needs the ImageNetTraining and ImageNetTest files; its
    Imagery file is taken when the article has it.

    Raises
    ------
    ConfigError
        A subject (or release) is not in the article; the message lists what is.
    """
    numbers = _subject_numbers(subjects)
    by_name = {f.name: f for f in files}
    chosen: list[RemoteFile] = []
    missing: dict[int, list[str]] = {}
    for n in numbers:
        required, optional = god_file_names(n, release)
        absent = [name for name in required if name not in by_name]
        if absent:
            missing[n] = absent
            continue
        chosen.extend(by_name[name] for name in (*required, *optional) if name in by_name)
        for name in optional:
            if name not in by_name:
                log.info("article %s has no %s; fetching the other files", article, name)
    if missing:
        available = _available(files)
        other = "fmriprep" if release == "spm" else "spm"

        def subject_list(ns: list[int]) -> str:
            return ", ".join(map(str, ns)) if ns else "none"

        looked = "; ".join(f"subject {n}: {', '.join(names)}" for n, names in missing.items())
        h5 = sorted(_shown(f.name) for f in files if f.name.endswith(".h5"))
        raise ConfigError(
            f"figshare article {article} has no {release} release file for subject(s) "
            f"{', '.join(map(str, missing))} (looked for {looked}). The article holds the "
            f"{release} release of subject(s) {subject_list(available[release])} and the "
            f"{other} release of subject(s) {subject_list(available[other])} (--release "
            f"{other}). Its .h5 files: {', '.join(h5) or 'none'}."
        )
    return tuple(chosen)


def _md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _part_path(dest: Path, name: str) -> Path:
    return dest / PARTIAL_DIR / f"{name}.part"


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _plan(remote: RemoteFile, dest: Path) -> FileOutcome:
    """What a run would do with one file (reads only sizes)."""
    final, part = dest / remote.name, _part_path(dest, remote.name)
    if final.is_file():
        if final.stat().st_size == remote.size:
            return FileOutcome(remote.name, final, remote.size, "check", have=remote.size)
        action: Action = "replace"
    else:
        action = "fetch"
    have = part.stat().st_size if part.is_file() else 0
    if 0 < have <= remote.size:
        return FileOutcome(remote.name, final, remote.size, "resume", have=have)
    return FileOutcome(remote.name, final, remote.size, action)


class _Fetcher:
    """Streams files into ``DEST/.partial`` and installs verified ones."""

    def __init__(
        self,
        dest: Path,
        *,
        timeout: float,
        retries: int,
        retry_wait: float,
        progress: bool,
        chunk_size: int,
    ) -> None:
        self.dest = dest
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.progress = progress
        self.chunk_size = chunk_size
        self.transferred = 0

    def fetch(self, remote: RemoteFile) -> FileOutcome:
        final, part = self.dest / remote.name, _part_path(self.dest, remote.name)
        if final.is_file():
            size = final.stat().st_size
            if size == remote.size and (remote.md5 is None or _md5(final) == remote.md5):
                log.info("%s is already complete; skipped", _shown(remote.name))
                return FileOutcome(remote.name, final, remote.size, "skipped")
            log.warning(
                "warning: %s differs from the article's file (%s); fetching it again (the "
                "old file is replaced only once the new one is verified)",
                _shown(final),
                "its size" if size != remote.size else "its MD5",
            )
        part.parent.mkdir(parents=True, exist_ok=True)
        before = self.transferred
        for attempt in range(self.retries + 1):
            try:
                self._transfer(remote, part)
                break
            except DownloadError as exc:
                if not exc.retryable or attempt == self.retries:
                    raise
                wait = self.retry_wait * 2**attempt
                log.info(
                    "%s: %s; trying again in %g s (retry %d of %d)",
                    _shown(remote.name), exc.reason, wait, attempt + 1, self.retries,
                )  # fmt: skip
                time.sleep(wait)
        self._install(remote, part, final)
        return FileOutcome(
            remote.name, final, remote.size, "fetched", transferred=self.transferred - before
        )

    def _failure(self, remote: RemoteFile, part: Path, exc: BaseException | str) -> DownloadError:
        """The error of a failed transfer; ``exc`` is the network error or a reason."""
        if isinstance(exc, BaseException):
            _close(exc)
        have = part.stat().st_size if part.is_file() else 0
        kept = (
            f"the {_human(have)} fetched so far are kept in {part.parent} and the rerun "
            "resumes from there"
            if have
            else "a rerun starts it again"
        )
        if isinstance(exc, urllib.error.HTTPError) and not _retryable(exc):
            advice = (
                "The server refused the file: check --api-url, or whether the article "
                "changed; then run the same command again"
            )
        else:
            advice = "Check the network connection and run the same command again"
        reason = exc if isinstance(exc, str) else _reason(exc, self.timeout)
        return DownloadError(
            f"Downloading {_shown(remote.name)} ({_human(remote.size)}) from "
            f"{_shown(remote.url)} failed: {reason}. {advice}: {kept}.",
            retryable=isinstance(exc, str) or _retryable(exc),
            reason=reason,
        )

    def _transfer(self, remote: RemoteFile, part: Path) -> None:
        """Bring ``part`` to ``remote.size`` bytes (resuming), or raise DownloadError."""
        have = part.stat().st_size if part.is_file() else 0
        if have > remote.size:
            part.unlink()
            have = 0
        if have == remote.size:
            return
        try:
            try:
                resp = _open(
                    remote.url,
                    timeout=self.timeout,
                    headers={"Range": f"bytes={have}-"} if have else None,
                )
            except urllib.error.HTTPError as exc:
                if exc.code != 416 or not have:
                    raise
                # "Range not satisfiable": the part file does not fit the remote file.
                _close(exc)
                log.info(
                    "the server cannot resume %s; fetching it from the start", _shown(remote.name)
                )
                part.unlink()
                have = 0
                resp = _open(remote.url, timeout=self.timeout)
        except _NETWORK_ERRORS as exc:
            raise self._failure(remote, part, exc) from None
        with resp:
            status = resp.status
            start = _content_range_start(resp.headers.get("Content-Range"))
            if status == 206 and (start is None or start == have):
                mode = "ab" if have else "wb"
                if have:
                    log.info(
                        "resuming %s after %s of %s",
                        _shown(remote.name), _human(have), _human(remote.size),
                    )  # fmt: skip
            elif status == 200:
                if have:
                    log.info(
                        "the server ignored the range request for %s; fetching it from the start",
                        _shown(remote.name),
                    )
                have, mode = 0, "wb"
            elif status == 206:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"The server resumed {_shown(remote.name)} at byte {start} instead of "
                    f"{have}, so the partial file was deleted; run the same command again to "
                    "fetch it from the start.",
                    retryable=True,
                )
            else:
                raise DownloadError(
                    f"Downloading {_shown(remote.name)} from {_shown(remote.url)} failed: "
                    f"unexpected HTTP status {status}. Run the same command again.",
                    retryable=True,
                )
            self._stream(remote, part, resp, mode, have)

    def _stream(self, remote: RemoteFile, part: Path, resp, mode: str, have: int) -> None:
        from tqdm.auto import tqdm

        got = have
        with (
            open(part, mode) as fh,
            tqdm(
                total=remote.size, initial=have, desc=_shown(remote.name), unit="B",
                unit_scale=True, unit_divisor=1024, **tqdm_kwargs(self.progress),
            ) as bar,
        ):  # fmt: skip
            while True:
                try:
                    block = resp.read(self.chunk_size)
                except _NETWORK_ERRORS as exc:
                    raise self._failure(remote, part, exc) from None
                if not block:
                    break
                fh.write(block)
                got += len(block)
                self.transferred += len(block)
                bar.update(len(block))
                if got > remote.size:
                    break
            fh.flush()
            os.fsync(fh.fileno())
        if got < remote.size:
            raise self._failure(
                remote, part, f"the connection closed after {_human(got)} of {_human(remote.size)}"
            )

    def _install(self, remote: RemoteFile, part: Path, final: Path) -> None:
        size = part.stat().st_size
        problem = None
        if size != remote.size:
            problem = f"it has {size} bytes where the article says {remote.size}"
        elif remote.md5 is not None:
            digest = _md5(part)
            if digest != remote.md5:
                problem = f"its MD5 is {digest} where the article says {remote.md5}"
        if problem is not None:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"The download of {_shown(remote.name)} is damaged: {problem}. The partial "
                "file was deleted; run the same command again to fetch it anew (if this "
                "repeats, the file changed on figshare or a proxy alters it)."
            )
        os.chmod(part, file_mode())
        os.replace(part, final)


def download_god(
    subjects: Sequence[int | str],
    dest: str | os.PathLike,
    *,
    release: Release = "spm",
    article: int = GOD_ARTICLE,
    api_url: str = FIGSHARE_API,
    dry_run: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
    page_size: int = 100,
    chunk_size: int = 1 << 20,
) -> DownloadResult:
    """Download the GOD fMRI files of ``subjects`` from figshare into ``dest``.

    Parameters
    ----------
    subjects : sequence of int or str
        Subject numbers (``3``, ``"3"``, ``"Subject3"``, ``"sub-03"``).
    dest : path-like
        Destination folder (created; removed again when a failed run leaves it
        empty); the ``--god`` folder of ``fmri2image decode``.
    release : {"spm", "fmriprep"}
        ``SubjectN.h5``, or the split ``SubjectN_ImageNetTraining.h5``,
        ``SubjectN_ImageNetTest.h5`` (and ``SubjectN_Imagery.h5``).
    article : int
        figshare article id.
    api_url : str
        Base of the figshare API (a test server, a mirror).
    dry_run : bool
        Only plan: list the files, their sizes and what would happen; nothing is
        fetched or written (``dest`` is not created).
    progress : bool
        One tqdm bar in bytes per file.
    timeout : float
        Seconds a connection may stay silent.
    retries : int
        Automatic resumptions of a transfer that failed in a way a retry may fix
        (a dropped connection, a timeout, an HTTP 5xx), waiting ``retry_wait``,
        then twice as long, and so on.
    page_size, chunk_size : int
        Files per page of the API's file list; bytes per read.

    Returns
    -------
    DownloadResult

    Raises
    ------
    ConfigError
        A subject is not in the article (the message lists those that are), or
        ``api_url`` is not an http(s) URL.
    DownloadError
        A transfer failed (the data fetched so far is kept and a rerun resumes),
        or the article lists a requested file with an unusable name, size, MD5 or
        URL (nothing is written).
    OutputLockedError
        Another fmri2image run is writing into ``dest``.
    """
    if release not in ("spm", "fmriprep"):
        raise ConfigError(f"release must be 'spm' or 'fmriprep', got {release!r}.")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} is a file; pass a folder to download into.")
    files, refused = _read_file_list(article, api_url, page_size, timeout)
    wanted = {
        name
        for n in _subject_numbers(subjects)
        for names in god_file_names(n, release)
        for name in names
    }
    bad = [entry for entry in refused if entry.name in wanted]
    if bad:
        listed = "; ".join(f"{_shown(entry.name)} with {entry.reason}" for entry in bad)
        raise DownloadError(
            f"The file list of figshare article {article} cannot be trusted for the files "
            f"asked for: it lists {listed}. Nothing was fetched or written. Check --api-url "
            "and --article (a mirror or test server may serve a damaged list), and run the "
            "command again."
        )
    for entry in refused:
        _warn_skipped(entry, article)
    chosen = select_god_files(files, subjects, release, article=article)
    numbers = tuple(dict.fromkeys(_subject_of(f.name) for f in chosen))
    if dry_run:
        outcomes = tuple(_plan(f, dest) for f in chosen)
        return DownloadResult(dest, article, release, numbers, outcomes, dry_run=True)
    fetcher = _Fetcher(
        dest,
        timeout=timeout,
        retries=retries,
        retry_wait=retry_wait,
        progress=progress,
        chunk_size=chunk_size,
    )
    listed = {f.name: f for f in files}
    created = _missing_folders(dest)
    try:
        with output_lock(dest, flag="--dest", remove=True):
            collected = _collect_leftovers(dest, listed)
            if collected:
                log.info(
                    "removed %d leftover(s) of earlier runs from %s: %s",
                    len(collected), _shown(dest / PARTIAL_DIR), "; ".join(collected),
                )  # fmt: skip
            try:
                outcomes = tuple(fetcher.fetch(f) for f in chosen)
            finally:  # a failed run keeps only what a rerun can resume
                with contextlib.suppress(OSError):
                    _collect_leftovers(dest, listed)
    finally:  # a run that leaves nothing in a folder it made removes that folder again
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
    return DownloadResult(dest, article, release, numbers, outcomes)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    return missing


def _collect_leftovers(dest: Path, listed: Mapping[str, RemoteFile]) -> list[str]:
    """Remove what in ``DEST/.partial`` a run cannot resume; what was removed, and why.

    A ``<name>.part`` file of a file the article lists, holding 1 byte to that file's
    size, is kept (resumed by the run that fetches ``name``).  Removed: empty parts,
    parts longer than their file, parts of names the list does not hold, and every
    other file or link (temporary files).  A folder inside is left alone.  An empty
    ``.partial`` is removed.
    """
    partial = dest / PARTIAL_DIR
    if not partial.exists():
        return []
    if not partial.is_dir():
        raise ConfigError(
            f"{partial} is not a folder; {PARTIAL_DIR} in --dest holds the transfers in "
            "progress. Move that file away and run the command again."
        )
    removed: list[str] = []
    for entry in sorted(partial.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            continue
        why = None
        remote = listed.get(entry.name.removesuffix(".part"))
        if entry.is_symlink() or not entry.is_file() or not entry.name.endswith(".part"):
            why = "not a part file"
        elif remote is None:
            why = "not of a file the article lists"
        elif (size := entry.stat().st_size) == 0:
            why = "empty"
        elif size > remote.size:
            why = f"{size} bytes, longer than the file"
        if why is not None:
            entry.unlink(missing_ok=True)
            removed.append(f"{_shown(entry.name)} ({why})")
    with contextlib.suppress(OSError):  # not empty: parts to resume (or a folder)
        partial.rmdir()
    return removed


def _subject_of(name: str) -> int:
    m = _GOD_NAME.fullmatch(name)
    assert m is not None, name
    return int(m.group(1))


def stimulus_note(dest: str | os.PathLike = "GOD_DIR", fmri_file: str = "Subject3.h5") -> str:
    """Where the stimulus images come from and where ``fmri2image decode`` expects them."""
    return (
        "note: the stimulus images are not in the figshare article (ImageNet licence). "
        "Request them from the dataset's authors (Horikawa & Kamitani 2017, Generic "
        "Object Decoding) and lay them out beside the fMRI files as `fmri2image decode` "
        "expects:\n"
        "\n"
        f"  {Path(dest)}/\n"
        f"    {fmri_file}\n"
        "    imageID_training.csv   (or image_training_id.csv)\n"
        "    imageID_test.csv       (or image_test_id.csv)\n"
        "    training/n01518878_10042.JPEG ...\n"
        "    test/n01443537_22563.JPEG ..."
    )


# --------------------------------------------------------------------------- other datasets
# Datasets behind the seam list their public files (Dataset.remote_files): figshare
# download URLs (size and MD5 from the server / the published sums), files named in a
# figshare article (figshare://ARTICLE/NAME, resolved through the API) or files of a
# Hugging Face hub dataset (hf://datasets/REPO/PATH, fetched with huggingface_hub).

_HF = re.compile(r"hf://datasets/(?P<repo>[^/]+/[^/]+)/(?P<path>.+)")
_FIGSHARE = re.compile(r"figshare://(?P<article>\d+)/(?P<name>.+)")


@dataclass(frozen=True)
class DatasetDownload:
    """Outcome of :func:`download_dataset`: one line per file.

    ``actions``: ``"fetched"`` / ``"skipped"`` (already complete) after a run; in a dry
    run ``"fetch"`` or ``"present"`` (a file of that name is there; a real run checks it).
    """

    dataset: str
    dest: Path
    subjects: tuple[int, ...]
    release: str | None
    files: tuple[Any, ...]  # fmri2image.data.dataset.RemoteFile
    actions: tuple[str, ...]
    dry_run: bool = False

    def format(self) -> str:
        subjects = ", ".join(map(str, self.subjects))
        release = f" ({self.release} release)" if self.release else ""
        head = (
            f"dry run: {self.dataset} subject(s) {subjects}{release} into {self.dest}; "
            "nothing is fetched or written"
            if self.dry_run
            else f"{self.dataset} subject(s) {subjects}{release} in {self.dest}:"
        )
        names = [_shown(f.name) for f in self.files]
        width = max(map(len, names), default=4)
        lines = [head]
        for f, name, action in zip(self.files, names, self.actions):
            size = _human(f.size) if f.size else "?"
            check = f"md5 {f.md5}" if f.md5 else "no published md5"
            lines.append(f"  {name:<{width}}  {size:>10}  {action:<8}  {_shown(f.url)}  ({check})")
        n = len(self.files)
        verb = "would be considered" if self.dry_run else "handled"
        lines.append(f"{n} file(s) {verb}")
        return "\n".join(lines)


def _safe_relative(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and all(
            p and p not in (".", "..") and not p.startswith(".") and _name_problem(p) is None
            for p in parts
        )
    )


def _probe(url: str, timeout: float) -> int:
    """The size of the file at ``url`` (a one-byte range request)."""
    try:
        with _open(url, timeout=timeout, headers={"Range": "bytes=0-0"}) as resp:
            total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
            size = int(total) if total.isdigit() else int(resp.headers.get("Content-Length") or 0)
    except _NETWORK_ERRORS as exc:
        raise DownloadError(
            f"Cannot reach {_shown(url)}: {_reason(exc, timeout)}. Check the network "
            "connection and run the same command again.",
            retryable=True,
        ) from None
    if size <= 0:
        raise DownloadError(f"{_shown(url)} does not say how large the file is; nothing fetched.")
    return size


def _hf_fetch(repo: str, path: str, dest: Path, progress: bool) -> None:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ConfigError(
            "Downloading from the Hugging Face hub needs huggingface_hub: pip install "
            "'fmri2image[nsd]'."
        ) from None
    try:  # resumable: an interrupted transfer continues from its .incomplete file
        hf_hub_download(repo, path, repo_type="dataset", local_dir=str(dest))
    except Exception as exc:  # the hub raises many kinds; the user gets one message
        raise DownloadError(
            f"Downloading {path} from the Hugging Face dataset {repo} failed: "
            f"{type(exc).__name__}: {exc}. Check the network connection (and HF_ENDPOINT / "
            "HF_TOKEN if you use a mirror), then run the same command again: finished files "
            "are kept and the transfer resumes.",
            retryable=True,
        ) from None


def download_dataset(
    dataset: str,
    subjects: Sequence[int | str],
    dest: str | os.PathLike,
    *,
    release: str | None = None,
    api_url: str = FIGSHARE_API,
    dry_run: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    retry_wait: float = 2.0,
) -> DatasetDownload:
    """Download the public files of ``subjects`` of a registered dataset into ``dest``.

    The files are those of :meth:`Dataset.remote_files
    <fmri2image.data.dataset.Dataset.remote_files>`.  figshare files go through the
    same resumable, checksummed transfer as GOD's (``DEST/.partial``, atomic
    install); hub files through ``huggingface_hub`` (resumable).  A dry run lists
    the files without touching the network or ``dest``.

    Raises
    ------
    ConfigError
        An unknown dataset or subject, a dataset with no public files, a bad release.
    DownloadError
        A transfer failed (what was fetched is kept; a rerun resumes).
    """
    from fmri2image.data.dataset import dataset_class
    from fmri2image.data.god import parse_subject

    cls = dataset_class(dataset)
    numbers = tuple(dict.fromkeys(parse_subject(s) for s in subjects))
    options = {} if release is None else {"release": release}
    files = tuple(cls.remote_files(numbers, **options))
    if not files:
        raise ConfigError(
            f"Dataset {dataset!r} lists no public files to download"
            + (f"; {cls.where_to_get}" if cls.where_to_get else ".")
        )
    bad = [f.name for f in files if not _safe_relative(f.name)]
    if bad:
        raise ConfigError(f"Dataset {dataset!r} lists unsafe file names: {bad[:3]}.")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} is a file; pass a folder to download into.")
    if dry_run:
        actions = tuple("present" if (dest / f.name).is_file() else "fetch" for f in files)
        return DatasetDownload(dataset, dest, numbers, release, files, actions, dry_run=True)
    fetcher = _Fetcher(
        dest, timeout=timeout, retries=retries, retry_wait=retry_wait, progress=progress,
        chunk_size=1 << 20,
    )  # fmt: skip
    listings: dict[int, dict[str, RemoteFile]] = {}
    actions: list[str] = []
    created = _missing_folders(dest)
    try:
        with output_lock(dest, flag="--dest", remove=True):
            for f in files:
                if (hf := _HF.fullmatch(f.url)) is not None:
                    done = (dest / f.name).is_file()
                    _hf_fetch(hf["repo"], hf["path"], dest, progress)
                    actions.append("skipped" if done else "fetched")
                    continue
                if (fs := _FIGSHARE.fullmatch(f.url)) is not None:
                    article = int(fs["article"])
                    if article not in listings:
                        listed = list_article_files(article, api_url=api_url, timeout=timeout)
                        listings[article] = {r.name: r for r in listed}
                    remote = listings[article].get(fs["name"])
                    if remote is None:
                        raise DownloadError(
                            f"figshare article {article} does not list {_shown(fs['name'])}; "
                            f"it lists {', '.join(sorted(listings[article])[:8]) or 'nothing'}."
                            " The release may have changed: please report it."
                        )
                    remote = RemoteFile(f.name, remote.size, remote.url, f.md5 or remote.md5)
                elif _is_http(f.url):
                    remote = RemoteFile(f.name, f.size or _probe(f.url, timeout), f.url, f.md5)
                else:
                    raise ConfigError(
                        f"Cannot fetch {_shown(f.url)}: not http(s), figshare:// or hf://."
                    )
                (dest / f.name).parent.mkdir(parents=True, exist_ok=True)
                actions.append(fetcher.fetch(remote).action)
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:
                break
    return DatasetDownload(dataset, dest, numbers, release, files, tuple(actions))
