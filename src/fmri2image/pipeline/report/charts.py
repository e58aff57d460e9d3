"""The report's charts as inline SVG: each function returns one ``<svg>`` element as a
string, its texts escaped (the page marks these strings safe).  The styles of their
classes (``ct``, ``lab``, ``tick``, ``grid``, ``axis`` ...) are in ``report.css``."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fmri2image.pipeline.report.format import BEST, arrow, num

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3",
           "#8c8c8c", "#ccb974", "#64b5cd")  # fmt: skip


def colors(models: Sequence[str]) -> dict[str, str]:
    """One palette colour per model, in order (the palette repeats past ten)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round values spanning [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    t = math.ceil(lo / step - 1e-9) * step
    out = []
    while t <= hi + step * 1e-9:
        out.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return out


def tick_text(v: float) -> str:
    return f"{v:.3g}"


def domain(values: Iterable[float | None], *, zero: bool = True) -> tuple[float, float]:
    """The axis range of the finite ``values`` (and 0), padded by 5 %."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if zero:
        vals.append(0.0)
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    return lo - (pad if lo < 0 else 0), hi + pad


def mix(a: str, b: str, t: float) -> str:
    """The colour ``t`` of the way from ``#rrggbb`` ``a`` to ``b``."""
    ca = [int(a[i : i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}">{body}</svg>'
    )


def bar_chart(
    metric: str, higher: bool | None, items: Sequence[Mapping[str, Any]], chance: float | None
) -> str:
    """Horizontal bars: the predicted mean of each method, its 95 % interval, its floor
    (▼) and ceiling (◆), the chance line (dashed) or each method's unpaired reference.

    Each item: ``label``, ``color``, ``mean``, ``lo``, ``hi``, ``floor``, ``ceiling``,
    ``unpaired`` (None where unknown) and ``best``.
    """
    label_w, width, row_h, top, bottom = 150, 400, 22, 24, 26
    height = top + row_h * len(items) + bottom
    x0, x1 = label_w + 8, width - 14
    values = [chance]
    for it in items:
        values += [it.get(k) for k in ("mean", "lo", "hi", "floor", "ceiling", "unpaired")]
    lo, hi = domain(values)

    def x(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    parts = [
        f'<text x="4" y="15" class="ct">{_e(metric)}{_e(arrow(higher))}</text>',
    ]
    axis_y = top + row_h * len(items)
    for t in ticks(lo, hi):
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 4}" y2="{axis_y}" '
                     'class="grid"/>')  # fmt: skip
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 14}" class="tick" '
                     f'text-anchor="middle">{tick_text(t)}</text>')  # fmt: skip
    base = x(0.0) if lo <= 0 <= hi else x(lo)
    for i, it in enumerate(items):
        y = top + i * row_h
        mid = y + row_h / 2
        label = str(it["label"])
        short = label if len(label) <= 24 else label[:23] + "…"
        star = f" {BEST}" if it.get("best") else ""
        parts.append(f'<text x="{label_w}" y="{mid + 4:.1f}" text-anchor="end" class="lab">'
                     f'<title>{_e(label)}</title>{_e(short)}{star}</text>')  # fmt: skip
        mean = it.get("mean")
        if mean is not None:
            xa, xb = sorted((base, x(mean)))
            parts.append(f'<rect x="{xa:.1f}" y="{y + 4}" width="{max(xb - xa, 0.8):.1f}" '
                         f'height="{row_h - 8}" fill="{it["color"]}" opacity="0.85">'
                         f'<title>{_e(label)}: {num(mean)}</title></rect>')  # fmt: skip
        if it.get("lo") is not None and it.get("hi") is not None:
            a, b = x(it["lo"]), x(it["hi"])
            parts.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{mid}" y2="{mid}" class="wh"/>'
                         f'<line x1="{a:.1f}" x2="{a:.1f}" y1="{mid - 4}" y2="{mid + 4}" class="wh"/>'
                         f'<line x1="{b:.1f}" x2="{b:.1f}" y1="{mid - 4}" y2="{mid + 4}" class="wh"/>')  # fmt: skip
        if it.get("unpaired") is not None and chance is None:
            u = x(it["unpaired"])
            parts.append(f'<line x1="{u:.1f}" x2="{u:.1f}" y1="{y + 2}" y2="{y + row_h - 2}" '
                         'class="ref"/>')  # fmt: skip
        if it.get("floor") is not None:
            f = x(it["floor"])
            parts.append(f'<path d="M{f - 4:.1f},{y + 1} L{f + 4:.1f},{y + 1} L{f:.1f},{y + 8} Z" '
                         f'class="floor"><title>floor (random) {num(it["floor"])}</title></path>')  # fmt: skip
        if it.get("ceiling") is not None:
            c = x(it["ceiling"])
            parts.append(f'<path d="M{c:.1f},{mid - 5} L{c + 5:.1f},{mid} L{c:.1f},{mid + 5} '
                         f'L{c - 5:.1f},{mid} Z" class="ceil"><title>ceiling (true) '
                         f'{num(it["ceiling"])}</title></path>')  # fmt: skip
    if chance is not None:
        c = x(chance)
        parts.append(f'<line x1="{c:.1f}" x2="{c:.1f}" y1="{top - 6}" y2="{axis_y}" class="chance">'
                     f'<title>chance {num(chance)}</title></line>')  # fmt: skip
    parts.append(f'<line x1="{x0}" x2="{x1}" y1="{axis_y}" y2="{axis_y}" class="axis"/>')
    return _svg(width, height, "".join(parts), f"{metric}: mean and 95 % CI per method")


def histogram(
    values: Sequence[float],
    lo: float,
    hi: float,
    *,
    bins: int,
    color: str,
    title: str,
    marks: Sequence[tuple[float, str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """A histogram of the ``values`` within [lo, hi] (those outside are not drawn: say
    so in ``notes``, one line each); ``marks`` are (x, css class, tooltip) lines."""
    width, left, right, top = 270, 30, 12, 22
    ph = 96
    height = top + ph + 18 + 13 * len(notes) + 4
    counts = [0] * bins
    for v in values:
        if lo <= v <= hi:
            counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts) or 1
    pw = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    parts = [f'<text x="4" y="15" class="ct">{_e(title)}</text>']
    bw = pw / bins
    for i, c in enumerate(counts):
        if c:
            h = c / peak * ph
            parts.append(f'<rect x="{left + i * bw + 0.5:.1f}" y="{top + ph - h:.1f}" '
                         f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" fill="{color}">'
                         f'<title>{c}</title></rect>')  # fmt: skip
    for t in ticks(lo, hi):
        parts.append(f'<text x="{x(t):.1f}" y="{top + ph + 13}" class="tick" '
                     f'text-anchor="middle">{tick_text(t)}</text>')  # fmt: skip
    parts.append(f'<text x="{left - 4}" y="{top + 8}" class="tick" text-anchor="end">{peak}</text>'
                 f'<text x="{left - 4}" y="{top + ph}" class="tick" text-anchor="end">0</text>')  # fmt: skip
    for v, cls, tip in marks:
        if v is not None and math.isfinite(v) and lo <= v <= hi:
            xv = x(v)
            parts.append(f'<line x1="{xv:.1f}" x2="{xv:.1f}" y1="{top - 2}" y2="{top + ph}" '
                         f'class="{cls}"><title>{_e(tip)}</title></line>')  # fmt: skip
    parts.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>'
    )
    for i, note in enumerate(notes):
        y = top + ph + 30 + 13 * i
        parts.append(f'<text x="4" y="{y}" class="tick">{_e(note)}</text>')
    return _svg(width, height, "".join(parts), title)


def heatmap(
    title: str,
    rows: Sequence[str],
    cols: Sequence[str],
    values: Mapping[tuple[str, str], float | None],
    vmin: float,
    vmax: float,
    higher: bool,
) -> str:
    """A grid of ``rows`` × ``cols`` cells shaded on [vmin, vmax] (darker is better)."""
    cell_w, cell_h, left, top = 84, 30, 90, 40
    width = left + cell_w * len(cols) + 10
    height = top + cell_h * len(rows) + 10
    parts = [f'<text x="4" y="15" class="ct">{_e(title)}</text>']
    for j, c in enumerate(cols):
        short = c if len(c) <= 12 else c[:11] + "…"
        parts.append(f'<text x="{left + j * cell_w + cell_w / 2:.1f}" y="{top - 6}" class="lab" '
                     f'text-anchor="middle"><title>{_e(c)}</title>{_e(short)}</text>')  # fmt: skip
    for i, r in enumerate(rows):
        y = top + i * cell_h
        parts.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" class="lab" '
                     f'text-anchor="end">{_e(r)}</text>')  # fmt: skip
        for j, c in enumerate(cols):
            v = values.get((r, c))
            xx = left + j * cell_w
            if v is None:
                fill, text, ink = "#eeeeee", "n/a", "#777"
            else:
                t = 0.5 if vmax <= vmin else (v - vmin) / (vmax - vmin)
                t = t if higher else 1 - t
                fill = mix("#f2f6fb", "#08306b", 0.1 + 0.85 * t)
                text, ink = num(v), "#fff" if t > 0.55 else "#111"
            parts.append(f'<rect x="{xx}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                         f'fill="{fill}"><title>{_e(r)}, {_e(c)}: {text}</title></rect>'
                         f'<text x="{xx + cell_w / 2 - 1:.1f}" y="{y + cell_h / 2 + 3:.1f}" '
                         f'class="hv" fill="{ink}" text-anchor="middle">{text}</text>')  # fmt: skip
    return _svg(width, height, "".join(parts), title)
