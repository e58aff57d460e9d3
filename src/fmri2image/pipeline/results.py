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

A run folder is read as untrusted input: a table without the columns (or with
columns of other types) that this version writes, or a ``stages.json`` whose fields
have the wrong types, is a :class:`~fmri2image.errors.DataFormatError` that names
the file; a stage folder is only looked for inside a cache (the recorded one, then
``OUT/cache``): one recorded as an absolute path, with ``..``, or resolving (through
links) outside that cache is not followed.
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


#: Per long table, the columns every row must fill (the rest may be empty).
KEY_COLUMNS = {
    "scores": ("subject", "roi", "model", "mapper", "generator", "condition", "image", "metric"),
    "summary": ("subject", "roi", "model", "mapper", "generator", "condition", "metric"),
    "paired": (
        "subject", "roi", "generator", "metric", "model_a", "mapper_a", "model_b", "mapper_b",
    ),
    "decoding": ("subject", "roi", "model", "mapper", "stage", "metric"),
}  # fmt: skip

#: Columns earlier versions did not write, and the value they meant (every map was ridge).
LEGACY_COLUMNS = {"mapper": "ridge", "mapper_a": "ridge", "mapper_b": "ridge"}


def read_table(path: str | os.PathLike, *, name: str | None = None) -> list[dict[str, Any]]:
    """The rows of one long table (parquet), NaN as None and ``subject`` as str.

    ``name`` (one of :data:`TABLES`) checks the table against what this version
    writes: every column present with its type (numbers where numbers are written,
    text where text is, true/false where flags are), and no empty cell in the
    columns that name a row (:data:`KEY_COLUMNS`).

    Raises
    ------
    DataFormatError
        The file cannot be read, or (with ``name``) is not such a table.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises its own error types
        raise DataFormatError(
            f"Cannot read {path} ({exc}); rerun the command that wrote the run folder "
            "to write its tables again."
        ) from exc
    if name is not None:
        from fmri2image.pipeline.tables import TABLE_COLUMNS

        for col, value in LEGACY_COLUMNS.items():  # a run folder of an earlier version
            if col in TABLE_COLUMNS[name] and col not in table.schema.names:
                table = table.append_column(col, pa.array([value] * table.num_rows, pa.string()))
        _check_table(path, name, table)
    rows = table.to_pylist()
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                r[k] = None
        if r.get("subject") is not None:
            r["subject"] = str(r["subject"])
    return rows


def _check_table(path: Path, name: str, table: Any) -> None:
    """Raise DataFormatError unless ``table`` has the columns and types of ``name``."""
    import pyarrow as pa

    from fmri2image.pipeline.tables import _SCHEMAS

    accepts = {
        "string": (pa.types.is_string, pa.types.is_large_string),
        "float64": (pa.types.is_floating, pa.types.is_integer),
        "int64": (pa.types.is_integer,),
        "bool": (pa.types.is_boolean,),
    }
    what = {"string": "text", "float64": "numbers", "int64": "integers", "bool": "true/false"}
    fix = "rerun the command that wrote the run folder to write its tables again"
    columns = dict(zip(table.schema.names, table.schema.types))
    missing = [c for c, _ in _SCHEMAS[name] if c not in columns]
    if missing:
        raise DataFormatError(
            f"{path} is not a {name} table of this fmri2image version: it lacks the "
            f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; {fix}."
        )
    for col, kind in _SCHEMAS[name]:
        typ = columns[col]
        ok = accepts[kind] + ((pa.types.is_integer,) if col == "subject" else ())
        if not (pa.types.is_null(typ) or any(test(typ) for test in ok)):
            raise DataFormatError(
                f"{path} is not a {name} table of this fmri2image version: its column "
                f"{col} holds {typ} where {what[kind]} are expected; {fix}."
            )
    empty = [c for c in KEY_COLUMNS[name] if table.column(c).null_count]
    if empty:
        raise DataFormatError(
            f"{path} is damaged: its column{'s' if len(empty) > 1 else ''} "
            f"{', '.join(empty)} {'have' if len(empty) > 1 else 'has'} empty cells; {fix}."
        )


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
        """Rows of ``tables/<name>.parquet`` (read once; an absent table has no rows).

        Raises
        ------
        DataFormatError
            The table cannot be read, or is not a table of this version (its columns,
            their types, an empty cell where a row is named).
        """
        if name not in self._tables:
            path = self.root / "tables" / f"{name}.parquet"
            known = name if name in TABLES else None
            self._tables[name] = read_table(path, name=known) if path.is_file() else []
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


#: The fields of a stage record: (what a value must be, its test).
_STAGE_FIELDS: dict[str, tuple[str, Any]] = {
    "name": ("text", lambda v: isinstance(v, str)),
    "key": ("text", lambda v: isinstance(v, str)),
    "reused": ("true or false", lambda v: isinstance(v, bool)),
    "seconds": ("a number", lambda v: _is_number(v)),
    "folder": ("a path (text)", lambda v: isinstance(v, str)),
    "reason": ("text", lambda v: isinstance(v, str)),
}


def _stage_entries(root: Path, data: Any) -> tuple[Path | None, tuple[StageEntry, ...]]:
    path = root / STAGES_FILE
    fix = (
        "rerun the command that wrote the run folder (every stage whose artifact "
        "verifies is reused)"
    )
    if not (
        isinstance(data, dict)
        and data.get("format") == STAGES_FORMAT
        and isinstance(data.get("stages"), list)
        and all(isinstance(s, dict) for s in data["stages"])
    ):
        raise DataFormatError(f"{path} is not a stage record of this fmri2image version; {fix}.")
    recorded_cache = data.get("cache")
    if recorded_cache is not None and not isinstance(recorded_cache, str):
        raise DataFormatError(
            f'{path} is damaged: its "cache" is {_json_text(recorded_cache)} where the '
            f"cache's path (text) is expected; {fix}."
        )
    for i, s in enumerate(data["stages"]):
        for key, (what, test) in _STAGE_FIELDS.items():
            if s.get(key) is not None and not test(s[key]):
                name = s.get("name") if isinstance(s.get("name"), str) else f"number {i + 1}"
                raise DataFormatError(
                    f'{path} is damaged: the "{key}" of stage {name} is '
                    f"{_json_text(s[key])} where {what} is expected; {fix}."
                )
    # The cache the run recorded (absolute, as write_stages writes it), then OUT/cache.
    recorded = Path(recorded_cache) if _is_path(recorded_cache) else None
    caches = [c for c in (recorded, root / "cache") if c is not None and _is_dir(c)]
    entries = []
    outside = []
    for s in data["stages"]:
        rel = s.get("folder") or ""
        folder = None
        if rel and not _relative_inside(rel):
            outside.append(f"{s.get('name') or '?'} ({_json_text(rel)})")
        elif rel:
            folder = next((f for f in (_stage_folder(c, rel) for c in caches) if f), None)
        entries.append(
            StageEntry(
                name=s.get("name") or "",
                key=s.get("key") or "",
                reused=bool(s.get("reused")),
                seconds=float(s.get("seconds") or 0.0),
                folder=folder,
                reason=s.get("reason") or "",
            )
        )
    if outside:
        log.warning(
            "warning: %s records stage folders outside the cache, not followed: %s",
            path,
            "; ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else ""),
        )
    return (caches[0] if caches else None), tuple(entries)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int past float's range
        return False


def _is_path(value: Any) -> bool:
    """Whether ``value`` is an absolute path (text without NUL)."""
    return isinstance(value, str) and "\x00" not in value and os.path.isabs(value)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL
        return False


def _json_text(value: Any, limit: int = 60) -> str:
    """``value`` as JSON text, cut at ``limit`` characters (for messages)."""
    import json

    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _relative_inside(rel: str) -> bool:
    """Whether ``rel`` is a relative path that stays where it starts: not absolute (nor
    with a drive), no ``..``, no NUL."""
    from pathlib import PurePosixPath, PureWindowsPath

    if "\x00" in rel or "\\" in rel:
        return False
    posix, windows = PurePosixPath(rel), PureWindowsPath(rel)
    return not (posix.is_absolute() or windows.drive or windows.root or ".." in posix.parts)


def _stage_folder(cache: Path, rel: str) -> Path | None:
    """``cache/rel`` when it is a folder that lies, links resolved, inside ``cache``."""
    folder = cache / rel
    if not _is_dir(folder):
        return None
    try:
        folder.resolve().relative_to(cache.resolve())
    except (OSError, ValueError):
        return None
    return folder


def load_run(run_dir: str | os.PathLike) -> RunResult:
    """Read a run folder.

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder (the message names what is missing and the
        commands that make one).
    DataFormatError
        ``stages.json`` is not a stage record, or a field of it has the wrong type.
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
