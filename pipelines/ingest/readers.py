"""Stream records out of input files, one at a time, never a whole file in memory.

Containers: JSON Lines (.jsonl, .ndjson), JSON (.json: an array, streamed with ijson, or
JSON Lines when it does not start with "["), Parquet, and the Arrow files of a Hugging Face
dataset saved with `save_to_disk`. Compressed files (.gz, .bz2, .zst, .lz4) are read through
(streams.py). Each record carries its 1-based row number in the file (the line number for
JSON Lines). Text is UTF-8 with or without a byte-order mark. What cannot be read becomes a
record with an error, never an exception: a bad row, or one record for the rest of a file
that is empty (row 0), cut short (a truncated archive) or broken midway (a JSON array).
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

COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
CONTAINERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
RAW_LIMIT = 2_000
CHUNK_BYTES = 1 << 20
BATCH_ROWS = 2_048
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


def read(location: str, container: str) -> Iterator[Record]:
    """The file's records in order; a file with none gives one "empty file" record (row 0)."""
    readers = {"jsonl": _json_lines_file, "json": _json_file, "parquet": _parquet, "arrow": _arrow_stream}
    empty = True
    for record in readers[container](location):
        empty = False
        yield record
    if empty:
        yield Record(0, None, RowError("empty file", None, "the file holds no rows"), "", whole_file=True)


def columns(location: str, container: str) -> set[str]:
    """Column names of a file, from its schema or its first readable JSON object."""
    return sample_columns(location, container) or set()


def sample_columns(location: str, container: str) -> set[str] | None:
    """Column names from the schema or the first JSON object; None when the file holds no row to adapt."""
    if container == "parquet":
        with storage.open_random_access(location) as handle:
            parquet = pq.ParquetFile(handle)
            return set(parquet.schema_arrow.names) if parquet.metadata.num_rows else None
    if container == "arrow":
        with storage.open_input(location, compression=None) as handle:
            return set(pa.ipc.open_stream(handle).schema.names)
    return next((set(record.data) for record in read(location, container) if record.data is not None), None)


def _lines(stream: streams.InputStream) -> Iterator[bytes]:
    """The stream's lines without their "\n"; a line may span many chunks (a 50 MB row)."""
    unfinished: list[bytes] = []  # pieces of the line not ended yet, joined once it ends
    try:
        while chunk := stream.read(CHUNK_BYTES):
            pieces = chunk.split(b"\n")
            if len(pieces) == 1:
                unfinished.append(chunk)
                continue
            if unfinished:
                pieces[0] = b"".join([*unfinished, pieces[0]])
            yield from pieces[:-1]
            unfinished = [pieces[-1]] if pieces[-1] else []
    except streams.StreamCut as cut:
        cut.partial = b"".join(unfinished)  # the row the cut ended is not a row
        raise
    if unfinished:
        yield b"".join(unfinished)


def _json_lines_file(location: str) -> Iterator[Record]:
    with streams.open_stream(location) as stream:
        yield from _json_lines(stream)


def _json_lines(stream: streams.InputStream) -> Iterator[Record]:
    row = 0
    try:
        for row, line in enumerate(_lines(stream), start=1):
            if line.strip():
                yield _parse_line(row, line)
    except streams.StreamCut as cut:
        yield _cut_record(row, cut)


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


def _json_file(location: str) -> Iterator[Record]:
    """A JSON array, streamed; a .json file that does not start with "[" is read as JSON Lines."""
    with streams.open_stream(location) as stream:
        if stream.peek(4096).lstrip().startswith(b"["):
            yield from _json_array(stream)
        else:
            yield from _json_lines(stream)


def _json_array(stream: streams.InputStream) -> Iterator[Record]:
    import ijson

    row = 0
    try:
        for item in json_array.items(stream):
            row += 1
            if isinstance(item, dict):
                yield Record(row, item)
            elif item is json_array.TOO_DEEP:
                yield Record(row, None, RowError("too deeply nested", None, NESTING_DETAIL), "")
            else:
                detail = f"expected a JSON object, got {type(item).__name__}"
                yield Record(row, None, RowError("not an object", None, detail), json.dumps(item)[:RAW_LIMIT])
    except streams.StreamCut as cut:
        yield _cut_record(row, cut)
    except (ijson.JSONError, UnicodeDecodeError) as error:
        reason = "undecodable bytes" if isinstance(error, UnicodeDecodeError) else "malformed JSON"
        detail = f"{reason} after row {row}; the rest of the file cannot be read: {error}"
        yield Record(row + 1, None, RowError(reason, None, detail), "", whole_file=True)


def _parquet(location: str) -> Iterator[Record]:
    with storage.open_random_access(location) as handle:
        parquet = pq.ParquetFile(handle)
        yield from _batches(parquet.iter_batches(batch_size=BATCH_ROWS))


def _arrow_stream(location: str) -> Iterator[Record]:
    with storage.open_input(location, compression=None) as handle:
        yield from _batches(pa.ipc.open_stream(handle))


def _batches(batches) -> Iterator[Record]:
    row = 0
    for batch in batches:
        try:
            rows = batch.to_pylist()
        except UnicodeDecodeError:  # a string column with invalid UTF-8: find the rows
            rows = [_row_or_error(batch, index) for index in range(batch.num_rows)]
        for data in rows:
            row += 1
            if isinstance(data, RowError):
                yield Record(row, None, data, "")
            else:
                yield Record(row, data)


def _row_or_error(batch: pa.RecordBatch, index: int) -> dict | RowError:
    try:
        return batch.slice(index, 1).to_pylist()[0]
    except UnicodeDecodeError as error:
        return RowError("undecodable bytes", None, f"not UTF-8: {error}")
