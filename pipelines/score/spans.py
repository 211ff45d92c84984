"""Where the response is, in tokens: tokenise the whole text once, then read the offsets.

The reference IFD scripts tokenised the prompt again on its own to find where the response
starts; that breaks when a token merges across the boundary. Here the text is tokenised
once with offsets, and a token belongs to the response when its characters overlap the
response's characters (so a token merged across the boundary counts as response).
Special tokens the tokenizer adds (zero-width offsets) never do.

A scorer locates many texts at once (`texts_with_prompt`, `text_alone`, then `token_spans`):
one tokenizer call for a whole batch costs a fraction of one call a text.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.score import render


@dataclass(frozen=True)
class Span:
    ids: list[int]  # the whole sequence, not yet truncated
    start: int  # first response token
    stop: int  # one past the last response token


@dataclass(frozen=True)
class Located:
    """A text and the characters [start, stop) of its response."""

    text: str
    start: int
    stop: int


class TemplateError(ValueError):
    pass


def token_spans(tokenizer, located: list[Located], special: bool, count: str = "overlap") -> list[Span]:
    """Each text tokenised (one batched call) and its response's tokens found by offsets;
    `count: prefix` counts them as the IFD reference does (`prefix_spans`)."""
    if not located:
        return []
    encoded = tokenizer([x.text for x in located], return_offsets_mapping=True, add_special_tokens=special)
    if count == "prefix":
        return prefix_spans(tokenizer, encoded["input_ids"], located, special)
    return [
        _span(ids, offsets, x.start, x.stop)
        for ids, offsets, x in zip(encoded["input_ids"], encoded["offset_mapping"], located, strict=True)
    ]


def prefix_spans(tokenizer, sequences: list[list[int]], located: list[Located], special: bool) -> list[Span]:
    """The reference's count (Cherry_LLM's `get_perplexity_and_embedding_part_text`): the
    response starts after as many tokens as the text before it has when tokenised alone, and
    runs to the sequence's end. Where one token spans the boundary (the Alpaca prompt's ":"
    and an answer's opening quote), that token is not scored and the span starts one token
    late, on the answer's second token (docs/scoring.md)."""
    prefixes = tokenizer([x.text[: x.start] for x in located], add_special_tokens=special)["input_ids"]
    return [Span(ids, min(len(prefix), len(ids)), len(ids)) for ids, prefix in zip(sequences, prefixes, strict=True)]


def _span(ids: list[int], offsets: list[tuple[int, int]], char_start: int, char_stop: int) -> Span:
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and b > char_start and a < char_stop]
    if not inside:
        return Span(ids, len(ids), len(ids))
    return Span(ids, inside[0], inside[-1] + 1)


def text_with_prompt(tokenizer, turns: render.Turns, use_chat_template: bool) -> Located | None:
    """The full conversation as the model reads it, and where its last response is; None when
    there is no response. Tokenise it with `special=not use_chat_template`."""
    prompt, response = render.split_last_response(turns)
    if response is None:
        return None
    if not use_chat_template:
        text = render.conversation(turns)  # "...\n\nAssistant: <response>"
        return Located(text, len(text) - len(response), len(text))
    messages = [{"role": r, "content": c} for r, c in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    prefix = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    if text.startswith(prefix) and text.startswith(response, len(prefix)):
        start = len(prefix)
    else:  # a template that rewrites earlier turns: the response is its last occurrence
        start = text.rfind(response)
        if start < 0:
            raise TemplateError("the chat template changed the response text; use template: plain")
    return Located(text, start, start + len(response))


def text_alone(response: str, marker: str) -> Located:
    """The response after only the marker; tokenise it with `special=True` (the tokenizer's
    BOS, if it adds one, comes first)."""
    return Located(marker + response, len(marker), len(marker) + len(response))


def with_prompt(tokenizer, turns: render.Turns, use_chat_template: bool) -> Span | None:
    """The full conversation and its last response's tokens; None when there is no response."""
    located = text_with_prompt(tokenizer, turns, use_chat_template)
    return None if located is None else token_spans(tokenizer, [located], special=not use_chat_template)[0]


def alone(tokenizer, response: str, marker: str) -> Span:
    """The response after only the marker (and the tokenizer's BOS, if it adds one)."""
    return token_spans(tokenizer, [text_alone(response, marker)], special=True)[0]


def prompt_length(tokenizer, turns: render.Turns, use_chat_template: bool) -> int:
    """Tokens of a prompt that has no response (as it would be sent for a response)."""
    if not use_chat_template:
        return len(tokenizer(render.conversation(turns))["input_ids"])
    messages = [{"role": r, "content": c} for r, c in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
