"""A result too wide for the terminal prints compact (a row a paragraph), not as a table whose
long verdict wraps a word a line at 80 columns (issue 28)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from pipelines import display

COLUMNS = ["arm", "benchmark", "n", "accuracy", "verdict"]
ROWS = [
    ("cft", "mathematics_heldout", 60, 0.1, "no significant difference from sft_random (p = 0.090; Holm over 6: 0.45)"),
    ("base", "gsm8k", 20, 0.05, "[/INST] \x1b[31m"),
]


def _printed(width: int) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False)
    console.print(display.result("accuracy", COLUMNS, ROWS, console.width))
    return buffer.getvalue()


def test_narrow_is_compact_and_keeps_every_value_verbatim():
    assert not isinstance(display.result("accuracy", COLUMNS, ROWS, 80), Table)
    text = _printed(80)
    lines = text.splitlines()
    assert lines[:2] == ["accuracy", "arm: cft"]
    flat = " ".join(text.split())
    assert "benchmark: mathematics_heldout · n: 60 · accuracy: 0.1" in flat
    assert "(p = 0.090; Holm over 6: 0.45)" in flat
    assert "verdict: [/INST] \\x1b[31m" in flat and "\x1b" not in text
    assert max(len(line) for line in lines) <= 80


def test_wide_enough_is_a_table():
    assert isinstance(display.result("accuracy", COLUMNS, ROWS, 200), Table)
    assert "┃ arm " in _printed(200)
