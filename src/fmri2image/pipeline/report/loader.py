"""Reading a run folder for the report: :class:`RunFolder` and :func:`load_run`.

A thin view over :func:`fmri2image.pipeline.results.load_run`, the one reader of run
folders; the rest of the report package uses only the attributes of
:class:`RunFolder` (and :meth:`RunFolder.section`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RunFolder", "load_run", "require_run_folder"]


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
        A table or ``stages.json`` cannot be read.
    """
    from fmri2image.pipeline.results import load_run as read

    run = read(run_dir)
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
        summary=run.summary,
        paired=run.paired,
        decoding=run.decoding,
    )
