"""Plain-text tables of a decoding run: aligned columns, every score beside its baselines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fmri2image.pipeline.decoding import DecodingResult

__all__ = ["comparison_tables", "format_table", "labels_table"]

_NAME_CHARS = 22


def _num(v: Any, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, fmt)


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, align: str | None = None
) -> list[str]:
    """Lines of a table whose columns line up.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of sequences of str
        Cells, already formatted.
    align : str, optional
        One character per column, ``"l"`` or ``"r"``; default: first column left,
        the others right.
    """
    n = len(header)
    align = align or "l" + "r" * (n - 1)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if a == "l" else str(c).rjust(w)
            for c, w, a in zip(cells, widths, align)
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), "-" * len(line(["-" * w for w in widths]))]
    out += [line(r) for r in rows]
    return out


def _bracket(value: str, *inside: str) -> str:
    return f"{value} [{', '.join(inside)}]"


def comparison_tables(result: DecodingResult) -> str:
    """The prediction table and the retrieval table, with their legends."""
    rows = result.summary_rows()
    pred_rows = [
        [
            row["encoder"],
            str(row["dim"]),
            _bracket(
                _num(row["pairwise_id"]),
                _num(row["pairwise_id_baseline"]),
                _num(row["pairwise_id_chance"]),
            ),
            _bracket(_num(row["nway_top1"]), _num(row["nway_chance"])),
            _bracket(_num(row["r2"], "+.3f"), _num(row["r2_baseline"], "+.3f")),
            _num(row["unit_r"], "+.3f"),
            _num(row["alpha_median"], ".0e"),
        ]
        for row in rows
    ]
    lines = [f"Embedding prediction: {result.header()}"]
    lines += format_table(
        [
            "encoder",
            "dim",
            "pairwise id [mean, chance]",
            "n-way top-1 [chance]",
            "R2 [mean]",
            "unit r",
            "alpha (median)",
        ],
        pred_rows,
    )
    ret_rows = []
    for row in rows:
        for ret in row["retrieval"]:
            ret_rows.append(
                [
                    row["encoder"],
                    ret["label"],
                    str(ret["n_database_classes"]),
                    str(ret["k"]),
                    _bracket(
                        _num(ret["hit1"]), _num(ret["hit1_baseline"]), _num(ret["hit1_chance"])
                    ),
                    _bracket(
                        _num(ret["hit5"]), _num(ret["hit5_baseline"]), _num(ret["hit5_chance"])
                    ),
                    _bracket(_num(ret["wup"]), _num(ret["wup_baseline"]), _num(ret["wup_chance"])),
                    f"{ret['n_covered_categories']}/{ret['n_categories']}",
                ]
            )
    lines += ["", "Label retrieval: the labels of the k nearest database items, by cosine"]
    lines += format_table(
        [
            "encoder",
            "database",
            "classes",
            "k",
            "hit@1 [mean, chance]",
            "hit@5 [mean, chance]",
            "Wu-Palmer [mean, chance]",
            "cover",
        ],
        ret_rows,
        align="llrrrrrr",
    )
    lines += [
        "",
        "[mean] = the score of always predicting the training-mean embedding: what a map "
        "that learned nothing predicts",
        "  (for labels: the one label that embedding retrieves, given to every test image).",
        "chance = an image or a database label drawn at random.  n-way: among all test "
        "images.  R2: variance-weighted, vs. the test mean.  unit r: GOD's feature decoding "
        "accuracy, Pearson r of each embedding unit across test images, mean over units "
        "(0 at chance; per unit in prediction/per_dimension.parquet).",
        "cover = test categories present in the database (a category it lacks can never be hit).",
    ]
    return "\n".join(lines)


def _name(wnid: str) -> str:
    from fmri2image.imagenet import wnid_name

    if not wnid:
        return "-"
    name = wnid_name(wnid)
    if len(name) > _NAME_CHARS:
        name = name[: _NAME_CHARS - 1] + "…"
    return f"{name} ({wnid})"


def labels_table(result: DecodingResult) -> str:
    """True vs retrieved top-1 label of every test image, one column per retrieval."""
    columns = [(r.encoder, s) for r in result.results for s in r.retrievals]
    several_dbs = len({s.database for _, s in columns}) > 1
    header = ["test image", "true category"] + [
        f"{enc} / {s.database}" if several_dbs else enc for enc, s in columns
    ]
    rows = []
    for i, (stem, true) in enumerate(zip(result.test_stems, result.test_wnids)):
        cells = [stem, _name(true)]
        for _, s in columns:
            got = s.top1_labels[i] if i < len(s.top1_labels) else ""
            cells.append(("* " if got and got == true else "  ") + _name(got))
        rows.append(cells)
    lines = ["Retrieved top-1 labels"]
    lines += format_table(header, rows, align="l" * len(header))
    lines.append("* = the retrieved label is the true category")
    return "\n".join(lines)
