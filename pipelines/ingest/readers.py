"""Stream records out of input files, one at a time, never a whole file in memory.

Containers: JSON Lines (.jsonl, .ndjson), JSON (.json: an array, streamed with ijson, or
JSON Lines when it does not start with "["), Parquet, and the Arrow files of a Hugging Face
dataset saved with `save_to_disk`. Compressed files (.gz, .bz2, .zst, .lz4) are read through.
Each record carries its 1-based row number in the file (the line number for JSON Lines).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.ingest.normalize import RowError

COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
CONTAINERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}
RAW_LIMIT = 2_000
CHUNK_BYTES = 1 << 20
BATCH_ROWS = 2_048


@dataclass
class Record:
    row: int
    data: dict | None  # None when the row could not be read
    error: RowError | None = None
    raw_text: str | None = None

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
    readers = {"jsonl": _json_lines, "json": _json_file, "parquet": _parquet, "arrow": _arrow_stream}
    yield from readers[container](location)


def columns(location: str, container: str) -> set[str]:
    """Column names of a file, from its schema or its first readable JSON object."""
    if container == "parquet":
        with storage.open_random_access(location) as handle:
            return set(pq.read_schema(handle).names)
    if container == "arrow":
        with storage.open_input(location, compression=None) as handle:
            return set(pa.ipc.open_stream(handle).schema.names)
    for record in read(location, container):
        if record.data is not None:
            return set(record.data)
    return set()


def _lines(location: str) -> Iterator[bytes]:
    with storage.open_input(location) as stream:
        pending = b""
        while chunk := stream.read(CHUNK_BYTES):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            yield from complete
        if pending:
            yield pending


def _json_lines(location: str) -> Iterator[Record]:
    for row, line in enumerate(_lines(location), start=1):
        if not line.strip():
            continue
        yield _parse_line(row, line)


def _parse_line(row: int, line: bytes) -> Record:
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError as error:
        raw = line.decode("utf-8", errors="replace")[:RAW_LIMIT]
        return Record(row, None, RowError("undecodable bytes", None, f"not UTF-8: {error}"), raw)
    try:
        data = json.loads(decoded)
    except json.JSONDecodeError as error:
        return Record(row, None, RowError("malformed JSON", None, f"malformed JSON: {error}"), decoded[:RAW_LIMIT])
    if not isinstance(data, dict):
        detail = f"expected a JSON object, got {type(data).__name__}"
        return Record(row, None, RowError("not an object", None, detail), decoded[:RAW_LIMIT])
    return Record(row, data, raw_text=decoded)


def _json_file(location: str) -> Iterator[Record]:
    with storage.open_input(location) as stream:
        head = stream.read(4096).lstrip()
    if not head.startswith(b"["):
        yield from _json_lines(location)
        return
    yield from _json_array(location)


def _json_array(location: str) -> Iterator[Record]:
    import ijson

    row = 0
    with storage.open_input(location) as stream:
        try:
            for item in ijson.items(stream, "item", use_float=True):
                row += 1
                if isinstance(item, dict):
                    yield Record(row, item)
                else:
                    detail = f"expected a JSON object, got {type(item).__name__}"
                    yield Record(row, None, RowError("not an object", None, detail), json.dumps(item)[:RAW_LIMIT])
        except (ijson.JSONError, UnicodeDecodeError) as error:
            reason = "undecodable bytes" if isinstance(error, UnicodeDecodeError) else "malformed JSON"
            detail = f"{reason} after row {row}; the rest of the file cannot be read: {error}"
            yield Record(row + 1, None, RowError(reason, None, detail), "")


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
