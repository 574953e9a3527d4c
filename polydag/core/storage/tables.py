"""Small helpers for showing tables to people (Dagster metadata, terminal output)."""

from __future__ import annotations

import math


def _cell(value, float_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else format(value, float_format)
    return str(value)


def markdown_table(frame, columns=None, float_format: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table of a polars DataFrame (the UI renders it)."""
    columns = list(columns or frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in frame.select(columns).iter_rows():
        lines.append("| " + " | ".join(_cell(v, float_format) for v in row) + " |")
    return "\n".join(lines)
