"""How every benchmark ends: a plot, then JSON or a table (one place, one behaviour)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def emit(
    result: dict[str, Any],
    *,
    plot: Callable[[dict[str, Any], str], None],
    table: Callable[[dict[str, Any]], str],
    plot_path: str | None,
    as_json: bool,
    default_plot: str,
) -> int:
    """Plot to `plot_path` (or `default_plot` when printing a table), then print the result
    as one JSON line or as the human table; the exit status (0)."""
    path = plot_path or (None if as_json else default_plot)
    if path:
        plot(result, path)
        result["plot"] = path
    if as_json:
        print(json.dumps(result))
        return 0
    print(table(result))
    print(f"plot: {path}")
    return 0


def closing_lines(r: dict[str, Any], goals: list[tuple[str, str]], width: int = 30) -> list[str]:
    """The end of every bench's table: each goal met or not (`goals`: key in r["goals"],
    label), the paper reference and the run time."""
    lines = [""]
    for key, label in goals:
        lines.append(f"goal: {label:{width}} {'met' if r['goals'][key] else 'NOT met'}")
    return [*lines, "", f"reference: {r['reference']}", f"run time {r['seconds']:.0f} s"]
