"""Pool rows in the IFD reference's Alpaca prompt (model_loss `template: alpaca`).

The reference renders `instruction` and `input` into two sections of one prompt, so the
pool must keep them apart: the alpaca ingest adapter joins them into the user turn as
"instruction\\ninput" (LLaMA-Factory's join, what training sees) and leaves the source's
`input` field in the row's meta (`fields.input`). Here the input is normalised as ingest
normalised it and cut off the end of the user turn, which gives back the instruction.
Rows from other formats have no input: the whole user turn is the instruction.

Only a row of one user turn (and its response) has an Alpaca rendering; a system turn or
an earlier exchange is an error naming the row, never a silent different prompt.
"""

from __future__ import annotations

import json

from pipelines.ingest import normalize
from pipelines.score import render
from pipelines.score.spans import Located, TemplateError


def instruction_and_input(turns: render.Turns, meta: str | None) -> tuple[str, str]:
    """The row's Alpaca instruction and input ("" when it has none)."""
    prompt, _ = render.split_last_response(turns)
    if [role for role, _ in prompt] != ["user"]:
        roles = " -> ".join(role for role, _ in turns)
        raise TemplateError(f"template alpaca takes one user turn and its response, not {roles}")
    user = prompt[0][1]
    input_text = _meta_input(meta)
    if not input_text:
        return user, ""
    if not user.endswith("\n" + input_text) or len(user) == len(input_text) + 1:
        raise TemplateError("the user turn does not end with the meta's `input` after a newline")
    return user[: -len(input_text) - 1], input_text


def _meta_input(meta: str | None) -> str:
    """`fields.input` of an alpaca-format row's meta, normalised as the adapter normalised it."""
    if not meta:
        return ""
    try:
        parsed = json.loads(meta)
    except json.JSONDecodeError as error:
        raise TemplateError(f"meta is not JSON ({error})") from None
    if not isinstance(parsed, dict) or parsed.get("format") != "alpaca":
        return ""
    value = (parsed.get("fields") or {}).get("input")
    if not value:
        return ""
    try:
        return normalize.text(value, "input")
    except normalize.RowError as error:
        raise TemplateError(f"meta field `input`: {error.reason}") from None


def text_with_prompt(turns: render.Turns, meta: str | None) -> Located | None:
    """The reference's whole text (prompt + response) and where the response is; None when
    the row has no response. Tokenise it with the tokenizer's special tokens (its BOS)."""
    _, response = render.split_last_response(turns)
    if response is None:
        return None
    text = render.alpaca_prompt(*instruction_and_input(turns, meta)) + response
    return Located(text, len(text) - len(response), len(text))


def prompt_text(turns: render.Turns, meta: str | None) -> str:
    """The prompt alone, for a row with no response (its token count)."""
    return render.alpaca_prompt(*instruction_and_input(turns, meta))


def row_error(error: TemplateError, example_id: str, meta: str | None) -> TemplateError:
    """The error with the row it is about: its id, and its file and row when meta has them."""
    where = f"row {example_id}"
    try:
        parsed = json.loads(meta) if meta else {}
    except json.JSONDecodeError:
        parsed = {}
    if isinstance(parsed, dict) and parsed.get("file"):
        where += f" ({parsed['file']} row {parsed.get('row')})"
    return TemplateError(f"model_loss: {where}: {error}")
