"""The one reader of a run folder: what ``run`` / ``compare`` / ``decode`` / ``generate``
/ ``demo`` left behind.

:func:`load_run` reads ``config.toml`` (the resolved :class:`~.config.RunConfig`),
``stages.json`` (every stage of the graph: its key, whether it was reused, its
artifact folder) and the long tables under ``tables/``.  ``fmri2image report``,
``fmri2image generate --from`` and the Python API read runs through it, so a run
folder has one meaning.

``stages.json`` records each stage's artifact folder *relative to the cache* and
the cache's absolute path, so a stage is found where the run put it; when the cache
moved together with the run folder (``OUT/cache``, the default), it is found there.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmri2image import _io
from fmri2image.errors import ConfigError, DataFormatError

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.pipeline.config import RunConfig
    from fmri2image.pipeline.graph import StageRecord

__all__ = [
    "RUN_FILES",
    "STAGES_FILE",
    "RunResult",
    "StageEntry",
    "load_run",
    "read_table",
    "require_run_folder",
    "write_stages",
]

log = logging.getLogger(__name__)

STAGES_FILE = "stages.json"
STAGES_FORMAT = "fmri2image.stages"
STAGES_VERSION = 2
CONFIG_FILE = "config.toml"
#: The files that make a folder a run folder.
RUN_FILES = (CONFIG_FILE, STAGES_FILE, "tables/decoding.parquet")
#: The long tables every run writes (``tables/<name>.parquet`` and ``.csv``).
TABLES = ("scores", "summary", "paired", "decoding")


@dataclass(frozen=True)
class StageEntry:
    """One stage of a run, as ``stages.json`` records it.

    Attributes
    ----------
    name : str
        ``"mapping/effnet-lite0/s1/ROI_HVC"``.
    key : str
        The stage's cache key.
    reused : bool
    seconds : float
    folder : Path or None
        Its artifact folder, where it is now (None: not found).
    reason : str
        Why it was computed (empty when reused).
    """

    name: str
    key: str
    reused: bool
    seconds: float
    folder: Path | None
    reason: str = ""


def write_stages(out: str | os.PathLike, cache: str | os.PathLike, records: Sequence[StageRecord]):
    """Write ``OUT/stages.json``: the cache's absolute path and each stage's record, its
    folder relative to the cache."""
    cache = Path(cache).resolve()
    stages = []
    for r in records:
        folder = Path(r.folder).resolve()
        try:
            rel = folder.relative_to(cache).as_posix()
        except ValueError:  # pragma: no cover - the graph writes under its cache
            rel = str(folder)
        stages.append({**r.to_dict(), "folder": rel})
    return _io.save_json(
        Path(out) / STAGES_FILE,
        {"format": STAGES_FORMAT, "version": STAGES_VERSION, "cache": str(cache), "stages": stages},
    )


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of one long table (parquet), NaN as None and ``subject`` as str.

    Raises
    ------
    DataFormatError
        The file cannot be read.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        rows = pq.read_table(str(path)).to_pylist()
    except Exception as exc:  # pyarrow raises its own error types
        raise DataFormatError(
            f"Cannot read {path} ({exc}); rerun the command that wrote the run folder "
            "to write its tables again."
        ) from exc
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
        if r.get("subject") is not None:
            r["subject"] = str(r["subject"])
    return rows


@dataclass(frozen=True, eq=False)
class RunResult:
    """A run folder, read.

    Attributes
    ----------
    root : Path
    config : RunConfig or None
        The resolved configuration (None when ``config.toml`` no longer parses with
        this version; :attr:`config_text` still holds it).
    config_text : str
    config_table : dict
        ``config.toml`` as plain TOML (empty when it does not parse).
    cache : Path or None
        The stage cache the run used, where it is now.
    stages : tuple of StageEntry
    """

    root: Path
    config: RunConfig | None
    config_text: str
    config_table: dict[str, Any]
    cache: Path | None
    stages: tuple[StageEntry, ...]
    _tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @cached_property
    def folders(self) -> dict[str, Path]:
        """The artifact folder of every stage that was found, by stage name."""
        return {s.name: s.folder for s in self.stages if s.folder is not None}

    def folder(self, name: str) -> Path | None:
        """The artifact folder of stage ``name`` (None when it is not there)."""
        return self.folders.get(name)

    def table(self, name: str) -> list[dict[str, Any]]:
        """Rows of ``tables/<name>.parquet`` (read once; an absent table has no rows)."""
        if name not in self._tables:
            path = self.root / "tables" / f"{name}.parquet"
            self._tables[name] = read_table(path) if path.is_file() else []
        return self._tables[name]

    def section(self, name: str) -> dict[str, Any]:
        """One ``[section]`` of ``config.toml`` as plain TOML values."""
        value = self.config_table.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def summary(self) -> list[dict[str, Any]]:
        return self.table("summary")

    @property
    def paired(self) -> list[dict[str, Any]]:
        return self.table("paired")

    @property
    def decoding(self) -> list[dict[str, Any]]:
        return self.table("decoding")

    @property
    def scores(self) -> list[dict[str, Any]]:
        return self.table("scores")


def require_run_folder(root: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` unless ``root`` holds what a run leaves (the message
    names what is missing and the commands that make a run folder)."""
    root = Path(root)
    missing = [p for p in RUN_FILES if not (root / p).is_file()]
    if missing or not root.is_dir():
        raise _not_a_run(root, missing)


def _not_a_run(root: Path, missing: Sequence[str]) -> ConfigError:
    makers = (
        "`fmri2image run`, `compare`, `decode`, `generate` and `demo` make one (the "
        "demo's is OUT/results)"
    )
    if not root.is_dir():
        return ConfigError(f"{root} is not a folder; pass the output folder of a run: {makers}.")
    hint = ""
    if all((root / "results" / p).is_file() for p in RUN_FILES):
        hint = f" {root / 'results'} is one: pass it instead."
    return ConfigError(
        f"{root} is not a run folder: {', '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} missing; {makers}.{hint}"
    )


def _stage_entries(root: Path, data: Any) -> tuple[Path | None, tuple[StageEntry, ...]]:
    path = root / STAGES_FILE
    if not (
        isinstance(data, dict)
        and data.get("format") == STAGES_FORMAT
        and isinstance(data.get("stages"), list)
        and all(isinstance(s, dict) for s in data["stages"])
    ):
        raise DataFormatError(
            f"{path} is not a stage record of this fmri2image version; rerun the command "
            "that wrote the run folder (every stage whose artifact verifies is reused)."
        )
    recorded = Path(str(data.get("cache") or ""))
    caches = [c for c in (recorded, root / "cache") if str(c) and c.is_dir()]
    entries = []
    for s in data["stages"]:
        rel = str(s.get("folder") or "")
        folder = next((c / rel for c in caches if rel and (c / rel).is_dir()), None)
        entries.append(
            StageEntry(
                name=str(s.get("name", "")),
                key=str(s.get("key", "")),
                reused=bool(s.get("reused")),
                seconds=float(s.get("seconds") or 0.0),
                folder=folder,
                reason=str(s.get("reason") or ""),
            )
        )
    return (caches[0] if caches else None), tuple(entries)


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """Read a run folder.

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder (the message names what is missing and the
        commands that make one).
    DataFormatError
        ``stages.json`` is not a stage record.
    """
    from fmri2image.pipeline.config import load_config, parse_toml

    root = Path(run_dir)
    require_run_folder(root)
    config_text = (root / CONFIG_FILE).read_text(encoding="utf-8", errors="replace")
    try:
        table = parse_toml(config_text)
    except ConfigError as exc:
        log.warning("warning: %s does not parse (%s)", root / CONFIG_FILE, exc)
        table = {}
    try:
        config = load_config(root / CONFIG_FILE)
    except ConfigError as exc:
        log.warning("warning: %s is not a configuration of this version (%s)", root, exc)
        config = None
    cache, stages = _stage_entries(root, _io.load_json(root / STAGES_FILE))
    return RunResult(root, config, config_text, table, cache, stages)
