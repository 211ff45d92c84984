"""Example text as scorers (and ZIP) see it.

- `conversation`: every turn as "Role: content", turns separated by a blank line;
- `prompt`: the same, without the final assistant turn;
- `response`: the final assistant turn's content ("" when the row has none);
- `json`: the messages as JSON, close to what the ZIP reference compresses.

The prompt/response split is the study's convention for multi-turn rows: the response is
the last assistant turn and the prompt is everything before it.

`alpaca_prompt` is the Alpaca prompt exactly as the IFD reference code writes it (Cherry_LLM,
cherry_seletion/data_analysis.py, PROMPT_DICT; Stanford Alpaca's), the response following
"### Response:" with no space between.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

Turns = list[tuple[str, str]]

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:"
)
ALPACA_RESPONSE_MARKER = "### Response:"  # what the reference scores a response alone after


def alpaca_prompt(instruction: str, input_text: str) -> str:
    """The reference's Alpaca prompt; the one without an input section when `input_text` is empty."""
    if input_text:
        return ALPACA_PROMPT_INPUT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def turns_of(messages: list[dict]) -> Turns:
    return [(m["role"], m["content"]) for m in messages]


def split_last_response(turns: Turns) -> tuple[Turns, str | None]:
    if turns and turns[-1][0] == "assistant":
        return turns[:-1], turns[-1][1]
    return turns, None


def conversation(turns: Turns) -> str:
    return "\n\n".join(f"{role.capitalize()}: {content}" for role, content in turns)


def render(turns: Turns, mode: str) -> str:
    if mode == "conversation":
        return conversation(turns)
    prompt, response = split_last_response(turns)
    if mode == "prompt":
        return conversation(prompt)
    if mode == "response":
        return response or ""
    if mode == "json":
        return json.dumps([{"role": r, "content": c} for r, c in turns], ensure_ascii=False)
    raise ValueError(f"unknown text mode {mode!r}")


def render_column(messages: pa.Array | pa.ChunkedArray, mode: str) -> pa.StringArray:
    """Texts for a column of messages; `conversation` runs in Arrow, without Python rows."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    if mode != "conversation":
        return pa.array([render(turns_of(m), mode) for m in messages.to_pylist()], pa.string())
    turns = pc.list_flatten(messages)
    labelled = pc.binary_join_element_wise(pc.utf8_capitalize(turns.field("role")), turns.field("content"), ": ")
    offsets = pc.subtract(messages.offsets, messages.offsets[0])
    return pc.binary_join(pa.ListArray.from_arrays(offsets, labelled), "\n\n")
