"""The comparison report of a ``run`` / ``compare`` / ``demo`` output folder.

:func:`write_report` reads what a run left in its folder and nothing else: the
tables (``tables/*.parquet``), the exported pictures (``images/``) and maps
(``maps/``), ``config.toml``, and ``stages.json`` with the stage folders it lists
(for the retrieved labels and the library versions).  It writes, each atomically:

``report.html``
    One self-contained page: every picture is embedded (a small JPEG ``data:`` URI),
    the style sheet and the plots (SVG) are inline, and there is no script and no
    address outside the file, so it opens from disk, offline, in any browser.  It
    holds what was run; the comparison table (each metric's mean and 95 % interval
    beside its floor, ceiling and chance, the best value of each column marked); the
    paired tests between models; the decoding tables; plots of the metrics, of the
    per-dimension R² and of the labels' Wu–Palmer similarity, and a subject × ROI
    heat map when there are several; a picture grid per subject × ROI with the
    retrieved label of each reconstruction; and the configuration and versions.
``report.md``
    The comparison, paired and decoding tables as GitHub markdown.
``report/``
    The report's tables as CSV: ``comparison.csv``, ``paired.csv``, ``decoding.csv``
    and ``labels.csv``.

``fmri2image report RUN_DIR`` calls it; so does every ``run`` at its end.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from fmri2image._io import atomic_write
from fmri2image.errors import ConfigError
from fmri2image.pipeline.report import model, render
from fmri2image.pipeline.report.loader import RunFolder, load_run, require_run_folder

__all__ = [
    "REPORT_DIR",
    "REPORT_HTML",
    "REPORT_MD",
    "THUMBNAIL",
    "RunFolder",
    "load_run",
    "write_report",
]

#: What :func:`write_report` writes into the run folder by default.
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
REPORT_DIR = "report"

#: Longest side, in pixels, of the pictures embedded in the page.
THUMBNAIL = 160


def write_report(
    run_dir: str | os.PathLike,
    *,
    html_path: str | os.PathLike | None = None,
    thumbnail: int = THUMBNAIL,
) -> dict[str, Path]:
    """Write the report of a run folder.

    Parameters
    ----------
    run_dir : path
        The output folder of ``fmri2image run`` / ``compare`` (``demo``: ``OUT/results``).
    html_path : path, optional
        The HTML file (default ``run_dir/report.html``); it must end in ``.html``.
        The markdown goes beside it (``<name>.md``), the CSV tables into the folder
        ``<name>/`` beside it (default: ``run_dir/report.md``, ``run_dir/report/``).
    thumbnail : int, default 160
        Longest side of the embedded pictures, in pixels.

    Returns
    -------
    dict of str to Path
        ``"html"``, ``"md"``, ``"comparison_csv"``, ``"paired_csv"``,
        ``"decoding_csv"``, ``"labels_csv"``.

    Raises
    ------
    ConfigError
        ``run_dir`` is not a run folder, or ``html_path`` does not end in ``.html``.

    Notes
    -----
    Only the run folder is read (see the package docstring); a stage folder that is
    gone (a deleted cache) leaves out what only it holds (the retrieved labels, the
    versions), with a note in the page.  Every file is written atomically.  When the
    report goes into the run folder, the run's writer lock is held meanwhile (a
    running ``run`` into the same folder makes this wait for nothing: it stops with
    the holder's name).
    """
    from fmri2image._lock import output_lock

    if int(thumbnail) < 16:
        raise ConfigError(f"thumbnail = {thumbnail}: use at least 16 pixels.")
    root = Path(run_dir)
    target = Path(html_path) if html_path is not None else root / REPORT_HTML
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"The report file {target} must end in .html (--out FILE.html).")
    require_run_folder(root)
    inside = _is_inside(target, root)
    with output_lock(root, flag="RUN_DIR") if inside else nullcontext():
        rep = model.build(load_run(root))
        tables = model.tables(rep)
        paths = render.write_tables(target.parent / target.stem, tables)
        md_path = target.with_suffix(".md")
        with atomic_write(md_path, "w", encoding="utf-8") as fh:
            fh.write(render.markdown(rep, tables))
        page = render.html(rep, tables, int(thumbnail))
        with atomic_write(target, "w", encoding="utf-8") as fh:
            fh.write(page)
    return {"html": target, "md": md_path, **paths}


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
