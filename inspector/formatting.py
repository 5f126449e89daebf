"""Text shared by the CLI and the dashboard: shapes, counts, numbers, index lists and plain tables.

Pure functions of plain values (no numpy, no model types), so both front ends print the same thing
for the same value and the tests of one cover the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["count_text", "index_text", "num_text", "optional_num_text", "shape_text", "table_lines"]


def shape_text(shape: Any) -> str:
    """``(None, 28, 28, 1)``; a list of shapes (several inputs/outputs) joined by ``, ``; ``?`` when unknown."""
    if shape is None:
        return "?"
    if isinstance(shape, list):
        return ", ".join(shape_text(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def count_text(value: int | None) -> str:
    """A parameter count with thousands separators; ``unknown`` when a weights-only file cannot know it."""
    return "unknown" if value is None else f"{value:,}"


def num_text(value: float | None) -> str:
    """A statistic in a table cell: 4 significant digits, scientific below 1e-3, ``-`` for missing."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"


def optional_num_text(value: float | None) -> str:
    """A scalar such as a bias in prose: 6 significant digits, ``none`` when absent."""
    return "none" if value is None else f"{value:.6g}"


def index_text(values: Iterable[Any], limit: int | None = None) -> str:
    """Indices as people write them: ``7``, ``0-63`` for a contiguous run, else ``0,2,5`` (the first
    ``limit`` of them, then ``,...``). This is also the manifest's ``maps`` column, so it must not change."""
    items = [int(v) for v in values]
    if not items:
        return ""
    if len(items) > 1 and items == list(range(items[0], items[0] + len(items))):
        return f"{items[0]}-{items[-1]}"
    shown = items if limit is None else items[:limit]
    return ",".join(map(str, shown)) + (",..." if len(items) > len(shown) else "")


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Iterable[int] = (),
                max_width: int | None = None, title: str | None = None) -> list[str]:
    """A rule-framed plain-text table: header and rows padded to the widest cell (capped at
    ``max_width``), columns in ``right`` right-aligned, trailing blanks stripped."""
    right = set(right)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if max_width is not None:
        widths = [min(w, max_width) for w in widths]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "-" * len(line(headers))
    return [*([title] if title is not None else []), rule, line(headers), rule, *(line(r) for r in rows), rule]
