"""Normalised conversations and their ids.

A conversation is a list of (role, content) turns. Normalising makes text Unicode NFC with
Windows line ends turned into "\\n" and outer whitespace trimmed, maps role aliases (human,
gpt, ...) to system/user/assistant, and checks the order: an optional system turn, then
user and assistant turns alternating from a user turn (a single trailing user turn is a
prompt without a response, e.g. a question for CFT candidates).

The id is the first 32 hex digits (128 bits) of sha256 over the UTF-8 JSON of the turns,
`[["user","..."],["assistant","..."]]` (no spaces, non-ASCII kept), so it can be recomputed
from the pool's `messages` column with any JSON library.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata

ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
}


class RowError(Exception):
    """A row that cannot go into the table: `reason` is a short category for grouping."""

    def __init__(self, reason: str, field: str | None = None, detail: str | None = None):
        self.reason, self.field, self.detail = reason, field, detail or reason
        super().__init__(f"{field}: {self.detail}" if field else self.detail)


def text(value, field: str) -> str:
    """A normalised string field; raises RowError for a wrong type or unencodable text."""
    if not isinstance(value, str):
        raise RowError("wrong-typed field", field, f"expected a string, got {type(value).__name__}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RowError("undecodable bytes", field, "text holds an unpaired surrogate") from None
        if not unicodedata.is_normalized("NFC", value):
            value = unicodedata.normalize("NFC", value)
    return value.replace("\r\n", "\n").strip()


def role(value, field: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong-typed field", field, f"expected a role string, got {type(value).__name__}")
    normalised = ROLE_ALIASES.get(value.strip().lower())
    if normalised is None:
        raise RowError("unknown role", field, f"role {value!r} is not one of {sorted(ROLE_ALIASES)}")
    return normalised


def conversation(turns: list[tuple[str, str]], field: str) -> list[tuple[str, str]]:
    """Check a list of already-normalised turns; raises RowError naming the turn at fault."""
    if not turns:
        raise RowError("empty conversation", field, "no turns")
    for index, (_, content) in enumerate(turns):
        if not content:
            raise RowError("empty turn", f"{field}[{index}]", "turn is empty after trimming")
    roles = [r for r, _ in turns]
    expected = "user"
    for index, turn_role in enumerate(roles):
        if index == 0 and turn_role == "system":
            continue
        if turn_role != expected:
            order = " -> ".join(roles)
            raise RowError("roles out of order", f"{field}[{index}]", f"expected {expected}, got {turn_role} ({order})")
        expected = "assistant" if expected == "user" else "user"
    if roles[-1] == "system":
        raise RowError("roles out of order", field, "a system turn alone")
    return turns


def check_size(turns: list[tuple[str, str]], max_chars: int, field: str) -> None:
    size = sum(len(content) for _, content in turns)
    if size > max_chars:
        raise RowError("text too long", field, f"{size} characters > max_text_chars {max_chars}")


_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once: it is per-row work


def example_id(turns: list[tuple[str, str]]) -> str:
    canonical = _CANONICAL.encode([[r, c] for r, c in turns])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]
