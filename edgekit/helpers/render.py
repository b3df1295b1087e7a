"""Plain-text tables and number formats for the CLI's human output.

Every cell, header and note is shown through ``printable``: a label or a name with an escape
sequence or a newline in it (from a manifest, a labels file, a model card) is shown escaped,
and cannot forge a line of the table or drive the terminal."""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence

from edgekit.helpers.text import printable


def _cell(value: object) -> str:
    return "" if value is None else printable(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A left-aligned text table with a rule under the header."""
    cells = [[_cell(c) for c in headers]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return _cell(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, r)) + " |" for r in rows])


def csv_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The rows as CSV, one header line first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([_cell(c) for c in headers])
    writer.writerows([[c if isinstance(c, (int, float)) else _cell(c) for c in r] for r in rows])
    return out.getvalue()


_MARK = re.compile(r" \[(\d+)\]")


def _unmarked(row: Sequence[object], notes: Notes) -> list[object]:
    """A row for CSV: its cells without the note marks, the notes' text in a last column."""
    found: list[str] = []
    cells: list[object] = []
    for cell in row:
        if isinstance(cell, str):
            found += [notes.items[int(n) - 1] for n in _MARK.findall(cell)]
            cell = _MARK.sub("", cell)
        cells.append(cell)
    return [*cells, "; ".join(found)]


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], output: str,
                 notes: Notes | None = None, footer: str = "") -> str:
    """A table as the CLI prints it: "text" (with ``footer`` and the notes under it),
    "markdown" (with the notes) or "csv" (the rows alone)."""
    if output == "csv":
        if notes is None or not notes.items:
            return csv_table(headers, rows).rstrip("\n")
        return csv_table([*headers, "notes"], [_unmarked(row, notes) for row in rows]).rstrip(
            "\n")
    rendered = notes.render("\n\n" if output == "markdown" else "\n") if notes else ""
    if output == "markdown":
        return markdown_table(headers, rows) + rendered
    return table(headers, rows) + (f"\n{footer}" if footer else "") + rendered


class Notes:
    """Numbered footnotes for table cells: ``mark("skipped", why)`` gives "skipped [1]"."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, cell: str, *texts: str) -> str:
        for text in texts:
            if text:
                self.items.append(text)
                cell += f" [{len(self.items)}]"
        return cell

    def render(self, separator: str = "\n") -> str:
        return "".join(f"{separator}[{i}] {printable(n)}" for i, n in enumerate(self.items, 1))


def size(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def seconds(s: float | None) -> str:
    return "-" if not s else f"{s:.2f} s"


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def number(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"
