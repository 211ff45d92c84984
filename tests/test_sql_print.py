"""`winnow sql` prints cells verbatim (issue 26, item 3): rich markup in a value is text, and
what would act on a terminal (ESC, CR, BEL, C1, DEL, bidi overrides) is shown escaped.

The real command in a subprocess on a real (empty) run folder, as test_cli_errors runs it.
"""

from __future__ import annotations

import subprocess

import pytest

from pipelines import display
from tests.conftest import BIN, cli_env

MARKUP = "[/INST] x in [a, b]"
QUERY = (
    f"SELECT '{MARKUP}' AS \"[bold]v[/bold]\", chr(27) || '[31mred' AS w, "
    "'a' || chr(13) || 'b' || chr(7) || chr(127) || chr(155) || chr(8238) || 'z' AS controls, "
    "':smile: [link=http://x]y[/link]' AS emoji"
)


def winnow(*args, stdin: str | None = None):
    return subprocess.run(
        [str(BIN / "winnow"), *map(str, args)],
        env=cli_env(COLUMNS="250"),  # one line a row: the assertions read whole cells
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_shown_verbatim(output: str) -> None:
    assert MARKUP in output
    assert "[bold]v[/bold]" in output  # a column name is text too
    assert "\\x1b[31mred" in output and "\x1b" not in output
    assert "a\\x0db\\x07\\x7f\\x9b\\u202ez" in output
    assert ":smile: [link=http://x]y[/link]" in output


def test_a_query_prints_markup_and_escape_sequences_as_text(tmp_path):
    done = winnow("sql", tmp_path, QUERY)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_shown_verbatim(done.stdout)


def test_the_prompt_prints_them_the_same_and_its_errors_too(tmp_path):
    typo = "SELEC '[red]' || chr(27) || '[2J';\n"
    done = winnow("sql", tmp_path, stdin=f"{typo}{QUERY};\n")
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_shown_verbatim(done.stdout)
    assert "SELEC '[red]'" in done.stderr  # the error quotes the query as typed
    assert "\x1b" not in done.stderr and "[/red]" not in done.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("line one\nline two\tend", "line one\nline two\tend"),  # layout stays
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # an OSC that would retitle the terminal
        ("\x00\x08\x0b\x0c\x1f", "\\x00\\x08\\x0b\\x0c\\x1f"),
        ("\x7f\x80\x9f", "\\x7f\\x80\\x9f"),
        ("abc\u202edef\u2066\u2069\u200f", "abc\\u202edef\\u2066\\u2069\\u200f"),
        ("naïve 数学 \\x1b", "naïve 数学 \\x1b"),  # other text, a typed backslash included, as it is
    ],
)
def test_characters_that_act_on_a_terminal_are_shown_escaped(text, shown):
    assert display.visible(text) == shown
    assert display.cell(text).plain == shown
    assert display.cell(None).plain == ""
