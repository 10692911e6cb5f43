"""Metrics as text: aligned tables for the console and Markdown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_value(value: Any) -> str:
    """Recalls and precisions as percentages with one decimal; ``None`` as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{100.0 * value:.1f}"
    return str(value)


def metrics_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, title: str = ""
) -> str:
    """A plain-text table, one row per metrics dict; numbers as percentages (``AR@100  41.3``)."""
    cells = [[str(c) for c in columns]] + [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [title] if title else []
    for index, row in enumerate(cells):
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The same table in GitHub Markdown."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_value(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def recall_columns(metrics: Mapping[str, Any]) -> list[str]:
    """The AR columns present in a proposal metrics dict, in their natural order."""
    return [k for k in metrics if k.startswith("AR")]
