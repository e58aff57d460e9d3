"""How the report writes numbers and marks: one copy for the page, the charts and the
markdown (the page's templates use these as filters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# One copy of the number formatting, shared with the printed tables.
from fmri2image.pipeline.tables import num, value_range
from fmri2image.pipeline.tables import p_text as p_value

__all__ = ["BEST", "FILTERS", "SIG", "arrow", "num", "p_value", "value_range", "winner"]

#: Marks the best value of a column.
BEST = "★"
#: Marks a significant paired test.
SIG = "✓"


def arrow(higher: bool | None) -> str:
    """`` ↑`` (higher is better), `` ↓`` (lower) or nothing (no direction)."""
    return "" if higher is None else (" ↑" if higher else " ↓")


def winner(test: Mapping[str, Any]) -> str:
    """The ``better`` cell of a paired test: the better model, ``=`` or ``n/a``."""
    return "=" if test.get("better") == "equal" else str(test.get("winner") or "n/a")


def decoding_value(r: Mapping[str, Any]) -> str:
    v = r.get("value")
    if r.get("metric") == "alpha_median" and v is not None:
        return f"{v:.0f}" if 1 <= abs(v) < 1e6 else f"{v:.2g}"
    return num(v)


def decoding_refs(r: Mapping[str, Any]) -> str:
    """``baseline 0.500; chance 0.500`` (what is known of them)."""
    refs = []
    if r.get("baseline") is not None:
        refs.append(f"baseline {num(r['baseline'])}")
    if r.get("chance") is not None:
        refs.append(f"chance {num(r['chance'])}")
    return "; ".join(refs)


#: The filters the templates use, by name.
FILTERS = {
    "num": num,
    "p_value": p_value,
    "arrow": arrow,
    "winner": winner,
    "decoding_value": decoding_value,
    "decoding_refs": decoding_refs,
}
