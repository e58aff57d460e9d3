"""Reading a run folder: :class:`RunFolder` and :func:`load_run`.

The rest of the report package uses only the attributes of :class:`RunFolder` (and
:meth:`RunFolder.section`), so this module can be swapped for another run-folder
reader without touching the model, the charts or the templates.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmri2image._io import load_json
from fmri2image.errors import ConfigError, DataFormatError

__all__ = ["RunFolder", "load_run", "require_run_folder"]

log = logging.getLogger(__name__)

#: The files that make a folder a run folder.
_REQUIRED = (
    "config.toml",
    "stages.json",
    "tables/summary.parquet",
    "tables/paired.parquet",
    "tables/decoding.parquet",
)


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
        ``stages.json``: one record per stage (name, key, reused, seconds, folder).
    folders : dict of str to Path
        Each stage's artifact folder that could be found, by stage name.
    summary, paired, decoding : list of dict
        The rows of ``tables/<name>.parquet``.
    """

    root: Path
    config: dict[str, Any]
    config_text: str
    stages: list[dict[str, Any]]
    folders: dict[str, Path]
    summary: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    decoding: list[dict[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}


def _toml():
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

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


def _run_cwd(root: Path, out: Any) -> Path | None:
    """The working folder of the run, from where its ``out`` points (relative paths
    in ``stages.json`` are relative to it)."""
    if not isinstance(out, str) or not out:
        return None
    rel = Path(out)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    parts = root.resolve().parts
    n = len([p for p in rel.parts if p != "."])
    if n == 0:
        return root.resolve()
    if list(parts[-n:]) != [p for p in rel.parts if p != "."]:
        return None
    return Path(*parts[:-n])


def _stage_folder(root: Path, record: Mapping[str, Any], config: Mapping[str, Any]) -> Path | None:
    """The artifact folder of one stage record, where it still is."""
    raw = record.get("folder")
    if not isinstance(raw, str) or not raw:
        return None
    path = Path(raw)
    candidates: list[Path] = []
    if path.is_absolute():
        candidates.append(path)
    else:
        run_cwd = _run_cwd(root, config.get("out"))
        if run_cwd is not None:
            candidates.append(run_cwd / path)
        candidates.append(Path.cwd() / path)
    if len(path.parts) >= 2:  # <cache>/<stage>/<key[:20]>: look in the run's own cache too
        tail = Path(*path.parts[-2:])
        cache = config.get("cache")
        if isinstance(cache, str) and cache:
            c = Path(cache)
            run_cwd = _run_cwd(root, config.get("out"))
            if c.is_absolute():
                candidates.append(c / tail)
            elif run_cwd is not None:
                candidates.append(run_cwd / c / tail)
        candidates.append(root / "cache" / tail)
    for c in candidates:
        if c.is_dir():
            return c
    return None


def require_run_folder(root: Path) -> None:
    """Raise ConfigError unless ``root`` holds what a run leaves (:data:`_REQUIRED`)."""
    makers = (
        "`fmri2image run`, `fmri2image compare` and `fmri2image demo` make one "
        "(the demo's is OUT/results)"
    )
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; pass the output folder of a run: {makers}.")
    missing = [p for p in _REQUIRED if not (root / p).is_file()]
    if missing:
        hint = ""
        for child in ("results",):
            if all((root / child / p).is_file() for p in _REQUIRED):
                hint = f" {root / child} is one: pass it instead."
        raise ConfigError(
            f"{root} is not a run folder: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing; {makers}.{hint}"
        )


def load_run(run_dir: str | os.PathLike) -> RunFolder:
    """Read a run folder (see the package docstring for what is read).

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder; the message names what is missing and the
        commands that make one.
    DataFormatError
        A table or ``stages.json`` cannot be read.
    """
    root = Path(run_dir)
    require_run_folder(root)
    config_text = (root / "config.toml").read_text(encoding="utf-8", errors="replace")
    try:
        config = _toml().loads(config_text)
    except _toml().TOMLDecodeError as exc:
        log.warning(
            "warning: %s does not parse (%s); the report shows it as text",
            root / "config.toml",
            exc,
        )
        config = {}
    stages = load_json(root / "stages.json")
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise DataFormatError(
            f"{root / 'stages.json'} is not a list of stage records; rerun the command "
            "that wrote the run folder."
        )
    folders = {}
    for record in stages:
        folder = _stage_folder(root, record, config)
        if folder is not None and isinstance(record.get("name"), str):
            folders[record["name"]] = folder
    return RunFolder(
        root=root,
        config=config,
        config_text=config_text,
        stages=stages,
        folders=folders,
        summary=_read_table(root / "tables" / "summary.parquet"),
        paired=_read_table(root / "tables" / "paired.parquet"),
        decoding=_read_table(root / "tables" / "decoding.parquet"),
    )
