"""Writing the report of a :class:`~fmri2image.pipeline.report.model.Report`: the page
(jinja2 templates filled with its :mod:`~fmri2image.pipeline.report.sections`, the style
sheet inlined, the charts as inline SVG, the pictures as ``data:`` URIs), the markdown
tables and the CSVs.

jinja2 is imported when a page is rendered, not with this module.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import io
import logging
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
from fmri2image.pipeline.report.model import SIGNIFICANT, Report, Tables, versions
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
    "comparison": ("subject", "roi", "model", "generator", "metric", "mean", "ci_low", "ci_high",
                   "n", "n_subjects", "floor", "ceiling", "chance", "unpaired",
                   "higher_is_better", "best"),
    "paired": ("subject", "roi", "generator", "metric", "model_a", "model_b", "n",
               "mean_difference", "p_value", "p_holm", "better", "winner", "significant"),
    "decoding": ("subject", "roi", "model", "stage", "database", "metric", "value", "baseline",
                 "chance", "higher_is_better", "best"),
    "labels": ("subject", "roi", "model", "database", "image", "true_wnid", "true_name",
               "top1_wnid", "top1_name", "hit"),
}  # fmt: skip


def write_tables(folder: Path, tables: Tables) -> dict[str, Path]:
    """``<folder>/<name>.csv`` of each table; their paths by ``<name>_csv``."""
    from fmri2image.pipeline.tables import write_csv

    return {
        f"{name}_csv": write_csv(folder / f"{name}.csv", getattr(tables, name), columns)
        for name, columns in CSV_COLUMNS.items()
    }


# ---------------------------------------------------------------- markdown
def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
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
    out = [
        f"# fmri2image report: {rep.run.root.name}",
        "",
        f"Models: {', '.join(rep.models)}. Generators: {', '.join(rep.generators)}. "
        f"fmri2image {__version__}.",
        "",
        "## Comparison",
        "",
        f"Each cell: the mean of the `predicted` reconstructions [95 % CI] (floor / ceiling: "
        f"the `random` and `true` conditions). {BEST} marks the best of each column "
        "(↑ higher is better, ↓ lower).",
    ]
    for table in comparison_tables(rep, tables.comparison):
        out += ["", f"### {table.block.title} ({table.n_images})", ""]
        header = ["model", "generator", *(f"{m}{arrow(h)}" for m, h in table.metrics)]
        rows = [[model, gen, *map(_md_comparison_cell, cells)] for model, gen, cells in table.rows]
        rows.append(["reference", "", *table.references])
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
            out += ["", f"### {block.title}", ""]
            rows = []
            for t in tests:
                holm = p_value(t.get("p_holm"))
                if t["significant"]:
                    holm = f"**{holm}** {SIG}"
                rows.append([t["generator"], t["metric"], f"{t['model_a']} − {t['model_b']}",
                             num(t.get("mean_difference"), "+.3f"), p_value(t.get("p_value")),
                             holm, winner(t)])  # fmt: skip
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
            out += ["", f"### {table.block.title}: {table.stage}", ""]
            rows = [[*lead, *map(_md_decoding_cell, cells)] for lead, cells in table.rows]
            n_scores = len(table.header) - table.n_lead
            out += _md_table(table.header, rows, "l" * table.n_lead + "r" * n_scores)
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


def _thumbnail(path: Path | None, size: int) -> tuple[str, bool] | None:
    """``path`` as a JPEG ``data:`` URI at most ``size`` pixels a side, and whether it
    is tiny (shown without smoothing); None when there is no picture to read."""
    if path is None or not path.is_file():
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            tiny = max(im.size) < 64
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80, optimize=True)
    except (OSError, ValueError) as exc:
        log.warning("warning: cannot read picture %s (%s)", path, exc)
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
            versions=versions(rep.run),
        )
    )
