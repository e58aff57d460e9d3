"""The figures every bench prints: one value, its goal, and whether it is met.

Each ``bench/bench_*.py`` ends with one JSON line::

    {"bench": NAME, "figures": {FIGURE: {"value": V, "goal": ">= 0.8", "met": true}}}

A goal is ``">= X"``, ``"<= X"`` or ``"info"`` (informational, always met).
"""

from __future__ import annotations

from typing import Any


def figure(value: float, goal: str = "info", digits: int = 6) -> dict[str, Any]:
    """``{"value", "goal", "met"}``, ``value`` rounded to ``digits`` decimals (the goal
    is judged on the value itself)."""
    value = float(value)
    shown = round(value, digits)
    if goal == "info":
        return {"value": shown, "goal": goal, "met": True}
    op, _, target = goal.partition(" ")
    if op not in (">=", "<=") or not target:
        raise ValueError(f"a goal is '>= X', '<= X' or 'info', not {goal!r}")
    met = value >= float(target) if op == ">=" else value <= float(target)
    return {"value": shown, "goal": goal, "met": bool(met)}
