"""Where the response is, in tokens: tokenise the whole text once, then read the offsets.

The reference IFD scripts tokenised the prompt again on its own to find where the response
starts; that breaks when a token merges across the boundary. Here the text is tokenised
once with offsets, and a token belongs to the response when its characters overlap the
response's characters (so a token merged across the boundary counts as response).
Special tokens the tokenizer adds (zero-width offsets) never do.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.score import render


@dataclass(frozen=True)
class Span:
    ids: list[int]  # the whole sequence, not yet truncated
    start: int  # first response token
    stop: int  # one past the last response token


class TemplateError(ValueError):
    pass


def _token_span(tokenizer, text: str, char_start: int, char_stop: int, special: bool) -> Span:
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special)
    inside = [i for i, (a, b) in enumerate(encoded["offset_mapping"]) if b > a and b > char_start and a < char_stop]
    if not inside:
        return Span(encoded["input_ids"], len(encoded["input_ids"]), len(encoded["input_ids"]))
    return Span(encoded["input_ids"], inside[0], inside[-1] + 1)


def with_prompt(tokenizer, turns: render.Turns, use_chat_template: bool) -> Span | None:
    """The full conversation and its last response's tokens; None when there is no response."""
    prompt, response = render.split_last_response(turns)
    if response is None:
        return None
    if not use_chat_template:
        text = render.conversation(turns)  # "...\n\nAssistant: <response>"
        return _token_span(tokenizer, text, len(text) - len(response), len(text), special=True)
    messages = [{"role": r, "content": c} for r, c in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    prefix = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    if text.startswith(prefix) and text.startswith(response, len(prefix)):
        start = len(prefix)
    else:  # a template that rewrites earlier turns: the response is its last occurrence
        start = text.rfind(response)
        if start < 0:
            raise TemplateError("the chat template changed the response text; use template: plain")
    return _token_span(tokenizer, text, start, start + len(response), special=False)


def prompt_length(tokenizer, turns: render.Turns, use_chat_template: bool) -> int:
    """Tokens of a prompt that has no response (as it would be sent for a response)."""
    if not use_chat_template:
        return len(tokenizer(render.conversation(turns))["input_ids"])
    messages = [{"role": r, "content": c} for r, c in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def alone(tokenizer, response: str, marker: str) -> Span:
    """The response after only the marker (and the tokenizer's BOS, if it adds one)."""
    text = marker + response
    return _token_span(tokenizer, text, len(marker), len(text), special=True)
