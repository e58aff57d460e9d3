"""One writer at a time: an advisory lock per output folder, held for the whole run.

:func:`output_lock` takes an exclusive POSIX record lock (``fcntl.lockf``) on
``<folder>/.fmri2image.lock`` and writes the holder's pid, host, start time and command into it.  A second run
into the same folder either stops at once with a message naming the holder
(``wait=False``, the CLI default) or waits up to ``timeout`` seconds.

The lock is re-entrant within one process (a command and the engine it calls may
both lock the same folder).  A lock from a killed process is never stale in the
dangerous sense: the kernel drops a process's record locks when it dies (SIGKILL
included), so the next run simply takes it over.  Record locks, unlike ``flock``,
are not inherited by forked children (DataLoader workers), so orphaned workers of a
killed run cannot keep holding it.  The file's old contents are only a record, reported when they name a
process that no longer runs.

``remove=True`` deletes the lock file as the lock is released (``download`` leaves
no lock file in its ``--dest``).  The holder unlinks it while it still holds the
lock, and every run that gets a lock checks that the file it locked is still the one
at the path (else it locks the new one), so two runs never hold locks on two
different files of one folder.  (Unlinking after the release would race: a run that
locked the old file in between would hold a lock on a file the next run cannot see.)

Locks are advisory: they order fmri2image runs, not other programs.  On network
file systems without lock support, and on platforms without :mod:`fcntl`, locking is
skipped with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmri2image.errors import ConfigError

__all__ = ["LOCK_NAME", "OutputLockedError", "output_lock"]

LOCK_NAME = ".fmri2image.lock"

log = logging.getLogger(__name__)

#: Lock files this process holds -> nesting depth.
_HELD: dict[str, int] = {}


class OutputLockedError(ConfigError):
    """Another fmri2image run holds the output folder."""


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another fmri2image run"
    return (
        f"another fmri2image run (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"started {info.get('started', '?')}: {info.get('command', '?')})"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(
    folder: str | os.PathLike,
    *,
    flag: str = "--out",
    wait: bool = False,
    timeout: float = 0.0,
    poll: float = 0.2,
    remove: bool = False,
) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``folder`` (created if missing) for a block.

    Parameters
    ----------
    folder : path-like
        The output folder.
    flag : str
        How the CLI names it, for messages (``"--out"``).
    wait : bool
        Wait for the holder to finish (up to ``timeout`` seconds; 0 = forever)
        instead of stopping at once.
    timeout, poll : float
        Seconds.
    remove : bool
        Delete the lock file when the block ends (only the outermost holder in
        this process does, and only while it still holds the lock).

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    OutputLockedError
        Another run holds the lock (and ``wait`` is False or ``timeout`` passed).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        log.warning("warning: no fcntl on this platform; %s %s is not locked", flag, folder)
        yield Path(folder) / LOCK_NAME
        return
    folder = Path(folder)
    path = folder / LOCK_NAME
    key = str(path.resolve())
    if key in _HELD:  # re-entrant within a process (the CLI and the engine both lock)
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    fd = _open(folder, path)
    locked, moved = False, 0
    try:
        deadline = time.monotonic() + timeout if timeout > 0 else None
        previous = _holder(path)
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):  # e.g. ENOLCK on NFS
                    log.warning(
                        "warning: cannot lock %s %s (%s); continuing unlocked", flag, folder, exc
                    )
                    break
                if not wait or (deadline is not None and time.monotonic() >= deadline):
                    raise OutputLockedError(
                        f"{flag} {folder} is being written by {_describe(_holder(path))}. Wait "
                        f"for it to finish, or choose another {flag}; two runs into one folder "
                        "would mix their results."
                    ) from None
                time.sleep(poll)
                continue
            if _is_at(fd, path):
                locked = True
                break
            moved += 1
            if moved > 1000:  # a file system whose inode numbers are not stable
                log.warning("warning: cannot tell whether %s is locked; continuing", path)
                break
            # The holder removed the file (remove=True) as it released it: the lock is
            # on a file no other run can find, so lock the one now at the path.
            os.close(fd)
            fd = -1
            fd = _open(folder, path)
        pid = previous.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and not _alive(pid):
            log.info(
                "taking over the lock of %s %s from a run that ended without releasing it (pid %d)",
                flag,
                folder,
                pid,
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv[:1] and [Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
            with contextlib.suppress(OSError):
                if remove and locked and _is_at(fd, path):
                    os.unlink(path)  # before the release below: see _is_at above
                else:
                    os.ftruncate(fd, 0)
    finally:
        if fd >= 0:
            os.close(fd)  # closing the descriptor releases the lock


def _open(folder: Path, path: Path) -> int:
    """Open (creating) the lock file; recreates the folder a holder removed meanwhile."""
    for attempt in range(10):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except (FileNotFoundError, FileExistsError):  # a holder removed the empty folder
            if attempt == 9:  # meanwhile (FileExistsError: mkdir saw it, is_dir did not)
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _is_at(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` (not one unlinked since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False
