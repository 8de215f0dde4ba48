"""Plain-text tables and JSON-safe conversion shared by the result objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["fmt", "jsonable", "table"]


def fmt(value: Any, digits: int = 6) -> str:
    """A number in ``digits`` significant digits; ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Left-aligned first column, right-aligned numbers, a rule under the header.

    >>> print(table(["name", "value"], [["mu", 1.5], ["theta", -0.25]]))
    name   value
    ------------
    mu       1.5
    theta  -0.25
    """
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(items: Sequence[str]) -> str:
        first = items[0].ljust(widths[0])
        rest = [item.rjust(widths[i + 1]) for i, item in enumerate(items[1:])]
        return "  ".join([first, *rest]).rstrip()

    out = [title] if title else []
    out.append(line(list(headers)))
    out.append("-" * (sum(widths) + 2 * (len(widths) - 1)))
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def jsonable(value: Any) -> Any:
    """Recursively turn numpy arrays/scalars and tuples into plain JSON types
    (NaN becomes None, ±∞ the strings ``"inf"``/``"-inf"``, so the output is strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if np.isnan(value):
            return None
        return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")
    return value
