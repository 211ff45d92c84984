"""Byte streams of input files: decompressed, without a byte-order mark, honest about a cut.

pyarrow's decompressing streams raise "Truncated compressed stream" and drop what they had
decompressed in that read (up to a megabyte of rows), so .gz, .bz2 and .zst are decompressed
here with Python's streaming decompressors, which hand over every byte before the cut; the
cut itself becomes a `StreamCut` that the readers turn into one reject for the file. .lz4
stays on pyarrow (no streaming LZ4 frame decoder is installed): a cut there keeps the rows of
the reads before it. Multi-member gzip, multi-stream bzip2 and multi-frame zstd files (as
`cat a.gz b.gz` or pzstd write them) are read whole.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines import storage

RAW_CHUNK = 1 << 16  # compressed bytes fed at a time: bounds one step's output for most data
PLAIN_CHUNK = 1 << 20
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


class InputStream:
    """`read(n)`: up to n bytes, b"" at the end, `StreamCut` once every byte before a cut is out.

    The UTF-8 byte-order mark that Windows editors write is dropped (a BOM is not an error);
    a UTF-16 one is a cut at the start, since every row after it would be undecodable.
    """

    def __init__(self, raw, codec: str):
        self.raw, self.codec = raw, codec
        self.decompressor = _decompressor(codec) if codec in PYTHON_CODECS else None
        self.member_open = False  # a compressed member has begun and not yet ended
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
        try:
            chunk = self.raw.read(PLAIN_CHUNK if self.codec == "" else RAW_CHUNK)
        except OSError as error:  # pyarrow's .lz4 stream: its own message for a cut
            if "truncated" in str(error).lower():
                raise StreamCut("truncated compressed stream", "truncated compressed stream") from None
            raise
        if not chunk:
            self.ended = True
            if self.member_open:
                raise StreamCut("truncated compressed stream", "truncated compressed stream")
            return b""
        return chunk if self.decompressor is None else self._decompress(chunk)

    def _decompress(self, chunk: bytes) -> bytes:
        out = []
        try:
            while chunk:
                self.member_open = True
                out.append(self.decompressor.decompress(chunk))
                if not self.decompressor.eof:
                    break
                self.member_open = False  # a member ended: what follows is the next one
                chunk = self.decompressor.unused_data
                self.decompressor = _decompressor(self.codec)
        except _decompression_errors() as error:
            self.buffer += b"".join(out)
            raise StreamCut("corrupt compressed stream", f"corrupt compressed stream ({error})") from None
        return b"".join(out)


@contextmanager
def open_stream(location: str) -> Iterator[InputStream]:
    """`with open_stream(location) as stream:` an InputStream over the file's bytes."""
    codec = codec_of(location)
    with storage.open_input(location, compression="detect" if codec == ".lz4" else None) as raw:
        yield InputStream(raw, codec)
