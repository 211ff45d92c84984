"""Chat training data out to the files trainers read as they are.

Given rows with a `messages` column (list of {role, content}; an optional `id`), write:
- `<name>.parquet` and `<name>.jsonl`: `{"id", "messages"}` rows, the conversational form
  TRL's SFTTrainer and LLaMA-Factory (sharegpt formatting, role/content tags) read;
- `<name>_alpaca.json`: Alpaca records `instruction`, `input` (""), `output`, `system`,
  `history` ([[user, assistant], ...] for the turns before the last), LLaMA-Factory's form;
- `<name>_sharegpt.json`: `conversations` of {from: human|gpt, value} plus `system`;
- `dataset_info.json`: LLaMA-Factory's description of the three (merged with an existing one).
Rows stream through in batches; every file is written under a temporary name and renamed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from schemas.pool import MESSAGE

FORMATS = ("parquet", "jsonl", "alpaca", "sharegpt")
EMPTY = pa.schema([pa.field("id", pa.string()), pa.field("messages", pa.list_(MESSAGE))]).empty_table()


class ExportError(ValueError):
    """A conversation that a format cannot hold; names the row."""


def split_turns(messages: list[dict], row: str) -> tuple[str, list[tuple[str, str]]]:
    """(system text, [(user, assistant), ...]) of a conversation that ends with the assistant."""
    turns = [(m["role"], m["content"]) for m in messages]
    system = ""
    if turns and turns[0][0] == "system":
        system, turns = turns[0][1], turns[1:]
    roles = [role for role, _ in turns]
    if not turns or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
        raise ExportError(f"row {row}: expected user/assistant turns ending with the assistant, got {roles}")
    return system, [(turns[i][1], turns[i + 1][1]) for i in range(0, len(turns), 2)]


def to_alpaca(messages: list[dict], row: str = "?") -> dict:
    system, pairs = split_turns(messages, row)
    instruction, output = pairs[-1]
    return {"instruction": instruction, "input": "", "output": output, "system": system,
            "history": [list(pair) for pair in pairs[:-1]]}  # fmt: skip


def to_sharegpt(messages: list[dict], row: str = "?") -> dict:
    system, pairs = split_turns(messages, row)
    conversations = []
    for user, assistant in pairs:
        conversations += [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]
    return {"conversations": conversations, "system": system}


def dataset_info(name: str, formats: Iterable[str]) -> dict:
    """LLaMA-Factory's dataset_info.json entries for the files written."""
    chat_tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"}  # fmt: skip
    entries = {
        "jsonl": {"file_name": f"{name}.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                  "tags": chat_tags},
        "alpaca": {"file_name": f"{name}_alpaca.json", "columns": {"prompt": "instruction", "query": "input",
                   "response": "output", "system": "system", "history": "history"}},
        "sharegpt": {"file_name": f"{name}_sharegpt.json", "formatting": "sharegpt",
                     "columns": {"messages": "conversations", "system": "system"},
                     "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}},
    }  # fmt: skip
    suffix = {"jsonl": "", "alpaca": "_alpaca", "sharegpt": "_sharegpt"}
    return {f"{name}{suffix[f]}": entries[f] for f in formats if f in entries}


def batches_of(rows: pa.Table | list[str], batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    """Record batches of a table, or of Parquet files read one row group at a time."""
    if isinstance(rows, pa.Table):
        yield from rows.to_batches(batch_size)
        return
    for location in rows:
        with storage.open_random_access(location) as handle:
            yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size)


def write(rows: pa.Table | list[str], folder: str, name: str, formats: Iterable[str] = FORMATS) -> dict[str, str]:
    """Write `rows` in each format into `folder`; returns {format: location}."""
    formats = list(dict.fromkeys(formats))
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; allowed: {', '.join(FORMATS)}")
    names = {"parquet": f"{name}.parquet", "jsonl": f"{name}.jsonl", "alpaca": f"{name}_alpaca.json",
             "sharegpt": f"{name}_sharegpt.json"}  # fmt: skip
    outputs = {f: _Output(storage.join(folder, names[f]), f) for f in formats}
    count = 0
    try:
        for batch in batches_of(rows):
            records = batch.to_pylist()
            for index, record in enumerate(records):
                row = str(record.get("id") or count + index + 1)
                for output in outputs.values():
                    output.add(record, row)
            count += len(records)
            for output in outputs.values():
                output.flush_parquet(batch)
        locations = {f: output.close() for f, output in outputs.items()}
    except BaseException:
        for output in outputs.values():
            output.abort()
        raise
    info = storage.join(folder, "dataset_info.json")
    existing = storage.read_json(info) if storage.exists(info) else {}
    storage.write_json_atomic({**existing, **dataset_info(name, formats)}, info)
    return locations


class _Output:
    """One export file, written to `<location>.tmp` and renamed on close."""

    def __init__(self, location: str, kind: str):
        self.location, self.kind, self.first = location, kind, True
        self.fs, self.path = storage.resolve(location)
        self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
        self.stream = self.fs.open_output_stream(f"{self.path}.tmp")
        self.parquet = None
        if kind in ("alpaca", "sharegpt"):
            self.stream.write(b"[\n")

    def add(self, record: dict, row: str) -> None:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        if self.kind == "jsonl":
            self._line({"id": record.get("id"), "messages": messages})
        elif self.kind in ("alpaca", "sharegpt"):
            self._line(to_alpaca(messages, row) if self.kind == "alpaca" else to_sharegpt(messages, row))

    def _line(self, document: dict) -> None:
        text = json.dumps(document, ensure_ascii=False).encode("utf-8")
        if self.kind == "jsonl":
            self.stream.write(text + b"\n")
        else:
            self.stream.write((b"" if self.first else b",\n") + text)
        self.first = False

    def flush_parquet(self, batch: pa.RecordBatch) -> None:
        if self.kind != "parquet":
            return
        keep = [c for c in ("id", "messages") if c in batch.schema.names]
        table = pa.Table.from_batches([batch]).select(keep)
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.stream, table.schema, compression="zstd")
        self.parquet.write_table(table)

    def close(self) -> str:
        if self.kind in ("alpaca", "sharegpt"):
            self.stream.write(b"\n]\n")
        if self.kind == "parquet" and self.parquet is None:  # no rows: still a readable file
            self.parquet = pq.ParquetWriter(self.stream, EMPTY.schema, compression="zstd")
            self.parquet.write_table(EMPTY)
        if self.parquet is not None:
            self.parquet.close()
        self.stream.close()
        self.fs.move(f"{self.path}.tmp", self.path)
        return self.location

    def abort(self) -> None:
        try:
            self.stream.close()
        finally:
            self.fs.delete_file(f"{self.path}.tmp")
