"""Reading a run folder for the report: :class:`RunFolder` and :func:`load_run`.

A thin view over :func:`fmri2image.pipeline.results.load_run`, the one reader of run
folders; the rest of the report package uses only the attributes of
:class:`RunFolder` (and its methods).

Everything in a run folder is untrusted input.  The tables are checked by
``load_run`` (a damaged one is a :class:`~fmri2image.errors.DataFormatError` naming
it); what ``summary.json`` says of each subject × ROI is taken only where it has the
expected shape (the rest is left out with a warning); and every file the report
opens under the run folder goes through :meth:`RunFolder.file`, which refuses a path
that leads (by ``..`` in a name, or a link) out of the run folder.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["DataBlock", "RunFolder", "is_stem", "load_run", "require_run_folder", "shown"]

log = logging.getLogger(__name__)

#: What ``summary.json`` records of the run.
SUMMARY_FILE = "summary.json"


@dataclass
class DataBlock:
    """What ``summary.json`` records of one subject × ROI.

    Attributes
    ----------
    stems : list of str
        The test images, in order.
    wnids : dict of str to str
        Each test image's true category.
    info : dict
        Facts of the data (split, training samples, voxels, ...), plain values only.
    """

    stems: list[str]
    wnids: dict[str, str]
    info: dict[str, Any]


@dataclass
class RunFolder:
    """What :func:`load_run` read from a run folder.

    Attributes
    ----------
    root : Path
    config : dict
        ``config.toml`` parsed (empty when it does not parse).
    config_text : str
        ``config.toml`` as written.
    stages : list of dict
        ``stages.json``: one record per stage (name, key, reused, seconds, reason).
    folders : dict of str to Path
        Each stage's artifact folder that could be found inside the run's cache, by
        stage name (the report itself reads nothing there).
    summary, paired, decoding : list of dict
        The rows of ``tables/<name>.parquet``.
    blocks : dict of (subject, roi) to DataBlock
        What ``summary.json`` records of each subject × ROI.
    versions : dict of str to str
        The package versions the run's evaluations recorded (``summary.json``), empty
        when it has none.
    decoders : dict of str to (str, str)
        The ``model`` of the rows above, as the report names it, to the (model, mapper)
        it stands for: a run with several mappers names its decoders ``"<model> ·
        <mapper>"`` (their rows keep ``encoder`` and ``mapper``), one with a single
        mapper by the model alone.
    """

    root: Path
    config: dict[str, Any]
    config_text: str
    stages: list[dict[str, Any]]
    folders: dict[str, Path]
    summary: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    decoding: list[dict[str, Any]]
    blocks: dict[tuple[str, str], DataBlock] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    decoders: dict[str, tuple[str, str]] = field(default_factory=dict)

    def decoder(self, name: str) -> tuple[str, str]:
        """The (model, mapper) that the report's model ``name`` stands for."""
        return self.decoders.get(name, (name, "ridge"))

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    @cached_property
    def _real_root(self) -> Path:
        return self.root.resolve()

    def inside(self, path: Path) -> Path | None:
        """``path`` when it is a regular file that lies, links resolved, inside the run
        folder; None otherwise (one that leads out of it is named in a warning)."""
        return inside(path, self.root, self._real_root)

    def file(self, *parts: str) -> Path | None:
        """The regular file ``root/parts`` when it lies inside the run folder (see
        :meth:`inside`), else None."""
        return self.inside(self.root.joinpath(*parts))


def inside(path: Path, root: Path, real_root: Path | None = None) -> Path | None:
    """``path`` when it is a regular file inside ``root`` once links are resolved."""
    try:
        if not path.is_file():
            return None
        real = path.resolve()
    except (OSError, ValueError):  # a name too long, a loop of links, a NUL
        return None
    try:
        real.relative_to(real_root or root.resolve())
    except ValueError:
        log.warning("warning: %s leads out of the run folder %s; left out", shown(path), root)
        return None
    return path


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: Any, limit: int = 200) -> str:
    """``text`` for a message: control characters as escapes, cut at ``limit``."""
    from fmri2image._io import shown as escaped

    return escaped(text, limit)


def is_stem(value: Any) -> bool:
    """Whether ``value`` can be the stem of a picture: one file name (no ``/``, ``\\``,
    ``..``, control character)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and value not in (".", "..")
        and not any(c in value for c in "/\\")
        and not _CONTROL.search(value)
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _summary(root: Path) -> tuple[Path | None, dict[str, Any]]:
    """``summary.json`` (its path and content; an empty dict when it cannot be read)."""
    from fmri2image._io import load_json

    path = inside(root / SUMMARY_FILE, root)
    if path is None:
        return None, {}
    try:
        data = load_json(path)
    except (OSError, ValueError) as exc:
        log.warning("warning: cannot read %s (%s); the test images are taken from images/",
                    path, shown(exc))  # fmt: skip
        return None, {}
    return path, data if isinstance(data, dict) else {}


def _versions(data: dict[str, Any]) -> dict[str, str]:
    """The recorded package versions: plain names and values only, cut short."""
    found = data.get("versions")
    if not isinstance(found, dict):
        return {}
    return {
        shown(k, 100): shown(v, 100)
        for k, v in found.items()
        if isinstance(v, (str, int, float)) and not isinstance(v, bool) and v
    }


def _data_blocks(path: Path | None, data: dict[str, Any]) -> dict[tuple[str, str], DataBlock]:
    """What ``summary.json`` records of each subject × ROI (what does not have the
    expected shape is left out with a warning)."""
    if path is None:
        return {}
    entries = data.get("blocks")
    if not isinstance(entries, list):
        log.warning("warning: %s has no list of blocks; the test images are taken from "
                    "images/", path)  # fmt: skip
        return {}
    out: dict[tuple[str, str], DataBlock] = {}
    damaged = 0
    for b in entries:
        b = b if isinstance(b, dict) else {}
        subject, roi = b.get("subject"), b.get("roi")
        stems = b.get("test_images")
        labels = b.get("true_labels") or []
        info = b.get("info") or {}
        if not (
            (
                isinstance(subject, str)
                or (isinstance(subject, int) and not isinstance(subject, bool))
            )
            and isinstance(roi, str)
            and isinstance(stems, list)
            and all(is_stem(s) for s in stems)
            and isinstance(labels, list)
            and all(isinstance(w, str) for w in labels)
            and isinstance(info, dict)
        ):
            damaged += 1
            continue
        out[(str(subject), roi)] = DataBlock(
            stems=list(stems),
            wnids=dict(zip(stems, labels)),
            info={str(k): v for k, v in info.items() if _plain(v)},
        )
    if damaged:
        log.warning("warning: %s: %d of its blocks are damaged and left out (their test "
                    "images are taken from images/)", path, damaged)  # fmt: skip
    return out


def require_run_folder(root: Path) -> None:
    """Raise ConfigError unless ``root`` holds what a run leaves."""
    from fmri2image.pipeline.results import require_run_folder as require

    require(root)


def load_run(run_dir: str | os.PathLike) -> RunFolder:
    """Read a run folder (see :func:`fmri2image.pipeline.results.load_run`).

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder; the message names what is missing and the
        commands that make one.
    DataFormatError
        A table or ``stages.json`` cannot be read, or is not what this version writes.
    """
    from fmri2image.pipeline.results import load_run as read

    run = read(run_dir)
    summary_path, summary = _summary(run.root)
    rows, paired, decoders = _decoders(run.summary, run.decoding, run.paired)
    return RunFolder(
        root=run.root,
        config=run.config_table,
        config_text=run.config_text,
        stages=[
            {
                "name": s.name,
                "key": s.key,
                "reused": s.reused,
                "seconds": s.seconds,
                "reason": s.reason,
            }
            for s in run.stages
        ],
        folders=dict(run.folders),
        summary=rows["summary"],
        paired=paired,
        decoding=rows["decoding"],
        blocks=_data_blocks(summary_path, summary),
        versions=_versions(summary),
        decoders=decoders,
    )


#: How the report names a model × mapper when a run compares several mappers.
DECODER_SEPARATOR = " · "


def _decoders(
    summary: list[dict[str, Any]], decoding: list[dict[str, Any]], paired: list[dict[str, Any]]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """The rows with ``model`` naming the decoder (model, or model · mapper when the run
    has several mappers), and what each name stands for."""
    mappers = {r.get("mapper") or "ridge" for r in (*summary, *decoding)}
    several = len(mappers) > 1
    decoders: dict[str, tuple[str, str]] = {}

    def name(model: str, mapper: str | None) -> str:
        mapper = mapper or "ridge"
        label = f"{model}{DECODER_SEPARATOR}{mapper}" if several else model
        decoders.setdefault(label, (model, mapper))
        return label

    tables = {
        key: [{**r, "encoder": r["model"], "model": name(r["model"], r.get("mapper"))}
              for r in rows]
        for key, rows in (("summary", summary), ("decoding", decoding))
    }  # fmt: skip
    pairs = [
        {**r, "model_a": name(r["model_a"], r.get("mapper_a")),
         "model_b": name(r["model_b"], r.get("mapper_b"))}
        for r in paired
    ]  # fmt: skip
    return tables, pairs, decoders
