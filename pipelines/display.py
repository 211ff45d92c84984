"""Text from a run's tables, shown on a terminal exactly as it is.

A cell holds whatever the data held: `[/INST] x in [a, b]` is rich markup to rich's string
rendering (mangled, or a MarkupError), and an escape sequence in a row would reach the
terminal and act there (colours, a cleared screen, a rewritten title, a hidden line). So cells,
titles and column names are rich `Text` (no markup, emoji codes or highlighting), and the
characters that act on a terminal are shown as escapes: C0 controls but newline and tab (which
only lay the cell out), DEL, C1 controls, and the bidirectional overrides and isolates that
reorder what is shown. `\\x1b` in a cell is the ESC character; a literal backslash stays as it is.
"""

from __future__ import annotations

import re

from rich.table import Table
from rich.text import Text

_ACTING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every character that would act on a terminal written as an escape."""
    return _ACTING.sub(_escape, text)


def _text(value) -> str:
    return "" if value is None else visible(str(value))


def cell(value) -> Text:
    """A value as a table cell, verbatim: None is empty."""
    return Text(_text(value))


def result(title: str, columns: list[str], rows: list[tuple], width: int) -> Table | Text:
    """A table where its natural width fits `width` columns; else a compact form, a row a
    paragraph of `column: value` pairs (a long verdict wrapped a word a line in a table)."""
    if _natural_width(columns, rows) <= width:
        return result_table(title, columns, rows)
    compact = Text(visible(str(title)) + "\n", style="italic")
    for row in rows:
        pairs = [f"{visible(str(column))}: {_text(value)}" for column, value in zip(columns, row, strict=True)]
        compact.append(pairs[0] + "\n", style="bold")
        compact.append("  " + " · ".join(pairs[1:]) + "\n")
    return compact


def _natural_width(columns: list[str], rows: list[tuple]) -> int:
    """Columns as wide as their longest line, with rich's borders and padding (3 a column + 1)."""
    widths = [len(str(column)) for column in columns]
    for row in rows:
        for index, value in enumerate(row):
            longest = max((len(line) for line in _text(value).splitlines()), default=0)
            widths[index] = max(widths[index], longest)
    return sum(widths) + 3 * len(columns) + 1


def result_table(title: str, columns: list[str], rows: list[tuple]) -> Table:
    table = Table(title=cell(title), title_justify="left", highlight=False)
    for column in columns:
        table.add_column(cell(column))
    for row in rows:
        table.add_row(*(cell(value) for value in row))
    return table
