"""The one Markdown table writer of the reports (evaluation, export, the rule's agreement)."""

from __future__ import annotations

from collections.abc import Callable


def table(header: list[str], rows: list[list], cell: Callable[[object], str] = str) -> str:
    """A GitHub Markdown table: the header, its rule, then one line per row, each cell written by `cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])
