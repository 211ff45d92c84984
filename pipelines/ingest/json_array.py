"""The items of a top-level JSON array, streamed as bytes, each bounded in size and depth.

A scanner finds where each item ends (the commas and the closing bracket of the array
itself, outside strings) and hands over the item's bytes, which the reader parses with
`json.loads` as it parses a JSON Lines line. Strings are skipped whole by one regular
expression call, so the scanner's Python work is a few steps per bracket or comma, not per
byte. Nothing is built beyond one item's bytes, so memory is bounded even for hostile items:

- an item longer than the byte limit is skipped while its bytes are counted (a `TooLong`
  with its whole size): a 4 GB string costs no more than the limit;
- an item that nests deeper than MAX_DEPTH is skipped to its end (TOO_DEEP). ijson's own
  `items` kept a prefix string per open level (memory with the square of the depth: one
  row of 100,000 nested arrays killed the worker), and its tokenizer held a whole string
  token in memory however long.

An array that ends before its closing bracket raises `BrokenArray`; its earlier items are out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pipelines.ingest import streams

MAX_DEPTH = 512  # far beyond any real row (chat rows nest 3-6 levels), well within Python's recursion
TOO_DEEP = object()
CHUNK_BYTES = 1 << 20
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
_FLAT = rb'[\[{](?:[^"\[\]{}]++|' + _STRING + rb")*+[\]}]"  # a container with none inside it (a chat turn)
# Skipped in one call: whole strings, whole flat containers, and what is not a bracket (nor, at
# the array's own level, a comma). The scanner stops at a bracket, a comma, or a string the chunk cuts.
_SKIP_IN_ITEM = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + b"|" + _FLAT + rb")*+", re.DOTALL)
_SKIP_AT_TOP = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + b"|" + _FLAT + rb")*+", re.DOTALL)
_SKIP_DEEP = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + rb")*+", re.DOTALL)  # at MAX_DEPTH: count every level
_STRING_BODY = re.compile(rb'(?:[^"\\]++|\\.)*+', re.DOTALL)  # up to the closing quote (or a last backslash)
_OPEN, _QUOTE, _COMMA, _BACKSLASH = b"[{", ord('"'), ord(","), ord("\\")


class BrokenArray(ValueError):
    """The bytes do not form a complete array: the items before the break are read."""


class _Scanner:
    """Where one array's items end, kept across chunks: bracket level, inside a string or not."""

    def __init__(self, max_item_bytes: int):
        self.level = 0  # open brackets, the array's own included
        self.in_string = False
        self.escaped = False  # the last chunk ended on a backslash inside a string
        self.item = streams.RowBytes(max_item_bytes)
        self.too_deep = False
        self.items = 0
        self.closed = False

    def chunk_items(self, chunk: bytes) -> Iterator[bytes | streams.TooLong | object]:
        """The items that end in `chunk`; the start of an unfinished one is kept for the next chunk."""
        pos, start, end = 0, 0, len(chunk)
        if self.escaped:  # the escaped character is this chunk's first byte
            pos, self.escaped = 1, False
        while pos < end:
            if self.in_string:
                pos = self._string_end(chunk, pos)
                continue
            # before the array opens and at MAX_DEPTH every bracket counts: no flat container is skipped
            skip = _SKIP_AT_TOP if self.level == 1 else _SKIP_IN_ITEM if 1 < self.level <= MAX_DEPTH else _SKIP_DEEP
            at = skip.match(chunk, pos).end()
            if at == end:
                break
            pos, char = at + 1, chunk[at]
            if char == _QUOTE:  # a string that goes on in the next chunk
                self.in_string = True
            elif char in _OPEN:
                if self.level == 0:
                    _check_start(chunk, at)
                    start = pos
                self.level += 1
                self.too_deep = self.too_deep or self.level > MAX_DEPTH + 1
            elif char == _COMMA:  # only the array's own level stops at commas
                if (item := self._item_done(chunk[start:at])) is not None:
                    yield item
                start = pos
            else:
                self.level -= 1
                if self.level == 0:  # the array's own closing bracket: what follows is not read
                    if (item := self._item_done(chunk[start:at], last=True)) is not None:
                        yield item
                    self.closed = True
                    return
        if self.level >= 1:
            self.item.add(chunk[start:])

    def _string_end(self, chunk: bytes, pos: int) -> int:
        pos = _STRING_BODY.match(chunk, pos).end()
        if pos == len(chunk):
            return pos
        if chunk[pos] == _BACKSLASH:  # the chunk's last byte: the escaped one starts the next chunk
            self.escaped = True
            return len(chunk)
        self.in_string = False
        return pos + 1

    def _item_done(self, piece: bytes, last: bool = False) -> bytes | streams.TooLong | object | None:
        """The item that ends with `piece` (None for the inside of "[ ]")."""
        if self.item.size == 0 and len(piece) <= self.item.limit:
            item = piece  # the common case: a whole item inside the chunk
        else:
            self.item.add(piece)
            item = self.item.take()
        if last and self.items == 0 and isinstance(item, bytes) and not item.strip():
            return None  # "[ ]": an empty array, not an empty item
        self.items += 1
        if self.too_deep:
            self.too_deep = False
            return TOO_DEEP
        return item


def _check_start(chunk: bytes, at: int) -> None:
    if chunk[:at].strip():
        raise BrokenArray("the file does not start with a JSON array")


def items(stream, max_item_bytes: int, measure: bool = True) -> Iterator[bytes | streams.TooLong | object]:
    """Each item of the array the stream holds, as bytes (a TooLong past the limit, TOO_DEEP past
    MAX_DEPTH); not `measure`: an item past the limit is the last one given, its size counted so far."""
    scanner = _Scanner(max_item_bytes)
    try:
        while not scanner.closed and (chunk := stream.read(CHUNK_BYTES)):
            yield from scanner.chunk_items(chunk)
            if scanner.item.over and not measure:
                yield scanner.item.take()
                return
    except streams.StreamCut as cut:
        cut.partial = scanner.item.first_bytes()
        raise
    if not scanner.closed:
        raise BrokenArray("the array ends before its closing bracket")
