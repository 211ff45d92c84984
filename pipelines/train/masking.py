"""Training examples as token ids with a loss mask: loss on every assistant turn, nothing else.

The conversation is rendered once (the tokenizer's chat template, or the plain template),
each assistant turn is located in that text by character offsets, and the text is tokenised
once with offsets: a token carries loss when its characters overlap an assistant span. No
prefix is tokenised again on its own, so a token merged across a turn boundary cannot shift
the mask (it counts as the assistant's, as in pipelines/score/spans.py).

What carries loss, decided here:
- every assistant turn's content (multi-turn rows train on each answer, not only the last);
- the special token that closes the turn right after the content (`<|im_end|>` in ChatML,
  `<|eot_id|>` in Llama 3, `</s>` ...), so the model learns to stop. The whitespace a template
  puts after it, and the next turn's header, are prompt;
- with the plain template ("User: ...\\n\\nAssistant: ...", as the scorers render rows), the
  tokenizer's EOS token is appended to each assistant turn and carries loss, for the same reason.
System and user turns, role headers and the generation prompt never carry loss.

Sequences longer than `max_length` are cut; `n_loss_tokens_cut` and `truncated` count it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

import schemas
from schemas.train import TOKENIZED

IGNORE = -100  # the label of a position that carries no loss


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]  # cut to max_length
    labels: list[int]  # input_ids where the token carries loss, IGNORE elsewhere
    n_loss_tokens_cut: int
    truncated: bool

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def uses_chat_template(tokenizer, template: str) -> bool:
    if template == "chat" and not tokenizer.chat_template:
        raise TemplateError("template: chat, but the tokenizer has no chat template")
    return template == "chat" or (template == "auto" and bool(tokenizer.chat_template))


def special_texts(tokenizer) -> tuple[str, ...]:
    """The text of every special token, longest first (to match a turn's closing token)."""
    texts = {t.content for t in tokenizer.added_tokens_decoder.values() if t.special}
    texts |= set(tokenizer.all_special_tokens)
    return tuple(sorted((t for t in texts if t), key=len, reverse=True))


def chat_spans(tokenizer, turns: list[tuple[str, str]], closers: tuple[str, ...]) -> tuple[str, list[tuple[int, int]]]:
    """The chat-template text and the character span of each assistant turn in it."""
    messages = [{"role": role, "content": content} for role, content in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans, cursor = [], 0
    for index, (role, content) in enumerate(turns):
        if role != "assistant":
            continue
        prefix = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
        if len(prefix) >= cursor and text.startswith(prefix) and text.startswith(content, len(prefix)):
            start = len(prefix)
        else:  # a template that rewrites earlier turns: the content's next occurrence
            start = text.find(content, cursor)
            if start < 0:
                raise TemplateError(f"the chat template changed assistant turn {index}; use template: plain")
        stop = start + len(content)
        stop += next((len(c) for c in closers if text.startswith(c, stop)), 0)
        spans.append((start, stop))
        cursor = stop
    return text, spans


def plain_spans(tokenizer, turns: list[tuple[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """ "Role: content" turns joined by blank lines; each assistant turn ends with EOS."""
    eos = tokenizer.eos_token or ""
    pieces, spans, length = [], [], 0
    for index, (role, content) in enumerate(turns):
        header = ("\n\n" if index else "") + f"{role.capitalize()}: "
        body = content + (eos if role == "assistant" else "")
        if role == "assistant":
            spans.append((length + len(header), length + len(header) + len(body)))
        pieces.append(header + body)
        length += len(header) + len(body)
    return "".join(pieces), spans


def encode(tokenizer, turns: list[tuple[str, str]], chat: bool, max_length: int, closers=None) -> Encoded:
    """Token ids and labels of one conversation, cut to `max_length`."""
    if chat:
        text, spans = chat_spans(tokenizer, turns, closers if closers is not None else special_texts(tokenizer))
    else:
        text, spans = plain_spans(tokenizer, turns)
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=not chat)
    ids, labels, span = encoded["input_ids"], [], 0
    for token, (first, last) in zip(ids, encoded["offset_mapping"], strict=True):
        while span < len(spans) and spans[span][1] <= first:
            span += 1
        inside = last > first and span < len(spans) and first < spans[span][1] and last > spans[span][0]
        labels.append(token if inside else IGNORE)
    cut = sum(1 for label in labels[max_length:] if label != IGNORE)
    return Encoded(ids[:max_length], labels[:max_length], cut, len(ids) > max_length)


@lru_cache(maxsize=4)
def load_tokenizer(location: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)


def encode_batch(batch: pa.Table, location: str, trust_remote_code: bool, template: str, max_length: int) -> pa.Table:
    """Ray Data step: (id, messages) rows -> TOKENIZED rows. The tokenizer loads once a process."""
    tokenizer = load_tokenizer(location, trust_remote_code)
    chat, closers = uses_chat_template(tokenizer, template), special_texts(tokenizer)
    rows = {name: [] for name in TOKENIZED.names}
    for example_id, messages in zip(batch["id"].to_pylist(), batch["messages"].to_pylist(), strict=True):
        turns = [(m["role"], m["content"]) for m in messages]
        encoded = encode(tokenizer, turns, chat, max_length, closers)
        rows["id"].append(example_id)
        rows["input_ids"].append(encoded.input_ids)
        rows["labels"].append(encoded.labels)
        rows["n_loss_tokens"].append(encoded.n_loss_tokens)
        rows["n_loss_tokens_cut"].append(encoded.n_loss_tokens_cut)
        rows["truncated"].append(encoded.truncated)
    table = pa.Table.from_pydict(rows, schema=TOKENIZED)
    schemas.check("train_tokenized", table, TOKENIZED)
    return table
