"""Runs that never mix: a run's results appear all at once, or not at all.

A run writes its results into a hidden staging folder inside its output folder
(``OUT/.staging-<run id>/``), next to the caches it reuses (feature stores), while
the previous run's results stay visible and untouched.  When everything is written,
:func:`publish` swaps the results in:

1. it writes a journal, ``OUT/.publish.json`` (atomically): the staged entries, the
   previous run's entries and a trash folder.  From this point the new result is
   committed: an interrupted swap is always rolled *forward*;
2. the previous run's entries move to the trash (one ``rename`` each), then the
   staged ones into place;
3. the journal is removed, then the trash and the empty staging folder.

:func:`recover` redoes steps 2–3 when a journal is found (a run killed during the
swap), and removes staging folders of runs killed before they published.  Both run
under the output's writer lock (:mod:`fmri2image._lock`), so what a reader sees is
the complete previous result, or, once a journal exists, the complete new one
(readers call :func:`recover` first).  Every rename stays inside one folder, so it is
atomic on POSIX file systems.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from fmri2image import _io
from fmri2image.errors import DataFormatError

__all__ = ["JOURNAL", "new_run_id", "publish", "recover", "staging_dir"]

log = logging.getLogger(__name__)

JOURNAL = ".publish.json"
_STAGING = ".staging-"
_TRASH = ".trash-"


def new_run_id() -> str:
    """A fresh run id (recorded in the run's summary)."""
    return uuid.uuid4().hex[:12]


def staging_dir(out: str | os.PathLike, run_id: str) -> Path:
    """``OUT/.staging-<run_id>/``, created empty."""
    path = Path(out) / f"{_STAGING}{run_id}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _move(src: Path, dst: Path) -> None:
    if src.exists() or src.is_symlink():
        os.replace(src, dst)


def _finish(out: Path, journal: dict) -> None:
    stage = out / journal["stage"]
    trash = out / journal["trash"]
    trash.mkdir(exist_ok=True)
    for name in journal["old"]:
        if name not in journal["new"] or (stage / name).exists():
            _move(out / name, trash / name)
    for name in journal["new"]:
        _move(stage / name, out / name)
    (out / JOURNAL).unlink(missing_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(stage, ignore_errors=True)


def publish(out: str | os.PathLike, stage: str | os.PathLike, previous: Iterable[str] = ()) -> None:
    """Replace the previous run's entries of ``out`` by everything in ``stage``.

    Parameters
    ----------
    out : path
        The output folder (its writer lock must be held).
    stage : path
        The staging folder of this run, complete.
    previous : iterable of str
        Names of the previous run's entries in ``out`` (its summary and result
        folders); they are removed even where the new run has no entry of that name,
        so the summary always describes exactly the files beside it.
    """
    out, stage = Path(out), Path(stage)
    new = sorted(p.name for p in stage.iterdir())
    journal = {
        "stage": stage.name,
        "trash": f"{_TRASH}{stage.name.removeprefix(_STAGING)}",
        "new": new,
        "old": sorted(set(previous) | set(new)),
    }
    _io.save_json(out / JOURNAL, journal)
    _finish(out, journal)


def recover(out: str | os.PathLike) -> bool:
    """Finish an interrupted :func:`publish` and drop abandoned staging folders.

    Call it with the output's writer lock held.  Returns True when a swap was
    finished.

    Raises
    ------
    DataFormatError
        The journal is unreadable (the message names it and the fix).
    """
    out = Path(out)
    finished = False
    path = out / JOURNAL
    if path.is_file():
        journal = _io.load_json(path)
        if not isinstance(journal, dict) or not {"stage", "trash", "new", "old"} <= set(journal):
            raise DataFormatError(
                f"{path} is damaged, so an interrupted publication of results cannot be "
                "finished. Delete it and the hidden .staging-* / .trash-* folders beside it, "
                "then run the command again."
            )
        log.info("finishing the publication of results interrupted in %s", out)
        _finish(out, journal)
        finished = True
    for entry in out.glob(f"{_STAGING}*"):
        log.info("removing %s, left by a run that was stopped before it finished", entry)
        shutil.rmtree(entry, ignore_errors=True)
    for entry in out.glob(f"{_TRASH}*"):
        shutil.rmtree(entry, ignore_errors=True)
    return finished
