import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.ingest import readers


def _read(path, container):
    return list(readers.read(str(path), container))


def test_json_lines_rows_are_line_numbers_and_bad_lines_become_errors(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": \n[1, 2]\n{"a": "\xff\xfe"}\n{"a": 5}')
    records = _read(path, "jsonl")
    assert [r.row for r in records] == [1, 3, 4, 5, 6]
    assert records[0].data == {"a": 1} and records[-1].data == {"a": 5}
    assert [r.error.reason for r in records[1:4]] == ["malformed JSON", "not an object", "undecodable bytes"]
    assert records[1].raw() == '{"a": '


def test_json_array_is_streamed_and_json_lines_in_a_json_file_work(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps([{"a": 1}, 7, {"a": 3}]))
    records = _read(array, "json")
    assert [(r.row, r.data) for r in records] == [(1, {"a": 1}), (2, None), (3, {"a": 3})]
    assert records[1].error.reason == "not an object"
    lines = tmp_path / "b.json"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    assert [r.data for r in _read(lines, "json")] == [{"a": 1}, {"a": 2}]


def test_truncated_json_array_reports_where_it_broke(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"a": 1}, {"a": 2}, {"a": ')
    records = _read(path, "json")
    assert [r.data for r in records[:2]] == [{"a": 1}, {"a": 2}]
    assert records[2].row == 3 and records[2].error.reason == "malformed JSON"
    assert "after row 2" in records[2].error.detail


def test_parquet_and_gzip(tmp_path):
    table = pa.table({"question": ["q1", "q2"], "answer": ["a1", "a2"]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert [r.data for r in _read(tmp_path / "t.parquet", "parquet")] == table.to_pylist()
    assert readers.columns(str(tmp_path / "t.parquet"), "parquet") == {"question", "answer"}
    with gzip.open(tmp_path / "z.jsonl.gz", "wt") as handle:
        handle.write('{"q": 1}\n{"q": 2}\n')
    assert readers.container_of(str(tmp_path / "z.jsonl.gz")) == "jsonl"
    assert [r.data for r in _read(tmp_path / "z.jsonl.gz", "jsonl")] == [{"q": 1}, {"q": 2}]


def test_container_of():
    assert readers.container_of("s3://b/x.NDJSON") == "jsonl"
    assert readers.container_of("d/data-00000-of-00001.arrow") == "arrow"
    assert readers.container_of("README.md") is None
