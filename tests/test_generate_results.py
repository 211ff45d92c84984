"""The out_dir bookkeeping every engine shares: what is pending, latest rows, compaction.

Parts here are real result rows written by `results.write_part`, as engines write them;
no engine runs (test_generate_vllm.py and test_generate_openai.py run the engines)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas.generate
from pipelines.generate import results, rows

REQUESTS = pa.Table.from_pylist(
    [{"request_id": f"r{i}", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)],
    schema=schemas.generate.REQUESTS,
)


def pending_rows(out_dir: str, n: int = 2) -> list[dict]:
    connection = results.connect(out_dir, REQUESTS, n)
    location, count = results.write_pending(connection, out_dir, rows_per_group=3)
    connection.close()
    found = pq.read_table(location).to_pylist() if count else []
    assert len(found) == count
    return sorted(found, key=lambda r: (r["request_id"], r["completion_index"]))


def attempt(out_dir: str, outcome) -> None:
    """Answer every pending row: outcome(row) -> 'ok' | an error text | None (not answered)."""
    answered = []
    for row in pending_rows(out_dir):
        result = outcome(row)
        if result == "ok":
            answered.append(rows.ok_row(row, f"out {row['request_id']}/{row['completion_index']}", 1, 3, 5, "stop"))
        elif result is not None:
            answered.append(rows.failed_row(row, result, 1))
    if answered:
        results.write_part(rows.to_table(answered), results.next_attempt(out_dir))


def summary(out_dir: str, n: int = 2) -> dict:
    connection = results.connect(out_dir, REQUESTS, n)
    found = results.summary(connection)
    connection.close()
    return found


def test_pending_latest_and_compaction(tmp_path):
    out_dir = str(tmp_path / "out")
    results.prepare(out_dir, {"settings": 1})
    assert len(pending_rows(out_dir)) == 8  # 4 requests x n=2
    attempt(out_dir, lambda r: "HTTP 500" if r["request_id"] == "r1" else ("ok" if r["request_id"] != "r3" else None))
    assert summary(out_dir) == {
        "completions": 8, "ok": 4, "failed": 2, "missing": 2, "prompt_tokens": 12, "output_tokens": 20
    }  # fmt: skip
    again = pending_rows(out_dir)
    assert [(r["request_id"], r["completion_index"], r["previous_attempts"]) for r in again] == [
        ("r1", 0, 1), ("r1", 1, 1), ("r3", 0, 0), ("r3", 1, 0)
    ]  # fmt: skip
    attempt(out_dir, lambda r: "ok")
    assert len(results.attempt_dirs(out_dir)) == 2
    results.compact(out_dir, rows_per_part=3)
    (folder,) = results.attempt_dirs(out_dir)
    table = pq.read_table(folder)
    assert table.num_rows == 8 and set(table["status"].to_pylist()) == {"ok"}
    keys = list(zip(table["request_id"].to_pylist(), table["completion_index"].to_pylist(), strict=True))
    assert len(set(keys)) == 8  # each key once
    attempts = {key: a for key, a in zip(keys, table["attempts"].to_pylist(), strict=True)}
    assert attempts[("r1", 0)] == 2 and attempts[("r0", 0)] == 1 and attempts[("r3", 1)] == 1
    assert pending_rows(out_dir) == []


def test_prompts_too_long_are_not_asked_again(tmp_path):
    out_dir = str(tmp_path / "out")
    results.prepare(out_dir, {"settings": 1})
    attempt(out_dir, lambda r: f"{results.TOO_LONG}: 900 tokens" if r["request_id"] == "r2" else "ok")
    assert pending_rows(out_dir) == []
    assert summary(out_dir)["failed"] == 2


def test_other_settings_start_over_and_duplicate_ids_are_refused(tmp_path):
    out_dir = str(tmp_path / "out")
    results.prepare(out_dir, {"settings": 1})
    attempt(out_dir, lambda r: "ok")
    results.prepare(out_dir, {"settings": 1})
    assert summary(out_dir)["ok"] == 8
    results.prepare(out_dir, {"settings": 2})
    assert summary(out_dir)["missing"] == 8
    connection = results.connect(out_dir, pa.concat_tables([REQUESTS, REQUESTS.slice(0, 1)]), 1)
    with pytest.raises(ValueError, match="repeated"):
        results.check_unique(connection)


def test_parts_are_checked_against_the_schema(tmp_path):
    bad = pa.table({"request_id": ["r0"], "completion_index": pa.array([0], pa.int64())})
    with pytest.raises(schemas.SchemaMismatch, match="generations"):
        results.write_part(bad, str(tmp_path))


def test_completion_seeds_are_stable_and_distinct():
    assert rows.completion_seed(0, "r1", 0) == rows.completion_seed(0, "r1", 0)
    seeds = {rows.completion_seed(0, f"r{i}", k) for i in range(50) for k in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**31 for s in seeds)
    assert rows.completion_seed(None, "r1", 0) is None
