"""Byte streams of input files: decompressed in bounded steps, without a byte-order mark, honest about a cut.

pyarrow's decompressing streams raise "Truncated compressed stream" and drop what they had
decompressed in that read (up to a megabyte of rows), so .gz, .bz2 and .zst are decompressed
here with Python's streaming decompressors, which hand over every byte before the cut; the
cut itself becomes a `StreamCut` that the readers turn into one reject for the file. .lz4
stays on pyarrow (no streaming LZ4 frame decoder is installed): a cut there keeps the rows of
the reads before it. Multi-member gzip, multi-stream bzip2 and multi-frame zstd files (as
`cat a.gz b.gz` or pzstd write them) are read whole.

Every step's output is bounded, whatever the compressed bytes hold: a few KB of bzip2 can
hold gigabytes of one byte (a decompression bomb), so a step never asks for all a chunk's
output. gzip and bzip2 take `max_length` (OUT_STEP); zstandard's decompressobj has no such
bound, so it is fed ZSTD_FEED bytes at a time: a zstd block of at most 128 KiB takes at
least 4 bytes, so a step yields at most ZSTD_FEED * 32 KiB (32 MiB). pyarrow's LZ4 stream
decompresses about a megabyte a read, and LZ4 expands at most 255-fold.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pipelines import storage

RAW_CHUNK = 1 << 16  # compressed bytes read from the file at a time
PLAIN_CHUNK = 1 << 20
OUT_STEP = 1 << 20  # decompressed bytes one gzip or bzip2 step may yield
ZSTD_FEED = 1 << 10  # compressed bytes one zstd step is fed (its output: 32 MiB at most)
BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
PYTHON_CODECS = (".gz", ".bz2", ".zst")


class StreamCut(Exception):
    """The file's bytes end early or cannot be decoded past this point."""

    def __init__(self, reason: str, detail: str, where_known: bool = False):
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.where_known = where_known  # the detail already says where (no "after row N" to add)
        self.partial = b""  # the bytes of the unfinished row the cut ended, set by the reader


def codec_of(location: str) -> str:
    name = location.lower()
    return next((suffix for suffix in (*PYTHON_CODECS, ".lz4") if name.endswith(suffix)), "")


def _decompressor(codec: str):
    if codec == ".gz":
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    if codec == ".bz2":
        return bz2.BZ2Decompressor()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _decompression_errors() -> tuple[type[Exception], ...]:
    import zstandard

    return (zlib.error, OSError, EOFError, ValueError, zstandard.ZstdError)


class _Members:
    """A codec's members (gzip members, bzip2 streams, zstd frames) one after another, in bounded steps.

    `step()` decompresses some of the pending compressed bytes and returns at most one
    step's output (b"" when it needs more input: `wants_input`); `feed(data)` adds input.
    """

    def __init__(self, codec: str):
        self.codec, self.decompressor = codec, _decompressor(codec)
        self.pending = b""  # compressed bytes not yet handed to the decompressor
        self.member_open = False  # a member has begun and not yet ended

    @property
    def wants_input(self) -> bool:
        if self.pending:
            return False
        # bzip2 keeps its input inside and says when it has more output to give
        return self.codec != ".bz2" or self.decompressor.needs_input

    def feed(self, data: bytes) -> None:
        """Called only when `wants_input`: nothing is pending."""
        self.pending = data

    def step(self) -> bytes:
        self.member_open = True
        if self.codec == ".gz":
            out = self.decompressor.decompress(self.pending, OUT_STEP)
            self.pending = self.decompressor.unconsumed_tail
        elif self.codec == ".bz2":
            out = self.decompressor.decompress(self.pending, OUT_STEP)
            self.pending = b""
        else:
            pending = memoryview(self.pending)  # slices without copying the rest of the chunk
            out = self.decompressor.decompress(pending[:ZSTD_FEED])
            self.pending = pending[ZSTD_FEED:]
        if self.decompressor.eof:  # a member ended: what follows is the next one
            self.member_open = False
            self.pending = self.decompressor.unused_data + bytes(self.pending)
            self.decompressor = _decompressor(self.codec)
        return out


class InputStream:
    """`read(n)`: up to n bytes, b"" at the end, `StreamCut` once every byte before a cut is out.

    The UTF-8 byte-order mark that Windows editors write is dropped (a BOM is not an error);
    a UTF-16 one is a cut at the start, since every row after it would be undecodable.
    The bytes held here stay near the size asked for: `read(-1)` is the one unbounded call.
    """

    def __init__(self, raw, codec: str):
        self.raw, self.codec = raw, codec
        self.members = _Members(codec) if codec in PYTHON_CODECS else None
        self.buffer, self.ended, self.cut, self.started = bytearray(), False, None, False

    def read(self, size: int = -1) -> bytes:
        self._fill_to(size)
        if not self.buffer and self.cut is not None:
            raise self.cut
        size = len(self.buffer) if size is None or size < 0 else size
        out = bytes(self.buffer[:size])
        del self.buffer[:size]
        return out

    def peek(self, size: int) -> bytes:
        """The next `size` bytes without consuming them (fewer at the end or before a cut)."""
        self._fill_to(size)
        return bytes(self.buffer[:size])

    def _fill_to(self, size: int) -> None:
        while (size is None or size < 0 or len(self.buffer) < size) and not self.ended and self.cut is None:
            try:
                self.buffer += self._next_bytes()
            except StreamCut as cut:
                self.cut = cut
            if not self.started and (len(self.buffer) >= 3 or self.ended or self.cut):
                self._check_start()

    def _check_start(self) -> None:
        self.started = True
        if self.buffer.startswith(BOM):
            del self.buffer[:3]
        elif self.buffer.startswith(UTF16_BOMS):
            self.buffer.clear()
            self.cut = StreamCut(
                "undecodable bytes",
                "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8",
                where_known=True,
            )

    def _next_bytes(self) -> bytes:
        """The next piece of the stream (bounded; b"" while a step yields nothing yet)."""
        if self.members is None:  # plain bytes, or pyarrow's .lz4 stream (a cut loses its whole read)
            chunk = self._read_raw(PLAIN_CHUNK if self.codec == "" else RAW_CHUNK)
            self.ended = not chunk
            return chunk
        if self.members.wants_input:
            chunk = self._read_raw(RAW_CHUNK)
            if not chunk:
                self.ended = True
                if self.members.member_open:
                    raise StreamCut("truncated compressed stream", "truncated compressed stream")
                return b""
            self.members.feed(chunk)
        try:
            return self.members.step()
        except _decompression_errors() as error:
            raise StreamCut("corrupt compressed stream", f"corrupt compressed stream ({error})") from None

    def _read_raw(self, size: int) -> bytes:
        try:
            return self.raw.read(size)
        except OSError as error:  # pyarrow's .lz4 stream: its own message for a cut
            if "truncated" in str(error).lower():
                raise StreamCut("truncated compressed stream", "truncated compressed stream") from None
            raise


@dataclass
class TooLong:
    """A row over the byte limit, skipped unread: its whole size and its first bytes (for the reject)."""

    size: int
    head: bytes


class RowBytes:
    """The bytes of the row being read, gathered while they fit `limit`; past it, only the
    count goes on (and the first HEAD_BYTES stay), so a 4 GB line costs no more than the limit."""

    HEAD_BYTES = 8_000  # a reject's raw is 2,000 characters: 8,000 bytes covers them in any UTF-8

    def __init__(self, limit: int):
        self.limit, self.pieces, self.size, self.over = limit, [], 0, False

    def add(self, piece: bytes) -> None:
        if not piece:
            return
        self.size += len(piece)
        if self.over:
            return
        self.pieces.append(piece)
        if self.size > self.limit:
            self.pieces, self.over = [self.first_bytes()], True

    def first_bytes(self) -> bytes:
        head, wanted = [], self.HEAD_BYTES
        for piece in self.pieces:
            if wanted <= 0:
                break
            head.append(piece[:wanted])
            wanted -= len(head[-1])
        return b"".join(head)

    def take(self) -> bytes | TooLong:
        """The row (or a TooLong for it); gathering starts over for the next one."""
        row = TooLong(self.size, self.pieces[0]) if self.over else b"".join(self.pieces)
        self.pieces, self.size, self.over = [], 0, False
        return row


@contextmanager
def open_stream(location: str) -> Iterator[InputStream]:
    """`with open_stream(location) as stream:` an InputStream over the file's bytes."""
    codec = codec_of(location)
    with storage.open_input(location, compression="detect" if codec == ".lz4" else None) as raw:
        yield InputStream(raw, codec)
