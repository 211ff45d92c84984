"""Stream records out of input files, one at a time, never a whole file in memory.

Containers: JSON Lines (.jsonl, .ndjson), JSON (.json: an array, streamed by json_array.py, or
JSON Lines when it does not start with "["), Parquet, and the Arrow files of a Hugging Face
dataset saved with `save_to_disk`. Compressed files (.gz, .bz2, .zst, .lz4) are read through
(streams.py). Each record carries its 1-based row number in the file (the line number for
JSON Lines). Text is UTF-8 with or without a byte-order mark. What cannot be read becomes a
record with an error, never an exception: a bad row, or one record for the rest of a file
that is empty (row 0), cut short (a truncated archive) or broken midway (a JSON array).

A text file's memory is bounded by `max_line_bytes`, whatever it holds: a JSON Lines line or
a JSON array item longer than that is one "row too long" record with its whole size, counted
while its bytes are dropped, and reading goes on with the next row. A Parquet or Arrow row is
measured in Arrow's memory before it becomes Python objects (see `_batches`); Arrow has
decoded its page or record batch by then, so those files are bounded by their largest page
or batch instead (docs/ingest.md, "Bounded reading").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.ingest import json_array, streams
from pipelines.ingest.normalize import RowError
from pipelines.ingest.settings import MAX_LINE_BYTES

COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
CONTAINERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
RAW_LIMIT = 2_000
CHUNK_BYTES = 1 << 20
BATCH_ROWS = 2_048
TOO_LONG = "row too long"
NESTING_DETAIL = f"nested too deeply to read (an array item may nest {json_array.MAX_DEPTH} levels)"


@dataclass
class Record:
    row: int
    data: dict | None  # None when the row could not be read
    error: RowError | None = None
    raw_text: str | None = None
    whole_file: bool = False  # the record stands for the rest of the file (empty, cut short, broken)

    def raw(self) -> str:
        if self.raw_text is None:
            self.raw_text = json.dumps(self.data, ensure_ascii=False, default=str)
        return self.raw_text[:RAW_LIMIT]


def container_of(location: str) -> str | None:
    """jsonl/json/parquet/arrow from the file name, or None for a file that is not data."""
    name = location.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    return next((kind for suffix, kind in CONTAINERS.items() if name.endswith(suffix)), None)


def read(
    location: str, container: str, max_line_bytes: int = MAX_LINE_BYTES, measure_long_rows: bool = True
) -> Iterator[Record]:
    """The file's records in order; a file with none gives one "empty file" record (row 0).

    `measure_long_rows=False` (the plan's sample): a JSON row too long ends the file there,
    its size counted only so far, instead of being read to its end to give its whole size."""
    if container in ("jsonl", "json"):
        records = _text_file(location, container, max_line_bytes, measure_long_rows)
    else:
        records = {"parquet": _parquet, "arrow": _arrow_stream}[container](location, max_line_bytes)
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        yield Record(0, None, RowError("empty file", None, "the file holds no rows"), "", whole_file=True)


def columns(location: str, container: str) -> set[str]:
    """Column names of a file, from its schema or its first readable JSON object."""
    return sample_columns(location, container) or set()


def sample_columns(location: str, container: str) -> set[str] | None:
    """Column names from the schema or the first JSON object; None when the file holds no row to
    adapt, or when a row too long comes before any object: the sample stops there rather than
    read on through gigabytes, and the map step fits the format to the first object it reads."""
    if container == "parquet":
        with storage.open_random_access(location) as handle:
            parquet = pq.ParquetFile(handle)
            return set(parquet.schema_arrow.names) if parquet.metadata.num_rows else None
    if container == "arrow":
        with storage.open_input(location, compression=None) as handle:
            return set(pa.ipc.open_stream(handle).schema.names)
    for record in read(location, container, measure_long_rows=False):
        if record.data is not None:
            return set(record.data)
        if record.error is not None and record.error.reason == TOO_LONG:
            return None
    return None


def _lines(stream: streams.InputStream, max_line_bytes: int, measure: bool) -> Iterator[bytes | streams.TooLong]:
    """The stream's lines without their "\n"; a line may span many chunks (a 50 MB row), and
    one longer than `max_line_bytes` is a TooLong, counted to its end in bounded memory
    (unless not `measure`: then it is the last line given)."""
    unfinished = streams.RowBytes(max_line_bytes)  # the line not ended yet
    try:
        while chunk := stream.read(CHUNK_BYTES):
            *ended, rest = chunk.split(b"\n")
            for piece in ended:
                if unfinished.size == 0 and len(piece) <= max_line_bytes:
                    yield piece  # the common case: a whole line inside the chunk
                else:
                    unfinished.add(piece)
                    yield unfinished.take()
            unfinished.add(rest)
            if unfinished.over and not measure:
                yield unfinished.take()
                return
    except streams.StreamCut as cut:
        cut.partial = unfinished.first_bytes()  # the row the cut ended is not a row
        raise
    if unfinished.size:
        yield unfinished.take()


def _text_file(location: str, container: str, max_line_bytes: int, measure: bool) -> Iterator[Record]:
    """JSON Lines, or a JSON array, streamed; a .json file that does not start with "[" is read as JSON Lines."""
    with streams.open_stream(location) as stream:
        if container == "json" and stream.peek(4096).lstrip().startswith(b"["):
            yield from _json_array(stream, max_line_bytes, measure)
        else:
            yield from _json_lines(stream, max_line_bytes, measure)


def _json_lines(stream: streams.InputStream, max_line_bytes: int, measure: bool) -> Iterator[Record]:
    row = 0
    try:
        for row, line in enumerate(_lines(stream, max_line_bytes, measure), start=1):
            if isinstance(line, streams.TooLong):
                yield _too_long(row, line, "line", max_line_bytes)
            elif line.strip():
                yield _parse_line(row, line)
    except streams.StreamCut as cut:
        yield _cut_record(row, cut)


def _too_long(row: int, skipped: streams.TooLong, what: str, max_line_bytes: int) -> Record:
    detail = f"the {what} holds {skipped.size:,} bytes, over max_line_bytes ({max_line_bytes:,}): skipped unread"
    raw = skipped.head.decode("utf-8", errors="replace")[:RAW_LIMIT]
    return Record(row, None, RowError(TOO_LONG, None, detail), raw)


def _cut_record(rows_before: int, cut: streams.StreamCut) -> Record:
    if cut.where_known:
        detail = cut.detail
    elif rows_before:
        detail = f"{cut.detail} after row {rows_before}: the rows before it are kept, the rest cannot be read"
    else:
        detail = f"{cut.detail} before the first row: nothing in the file can be read"
    raw = cut.partial[:RAW_LIMIT].decode("utf-8", errors="replace")
    return Record(rows_before + 1, None, RowError(cut.reason, None, detail), raw, whole_file=True)


def _parse_line(row: int, line: bytes) -> Record:
    try:
        decoded = line.decode("utf-8-sig")  # a BOM starts the line of a file appended to another
    except UnicodeDecodeError as error:
        raw = line.decode("utf-8", errors="replace")[:RAW_LIMIT]
        return Record(row, None, RowError("undecodable bytes", None, f"not UTF-8: {error}"), raw)
    try:
        data = json.loads(decoded)
    except json.JSONDecodeError as error:
        return Record(row, None, RowError("malformed JSON", None, f"malformed JSON: {error}"), decoded[:RAW_LIMIT])
    except RecursionError:
        return Record(row, None, RowError("too deeply nested", None, NESTING_DETAIL), decoded[:RAW_LIMIT])
    if not isinstance(data, dict):
        detail = f"expected a JSON object, got {type(data).__name__}"
        return Record(row, None, RowError("not an object", None, detail), decoded[:RAW_LIMIT])
    return Record(row, data, raw_text=decoded)


def _json_array(stream: streams.InputStream, max_line_bytes: int, measure: bool) -> Iterator[Record]:
    row = 0
    try:
        for row, item in enumerate(json_array.items(stream, max_line_bytes, measure), start=1):
            if item is json_array.TOO_DEEP:
                yield Record(row, None, RowError("too deeply nested", None, NESTING_DETAIL), "")
            elif isinstance(item, streams.TooLong):
                yield _too_long(row, item, "array item", max_line_bytes)
            else:
                yield _parse_line(row, item)
    except streams.StreamCut as cut:
        yield _cut_record(row, cut)
    except json_array.BrokenArray as error:
        detail = f"malformed JSON after row {row}; the rest of the file cannot be read: {error}"
        yield Record(row + 1, None, RowError("malformed JSON", None, detail), "", whole_file=True)


def _parquet(location: str, max_line_bytes: int) -> Iterator[Record]:
    with storage.open_random_access(location) as handle:
        parquet = pq.ParquetFile(handle)
        rows = _batch_rows(parquet.metadata, max_line_bytes)
        yield from _batches(parquet.iter_batches(batch_size=rows), max_line_bytes)


def _batch_rows(metadata, max_line_bytes: int) -> int:
    """Rows a batch: BATCH_ROWS, fewer where rows are large, so a batch holds about max_line_bytes."""
    groups = (metadata.row_group(index) for index in range(metadata.num_row_groups))
    widest = max((group.total_byte_size / group.num_rows for group in groups if group.num_rows), default=1)
    return max(1, min(BATCH_ROWS, int(max_line_bytes / max(widest, 1))))


def _arrow_stream(location: str, max_line_bytes: int) -> Iterator[Record]:
    with storage.open_input(location, compression=None) as handle:
        yield from _batches(pa.ipc.open_stream(handle), max_line_bytes)


def _batches(batches, max_line_bytes: int) -> Iterator[Record]:
    """Records of Arrow batches. A row is measured in Arrow's memory, before it becomes Python
    objects (several times its size): one over max_line_bytes is a "row too long" record. Arrow
    has decoded the batch by then, so one huge cell still costs its own size once."""
    row = 0
    for batch in batches:
        if batch.nbytes <= max_line_bytes:
            try:
                rows = batch.to_pylist()
            except UnicodeDecodeError:  # a string column with invalid UTF-8: find the rows
                rows = [_row_or_error(batch, index, max_line_bytes) for index in range(batch.num_rows)]
        else:
            rows = (_row_or_error(batch, index, max_line_bytes) for index in range(batch.num_rows))
        for data in rows:
            row += 1
            if isinstance(data, streams.TooLong):
                yield _too_long(row, data, "row (in Arrow's memory)", max_line_bytes)
            elif isinstance(data, RowError):
                yield Record(row, None, data, "")
            else:
                yield Record(row, data)


def _row_or_error(batch: pa.RecordBatch, index: int, max_line_bytes: int) -> dict | RowError | streams.TooLong:
    one_row = batch.slice(index, 1)
    if one_row.nbytes > max_line_bytes:
        return streams.TooLong(one_row.nbytes, b"")
    try:
        return one_row.to_pylist()[0]
    except UnicodeDecodeError as error:
        return RowError("undecodable bytes", None, f"not UTF-8: {error}")
