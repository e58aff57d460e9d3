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

Only the standard library speaks HTTP (:mod:`urllib.request`); proxies are taken
from the usual ``HTTPS_PROXY`` / ``HTTP_PROXY`` variables.

The stimulus images are not in the article (ImageNet licence): see
:func:`stimulus_note`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fmri2image import __version__
from fmri2image._io import file_mode, tqdm_kwargs
from fmri2image._lock import output_lock
from fmri2image.errors import ConfigError, Fmri2ImageError

__all__ = [
    "FIGSHARE_API",
    "GOD_ARTICLE",
    "PARTIAL_DIR",
    "DownloadError",
    "DownloadResult",
    "FileOutcome",
    "RemoteFile",
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
        width = max((len(f.name) for f in self.files), default=4)
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
                lines.append(f"  {f.name:<{width}}  {_human(f.size):>10}  {note}")
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
            lines.append(f"  {f.name:<{width}}  {_human(f.size):>10}  {note}")
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


def _open(url: str, *, timeout: float, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)


def _get_json(url: str, timeout: float) -> Any:
    with _open(url, timeout=timeout, headers={"Accept": "application/json"}) as resp:
        body = resp.read()
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the answer is not JSON ({exc})") from None


def _parse_entry(entry: Any) -> RemoteFile | None:
    """A figshare file record -> :class:`RemoteFile`; None for link-only or nameless ones."""
    if not isinstance(entry, dict) or not entry.get("name") or not entry.get("download_url"):
        return None
    if entry.get("is_link_only"):
        return None
    md5 = entry.get("computed_md5") or entry.get("supplied_md5") or None
    try:
        size = int(entry.get("size"))
    except (TypeError, ValueError):
        return None
    file_id = entry.get("id")
    return RemoteFile(
        name=str(entry["name"]),
        size=size,
        url=str(entry["download_url"]),
        md5=str(md5).strip().lower() if md5 else None,
        file_id=int(file_id) if isinstance(file_id, int) else None,
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

    Raises
    ------
    DownloadError
        The API cannot be reached or answers something else.
    """
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
    files = [f for f in map(_parse_entry, entries) if f is not None]
    return tuple(files)


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
    from fmri2image.data.god import parse_subject

    numbers = list(dict.fromkeys(parse_subject(s) for s in subjects))
    if not numbers:
        raise ConfigError("Name at least one subject (--subjects 3, or --subjects 1 2 3 4 5).")
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
        h5 = sorted(f.name for f in files if f.name.endswith(".h5"))
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
                log.info("%s is already complete; skipped", remote.name)
                return FileOutcome(remote.name, final, remote.size, "skipped")
            log.warning(
                "warning: %s differs from the article's file (%s); fetching it again (the "
                "old file is replaced only once the new one is verified)",
                final,
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
                    remote.name, exc.reason, wait, attempt + 1, self.retries,
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
            f"Downloading {remote.name} ({_human(remote.size)}) from {remote.url} failed: "
            f"{reason}. {advice}: {kept}.",
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
                log.info("the server cannot resume %s; fetching it from the start", remote.name)
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
                        remote.name, _human(have), _human(remote.size),
                    )  # fmt: skip
            elif status == 200:
                if have:
                    log.info(
                        "the server ignored the range request for %s; fetching it from the start",
                        remote.name,
                    )
                have, mode = 0, "wb"
            elif status == 206:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"The server resumed {remote.name} at byte {start} instead of {have}, so "
                    "the partial file was deleted; run the same command again to fetch it "
                    "from the start.",
                    retryable=True,
                )
            else:
                raise DownloadError(
                    f"Downloading {remote.name} from {remote.url} failed: unexpected HTTP "
                    f"status {status}. Run the same command again.",
                    retryable=True,
                )
            self._stream(remote, part, resp, mode, have)

    def _stream(self, remote: RemoteFile, part: Path, resp, mode: str, have: int) -> None:
        from tqdm.auto import tqdm

        got = have
        with (
            open(part, mode) as fh,
            tqdm(
                total=remote.size, initial=have, desc=remote.name, unit="B", unit_scale=True,
                unit_divisor=1024, **tqdm_kwargs(self.progress),
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
                f"The download of {remote.name} is damaged: {problem}. The partial file was "
                "deleted; run the same command again to fetch it anew (if this repeats, the "
                "file changed on figshare or a proxy alters it)."
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
        Destination folder (created); the ``--god`` folder of ``fmri2image decode``.
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
        A subject is not in the article (the message lists those that are).
    DownloadError
        A transfer failed; the data fetched so far is kept and a rerun resumes.
    OutputLockedError
        Another fmri2image run is writing into ``dest``.
    """
    if release not in ("spm", "fmriprep"):
        raise ConfigError(f"release must be 'spm' or 'fmriprep', got {release!r}.")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest} is a file; pass a folder to download into.")
    files = list_article_files(article, api_url=api_url, page_size=page_size, timeout=timeout)
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
    with output_lock(dest, flag="--dest"):
        outcomes = tuple(fetcher.fetch(f) for f in chosen)
        partial = dest / PARTIAL_DIR
        if partial.is_dir() and not any(partial.iterdir()):
            partial.rmdir()
    return DownloadResult(dest, article, release, numbers, outcomes)


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
