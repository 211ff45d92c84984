"""pipelines.export: messages to Parquet, JSON Lines, Alpaca and ShareGPT files, read back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import export
from schemas.pool import MESSAGE

ROWS = [
    {"id": "a", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    {
        "id": "b",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q1 é"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2 {x}"},
            {"role": "assistant", "content": "A2\nline"},
        ],
    },
]


def read(location: str) -> str:
    return Path(location).read_text(encoding="utf-8")


SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("messages", pa.list_(MESSAGE))])


def test_every_format_reads_back(tmp_path):
    table = pa.Table.from_pylist(ROWS, schema=SCHEMA)
    written = export.write(table, str(tmp_path), "cft")
    assert set(written) == set(export.FORMATS)
    assert pq.read_table(written["parquet"]).to_pylist() == ROWS
    lines = [json.loads(line) for line in read(written["jsonl"]).splitlines()]
    assert lines == ROWS
    alpaca = json.loads(read(written["alpaca"]))
    assert alpaca[0] == {"instruction": "2+2?", "input": "", "output": "4", "system": "", "history": []}
    assert alpaca[1] == {
        "instruction": "Q2 {x}",
        "input": "",
        "output": "A2\nline",
        "system": "Be brief.",
        "history": [["Q1 é", "A1"]],
    }
    sharegpt = json.loads(read(written["sharegpt"]))
    assert sharegpt[1]["system"] == "Be brief."
    assert sharegpt[1]["conversations"] == [
        {"from": "human", "value": "Q1 é"},
        {"from": "gpt", "value": "A1"},
        {"from": "human", "value": "Q2 {x}"},
        {"from": "gpt", "value": "A2\nline"},
    ]
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["cft_alpaca"]["columns"]["history"] == "history"
    assert info["cft_sharegpt"]["tags"]["user_tag"] == "human"
    assert info["cft"]["file_name"] == "cft.jsonl" and info["cft"]["formatting"] == "sharegpt"
    assert all((tmp_path / entry["file_name"]).is_file() for entry in info.values())


def test_parquet_input_streams_and_an_empty_table_still_writes_valid_files(tmp_path):
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS * 3, schema=SCHEMA), source, row_group_size=2)
    written = export.write([str(source)], str(tmp_path / "out"), "sft", ["jsonl", "alpaca"])
    assert len(read(written["jsonl"]).splitlines()) == 6
    assert len(json.loads(read(written["alpaca"]))) == 6
    empty = export.write(SCHEMA.empty_table(), str(tmp_path / "empty"), "x")
    assert json.loads(read(empty["sharegpt"])) == []
    assert pq.read_table(empty["parquet"]).num_rows == 0


def test_a_conversation_without_a_final_answer_is_an_error_naming_the_row(tmp_path):
    bad = pa.Table.from_pylist([{"id": "q1", "messages": [{"role": "user", "content": "unanswered"}]}], schema=SCHEMA)
    with pytest.raises(export.ExportError, match="row q1"):
        export.write(bad, str(tmp_path), "bad", ["alpaca"])
    assert not list(tmp_path.glob("*.json*"))  # nothing half-written is left
    with pytest.raises(ValueError, match="unknown export formats"):
        export.write(bad, str(tmp_path), "bad", ["csv"])
