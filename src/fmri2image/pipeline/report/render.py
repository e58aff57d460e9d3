"""Writing the report of a :class:`~fmri2image.pipeline.report.model.Report`: the page
(jinja2 templates filled with its :mod:`~fmri2image.pipeline.report.sections`, the style
sheet inlined, the charts as inline SVG, the pictures as ``data:`` URIs), the markdown
tables and the CSVs, each as text: :func:`~fmri2image.pipeline.report.write_report`
writes them all at once.

Whatever the run folder names (models, generators, metrics, ROIs, databases, labels)
is untrusted text: the page escapes it (jinja2's autoescape, :mod:`.charts`), the
markdown through :func:`md_text`, so a name cannot make a link, a tag or a picture.
A picture that cannot be read (damaged, truncated, not a picture, or declaring more
than :data:`MAX_PIXELS` pixels) is left out with a warning naming it.

jinja2 is imported when a page is rendered, not with this module.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import functools
import io
import logging
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from fmri2image import __version__
from fmri2image.pipeline.report import charts
from fmri2image.pipeline.report.format import (
    BEST,
    FILTERS,
    SIG,
    arrow,
    decoding_refs,
    decoding_value,
    num,
    p_value,
    winner,
)
from fmri2image.pipeline.report.loader import shown
from fmri2image.pipeline.report.model import (
    SIGNIFICANT,
    Report,
    Tables,
    installed_versions,
    recorded_versions,
)
from fmri2image.pipeline.report.sections import (
    BarChart,
    Histogram,
    bar_charts,
    comparison_tables,
    decoding_tables,
    distributions,
    facts,
    heatmaps,
    paired_tables,
    picture_grids,
)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- CSV
CSV_COLUMNS = {
    "comparison": ("subject", "roi", "model", "mapper", "generator", "metric", "mean",
                   "ci_low", "ci_high", "n", "n_subjects", "floor", "ceiling", "chance",
                   "unpaired", "higher_is_better", "floor_difference", "p_floor", "best"),
    "paired": ("subject", "roi", "generator", "metric", "model_a", "mapper_a", "model_b",
               "mapper_b", "n", "mean_difference", "p_value", "p_holm", "better", "winner",
               "significant"),
    "decoding": ("subject", "roi", "model", "mapper", "stage", "database", "metric", "value",
                 "baseline", "chance", "higher_is_better", "best"),
    "labels": ("subject", "roi", "model", "database", "image", "true_wnid", "true_name",
               "top1_wnid", "top1_name", "hit"),
}  # fmt: skip


def _csv_cell(v: Any) -> Any:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV with ``columns`` (None and NaN as empty cells), as
    :func:`fmri2image.pipeline.tables.write_csv` writes them."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def csv_tables(tables: Tables) -> dict[str, str]:
    """Each table's CSV text, by name (``comparison``, ``paired``, ...)."""
    return {name: csv_text(getattr(tables, name), cols) for name, cols in CSV_COLUMNS.items()}


# ---------------------------------------------------------------- markdown
#: Line breaks and other control characters: a name stays on its line.
_MD_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
#: What markdown (GitHub's) reads as markup: emphasis, code, links and pictures,
#: HTML tags and entities, headings, table cells, strike-through, math.
_MD_SPECIAL = re.compile(r"[\\`*_\[\]<>#|&~$]")
#: What GitHub turns into a link without markup: ``www.``, ``scheme://``, e-mail.
_MD_AUTOLINK = re.compile(r"(?i)(?<=www)\.|:(?=//)|@(?=[\w.+-]*\.)")


def md_text(text: Any) -> str:
    """``text`` for markdown, as text: every character that markdown would read as
    markup backslash-escaped, line breaks as spaces."""
    text = _MD_BREAKS.sub(" ", str(text))
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(), text)
    return _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), text)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A GitHub table of cells that are markdown already (names through md_text)."""
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _md_comparison_cell(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    mean = num(r["mean"])
    if r["best"]:
        mean = f"**{mean}** {BEST}"
    ci = "" if r["ci_low"] is None else f" [{num(r['ci_low'])}, {num(r['ci_high'])}]"
    return f"{mean}{ci} ({num(r['floor'])} / {num(r['ceiling'])})"


def _md_decoding_cell(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "n/a"
    value = decoding_value(r)
    if r.get("best"):
        value = f"**{value}** {BEST}"
    refs = decoding_refs(r)
    return f"{value} ({refs})" if refs else value


def markdown(rep: Report, tables: Tables) -> str:
    """``report.md``: the comparison, paired and decoding tables as GitHub markdown."""
    md = md_text
    out = [
        f"# fmri2image report: {md(rep.run.root.resolve().name)}",
        "",
        f"Models: {', '.join(map(md, rep.models))}. "
        f"Generators: {', '.join(map(md, rep.generators))}. fmri2image {__version__}.",
        "",
        "## Comparison",
        "",
        f"Each cell: the mean of the `predicted` reconstructions [95 % CI] (floor / ceiling: "
        f"the `random` and `true` conditions). {BEST} marks the best of each column, when "
        "that method beats its own floor by a paired test (one-sided sign-flip, "
        "Holm-corrected, p < 0.05) (↑ higher is better, ↓ lower).",
    ]
    for table in comparison_tables(rep, tables.comparison):
        out += ["", f"### {md(table.block.title)} ({md(table.n_images)})", ""]
        header = ["model", "generator", *(md(f"{m}{arrow(h)}") for m, h in table.metrics)]
        rows = [
            [md(model), md(gen), *map(_md_comparison_cell, cells)]
            for model, gen, cells in table.rows
        ]
        rows.append(["reference", "", *map(md, table.references)])
        out += _md_table(header, rows, "ll" + "r" * len(table.metrics))
    if tables.paired:
        out += [
            "",
            "## Paired tests between models",
            "",
            "Sign-flip permutation tests on the images both models reconstructed; p (Holm) is "
            f"Holm-corrected within each subject × ROI × generator × metric; {SIG} marks "
            f"p (Holm) < {SIGNIFICANT}.",
        ]
        for block, tests in paired_tables(rep, tables.paired):
            out += ["", f"### {md(block.title)}", ""]
            rows = []
            for t in tests:
                holm = p_value(t.get("p_holm"))
                if t["significant"]:
                    holm = f"**{holm}** {SIG}"
                rows.append([md(t["generator"]), md(t["metric"]),
                             f"{md(t['model_a'])} − {md(t['model_b'])}",
                             num(t.get("mean_difference"), "+.3f"), p_value(t.get("p_value")),
                             holm, md(winner(t))])  # fmt: skip
            out += _md_table(
                ["generator", "metric", "a − b", "difference", "p", "p (Holm)", "better"],
                rows,
                "lllrrrl",
            )
    if tables.decoding:
        out += ["", "## Decoding", "",
                "Each cell: the score (baseline: the training mean's; chance). "
                f"{BEST} marks the best model."]  # fmt: skip
        for table in decoding_tables(rep, tables.decoding):
            out += ["", f"### {md(table.block.title)}: {md(table.stage)}", ""]
            rows = [[*map(md, lead), *map(_md_decoding_cell, cells)] for lead, cells in table.rows]
            n_scores = len(table.header) - table.n_lead
            header = [md(h) for h in table.header]
            out += _md_table(header, rows, "l" * table.n_lead + "r" * n_scores)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML
@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=jinja2.select_autoescape(("html", "html.j2"), default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(FILTERS)
    env.globals.update(BEST=BEST, SIG=SIG, SIGNIFICANT=SIGNIFICANT)
    return env


def _css() -> str:
    return resources.files(__package__).joinpath("report.css").read_text(encoding="utf-8")


#: A picture declaring more pixels than this is not opened (a decompression bomb: a
#: small file that would take gigabytes once decoded).  Photographs and
#: reconstructions have far fewer.
MAX_PIXELS = 40_000_000
#: The picture formats the page embeds (Pillow's names); a file of another format is
#: not opened, whatever its suffix.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")


class PictureError(Exception):
    """A picture that is not one the page embeds (too large, an unknown format)."""


def _thumbnail(path: Path | None, size: int) -> tuple[str, bool] | None:
    """``path`` as a JPEG ``data:`` URI at most ``size`` pixels a side, and whether it
    is tiny (shown without smoothing); None when there is no picture to read (one that
    cannot be read is named in a warning)."""
    if path is None or not path.is_file():
        return None
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    raise PictureError(
                        f"it declares {width} x {height} pixels, more than {MAX_PIXELS:,}"
                    )
                im.draft("RGB", (size, size))  # JPEG: decode at a smaller scale
                rgb = im.convert("RGB")
            tiny = max(rgb.size) < 64
            rgb.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=80, optimize=True)
    except Exception as exc:  # a damaged picture: whatever its decoder raises, skip it
        log.warning("warning: cannot read picture %s (%s); left out", shown(path), shown(exc))
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), tiny


def html(rep: Report, tables: Tables, size: int) -> str:
    """``report.html``: one self-contained page (see the package docstring)."""
    from markupsafe import Markup

    colors = charts.colors(rep.models)

    def color(model: str) -> str:
        return colors.get(model, charts.PALETTE[0])

    def svg(parts: Iterable[str]) -> Markup:  # our own SVG, its texts escaped by charts
        return Markup("".join(parts))

    def bar(c: BarChart) -> str:
        items = [{**it, "color": color(it["model"])} for it in c.items]
        return charts.bar_chart(c.metric, c.higher, items, c.chance)

    def histogram(h: Histogram) -> str:
        return charts.histogram(
            h.values,
            h.lo,
            h.hi,
            bins=h.bins,
            color=color(h.model),
            title=h.title,
            marks=h.marks,
            notes=h.notes,
        )

    heat = heatmaps(rep)
    heat_svgs = [] if heat is None else [
        charts.heatmap(title, heat.rows, heat.cols, values, heat.vmin, heat.vmax, heat.higher)
        for title, values in heat.maps
    ]  # fmt: skip
    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    recorded = recorded_versions(rep.run)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            rep=rep,
            title=rep.title,
            css=Markup(_css()),  # our own style sheet, inside <style>: not to be escaped
            facts=facts(rep, now),
            comparison=comparison_tables(rep, tables.comparison),
            bars=[(b, svg(map(bar, cs))) for b, cs in bar_charts(rep, tables.comparison)],
            heat=heat,
            heat_svgs=svg(heat_svgs),
            any_paired=bool(tables.paired),
            paired=paired_tables(rep, tables.paired),
            any_decoding=bool(tables.decoding),
            decoding=decoding_tables(rep, tables.decoding),
            grids=picture_grids(rep),
            thumbnail=functools.partial(_thumbnail, size=size),
            size=size,
            distributions=[(b, svg(map(histogram, hs))) for b, hs in distributions(rep)],
            versions=recorded or installed_versions(),
            versions_note=(
                "As the run's evaluations recorded them."
                if recorded
                else "Installed now: the run folder records none (a run without pictures, or one written by an older version)."
            ),
        )
    )
