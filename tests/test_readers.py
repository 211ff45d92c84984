import bz2
import gzip
import json
import tracemalloc
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipelines.ingest import json_array, readers, streams
from pipelines.ingest.settings import IngestConfig


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


def _peak_python_bytes(records) -> tuple[list, int]:
    """The records, and the most memory Python held at once while reading them (tracemalloc)."""
    tracemalloc.start()
    try:
        kept = [(r.row, r.data, r.error) for r in records]
        return kept, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_line_over_max_line_bytes_is_one_reject_with_its_size_read_in_bounded_memory(tmp_path):
    path = tmp_path / "long.jsonl"
    long_line = b'{"a": "' + b"x" * (40 << 20) + b'"}'
    path.write_bytes(b'{"a": 1}\n' + long_line + b'\n{"a": 3}\n' + b"y" * (3 << 20))
    records, peak = _peak_python_bytes(readers.read(str(path), "jsonl", max_line_bytes=1 << 20))
    assert [(row, data) for row, data, _ in records] == [(1, {"a": 1}), (2, None), (3, {"a": 3}), (4, None)]
    too_long = records[1][2]
    assert too_long.reason == "row too long" and f"{len(long_line):,} bytes" in too_long.detail
    assert (
        records[3][2].reason == "row too long" and "3,145,728 bytes" in records[3][2].detail
    )  # the last, unended line
    assert peak < 8 << 20  # the 40 MB line never sat in memory (1 MiB limit + a read chunk or two)


def _write_bombs(tmp_path, total: int) -> dict[str, bytes]:
    """`total` bytes of "x" (one line, no newline) in each codec, built in bounded memory."""
    piece, files = b"x" * (1 << 20), {}
    compressors = {
        ".gz": zlib.compressobj(1, zlib.DEFLATED, 31),
        ".bz2": bz2.BZ2Compressor(9),
        ".zst": zstandard.ZstdCompressor(level=3).compressobj(),
    }
    for suffix, compressor in compressors.items():
        packed = b"".join(compressor.compress(piece) for _ in range(total >> 20)) + compressor.flush()
        files[suffix] = packed
        (tmp_path / f"bomb.jsonl{suffix}").write_bytes(packed)
    return files


def test_compressed_bombs_are_decompressed_in_bounded_steps(tmp_path):
    total = 64 << 20
    packed = _write_bombs(tmp_path, total)
    bounds = {".gz": 8 << 20, ".bz2": 8 << 20, ".zst": 96 << 20}  # zstd's step: at most 32 MiB, copied once
    assert all(len(data) < 400_000 for data in packed.values())  # gzip: ~1,000-fold; bzip2, zstd: far more
    for suffix in packed:
        records, peak = _peak_python_bytes(readers.read(str(tmp_path / f"bomb.jsonl{suffix}"), "jsonl", 1 << 20))
        assert len(records) == 1 and records[0][2].reason == "row too long", suffix
        assert f"{total:,} bytes" in records[0][2].detail, suffix
        assert peak < bounds[suffix], (suffix, peak)


def test_stream_reads_stay_near_the_size_asked_for(tmp_path):
    _write_bombs(tmp_path, 32 << 20)
    held = {".gz": 2 << 20, ".bz2": 2 << 20, ".zst": 33 << 20}  # a read, plus a step of 1 MiB (zstd: 32 MiB)
    for suffix, most in held.items():
        with streams.open_stream(str(tmp_path / f"bomb.jsonl{suffix}")) as stream:
            sizes = set()
            while chunk := stream.read(1 << 20):
                sizes.add(len(chunk))
                assert len(stream.buffer) <= most, suffix
            assert sizes == {1 << 20}, suffix


def test_a_json_array_item_over_the_limit_is_one_reject_and_the_next_items_are_read(tmp_path):
    path = tmp_path / "a.json"
    big = '{"a": "' + "x" * (3 << 20) + '"}'
    path.write_text(f'[{{"a": 1}}, {big}, {{"a": "],[{{\\"}}"}}, 7]')
    records, peak = _peak_python_bytes(readers.read(str(path), "json", max_line_bytes=1 << 20))
    assert [(row, data) for row, data, _ in records] == [(1, {"a": 1}), (2, None), (3, {"a": '],[{"}'}), (4, None)]
    assert (
        records[1][2].reason == "row too long" and f"{len(big) + 1:,} bytes" in records[1][2].detail
    )  # with its space
    assert records[3][2].reason == "not an object"
    assert peak < 8 << 20


class _Trickle:
    """A stream that hands over at most `step` bytes a read: every item, string and escape
    crosses read boundaries somewhere (the scanner keeps its state across chunks)."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step, self.at = data, step, 0

    def read(self, size: int) -> bytes:
        out = self.data[self.at : self.at + min(size, self.step)]
        self.at += len(out)
        return out


def test_json_array_items_are_cut_right_wherever_the_reads_end():
    items = [{"q": 'a "quoted" [bracket], {brace}\\', "n": [1, {"x": [2, 3]}]}, [], "s,]", 5, {"e": "\\\\"}, {}]
    data = json.dumps(items, indent=1).encode()
    for step in (1, 2, 3, 5, 7, 64):
        parsed = [json.loads(item) for item in json_array.items(_Trickle(data, step), 1 << 20)]
        assert parsed == items, step
    for flat in ([], [1, 2, 3], [[1, 2], [], [{}]], [{"a": [1]}, {"b": {"c": "]"}}]):
        data = json.dumps(flat).encode()
        assert [json.loads(item) for item in json_array.items(_Trickle(data, 1 << 20), 1 << 20)] == flat, flat
    assert list(json_array.items(_Trickle(b" [ ] ", 2), 1 << 20)) == []
    at_limit, past_limit = (b"[" * depth + b"]" * depth for depth in (json_array.MAX_DEPTH, json_array.MAX_DEPTH + 1))
    deep = list(json_array.items(_Trickle(b"[" + at_limit + b"," + past_limit + b"]", 7), 1 << 20))
    assert deep[0] == at_limit and deep[1] is json_array.TOO_DEEP
    with pytest.raises(json_array.BrokenArray):
        list(json_array.items(_Trickle(b'[{"a": 1}, {"b": "]', 3), 1 << 20))


def test_a_parquet_row_over_the_limit_is_one_reject_and_small_batches_are_read(tmp_path):
    table = pa.table({"question": ["q1", "x" * (2 << 20), "q3"], "answer": ["a1", "a2", "a3"]})
    pq.write_table(table, tmp_path / "t.parquet")
    records = _read_limited(tmp_path / "t.parquet", "parquet", 1 << 20)
    assert [r.row for r in records] == [1, 2, 3] and records[2].data == {"question": "q3", "answer": "a3"}
    assert (
        records[1].error.reason == "row too long"
        and "bytes, over max_line_bytes (1,048,576)" in records[1].error.detail
    )
    metadata = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert readers._batch_rows(metadata, 1 << 20) == 1  # rows of a megabyte on average: one a batch


def _read_limited(path, container, limit):
    return list(readers.read(str(path), container, max_line_bytes=limit))


def test_max_line_bytes_must_hold_max_text_chars():
    with pytest.raises(ValueError, match="max_line_bytes .* is below max_text_chars"):
        IngestConfig(sources=[{"kind": "mathematics", "rows": 1}], max_text_chars=5_000, max_line_bytes=4_096)
    assert IngestConfig(sources=[{"kind": "mathematics", "rows": 1}]).max_line_bytes == 16 * 2**20
