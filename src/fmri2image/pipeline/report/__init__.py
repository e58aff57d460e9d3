"""The comparison report of a ``run`` / ``compare`` / ``demo`` output folder.

:func:`write_report` reads what a run left in its folder and nothing else: the
tables (``tables/*.parquet``), ``summary.json`` (the test images of each subject ×
ROI), the exported pictures with their records (``images/``) and maps with their
retrieved labels (``maps/``), ``config.toml`` and ``stages.json``.  Only the package
versions the evaluations recorded come from elsewhere: the evaluation stage folders
that ``stages.json`` lists, found inside the run's cache only (else the versions
installed now are shown, and said to be).  Every file is read as untrusted input: a
damaged table or ``stages.json`` stops the report with one paragraph naming it
(:class:`~fmri2image.errors.DataFormatError`); a damaged picture, map file or record
is left out with a warning naming it; a path that leads out of the run folder (a
link, ``..``) is not followed.  It writes, all at once (everything is made in
memory first; then each file goes to a temporary file beside it, and those are
renamed into place only when all were written, so a failure leaves the previous
report as it was):

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
import tempfile
from contextlib import nullcontext
from pathlib import Path

from fmri2image._io import file_mode
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
        ``run_dir`` is not a run folder; ``html_path`` does not end in ``.html``, or
        it (or the markdown, or the CSV folder) cannot be written there (a file where
        a folder must be, a folder where a file must be).
    DataFormatError
        A table or ``stages.json`` of the run folder is damaged (the message names it).

    Notes
    -----
    Only the run folder is read (see the package docstring); a stage folder that is
    gone (a deleted cache) leaves out only the versions the evaluations recorded,
    with a note in the page.  The files are written all at once: when anything fails
    before they are in place, none of them has changed.  When the report goes into
    the run folder, the run's writer lock is held meanwhile (a running ``run`` into
    the same folder makes this wait for nothing: it stops with the holder's name).
    """
    from fmri2image._lock import output_lock

    if int(thumbnail) < 16:
        raise ConfigError(f"thumbnail = {thumbnail}: use at least 16 pixels.")
    root = Path(run_dir)
    target = Path(html_path) if html_path is not None else root / REPORT_HTML
    if target.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"The report file {target} must end in .html (--out FILE.html).")
    require_run_folder(root)
    md_path = target.with_suffix(".md")
    csv_dir = target.parent / target.stem
    csv_paths = {name: csv_dir / f"{name}.csv" for name in render.CSV_COLUMNS}
    _check_targets(target, [target, md_path, *csv_paths.values()])
    inside = _is_inside(target, root)
    with output_lock(root, flag="RUN_DIR") if inside else nullcontext():
        rep = model.build(load_run(root))
        tables = model.tables(rep)
        files = {csv_paths[name]: text for name, text in render.csv_tables(tables).items()}
        files[md_path] = render.markdown(rep, tables)
        files[target] = render.html(rep, tables, int(thumbnail))
        _write_all(files)
    return {"html": target, "md": md_path, **{f"{n}_csv": p for n, p in csv_paths.items()}}


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
    return True


def _check_targets(target: Path, files: list[Path]) -> None:
    """Raise ConfigError when a file of the report cannot be written where it goes: a
    file (not a folder) above it, or a folder in its place."""
    for path in files:
        for above in path.parents:
            if os.path.lexists(above) and not above.is_dir():
                raise ConfigError(
                    f"Cannot write the report {target}: {above} is a file, not a folder "
                    f"(it would hold {path.name}); pass --out FILE.html in a folder."
                )
        if path.is_dir():
            raise ConfigError(
                f"Cannot write the report {target}: {path} is a folder; pass another "
                "--out FILE.html (FILE.md and the folder FILE/ go beside it)."
            )


def _write_all(files: dict[Path, str]) -> None:
    """Write every file (UTF-8), all at once: each to a temporary file beside it, then,
    once all are written, each renamed into place.  When anything fails before the
    renames, the temporary files and the folders made for them are removed, and no
    file has changed."""
    made: list[Path] = []  # folders this call made, outermost first
    temps: dict[Path, Path] = {}
    try:
        for path, text in files.items():
            missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                made.append(folder)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps[path] = Path(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, file_mode())
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    for path, tmp in temps.items():
        os.replace(tmp, path)
