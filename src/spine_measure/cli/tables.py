"""Terminal tables that never cut a name: the first column is printed whole, and the other
columns are split into several tables when the terminal is too narrow for all of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["print_table"]


def print_table(console: Any, title: str | None, columns: Sequence[str],
                rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``columns`` on ``console`` (a rich Console).

    Column 0 (the row's name) is repeated in every part and never wrapped or cut; the other
    columns keep their order and go into as few parts as the console width allows.
    """
    from rich.markup import escape
    from rich.table import Table

    def width(j: int) -> int:
        return max([len(columns[j]), *(len(str(r[j])) for r in rows)]) + 3

    def numeric(j: int) -> bool:  # numbers (and "-") right-aligned, words left-aligned
        cells = [str(r[j]).split(" ")[0].rstrip("%†") for r in rows]
        return all(c in ("-", "") or _is_number(c) for c in cells)

    first = width(0) + 1
    groups: list[list[int]] = [[]]
    used = first
    for j in range(1, len(columns)):
        if groups[-1] and used + width(j) > console.width:
            groups.append([])
            used = first
        groups[-1].append(j)
        used += width(j)
    for i, group in enumerate(groups):
        part = f" ({i + 1}/{len(groups)})" if len(groups) > 1 else ""
        t = Table(title=escape(title) + part if title else None)
        t.add_column(escape(columns[0]), no_wrap=True, min_width=width(0) - 3)
        for j in group:
            t.add_column(escape(columns[j]), justify="right" if numeric(j) else "left",
                         no_wrap=True)
        for r in rows:
            t.add_row(*(escape(str(r[j])) for j in [0, *group]))
        console.print(t)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
