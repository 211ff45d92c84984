"""Data references -> checked, sharded examples; settings and presets (no Ray)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

import schemas
from pipelines.ingest.normalize import example_id
from pipelines.train import data
from pipelines.train.settings import ArmConfig, TrainConfig, resolve


def conversation(i: int) -> list[dict]:
    return [{"role": "user", "content": f"What is {i} + 1?"}, {"role": "assistant", "content": f"{i + 1}"}]


def write_pool(run_dir, n: int) -> list[str]:
    turns = [[(m["role"], m["content"]) for m in conversation(i)] for i in range(n)]
    ids = [example_id(t) for t in turns]
    table = pa.table(
        {
            "id": ids,
            "source": ["test"] * n,
            "messages": [conversation(i) for i in range(n)],
            "reference": [None] * n,
            "meta": ["{}"] * n,
        },
        schema=schemas.SCHEMAS["pool"],
    )
    (run_dir / "pool").mkdir(parents=True)
    pq.write_table(table, run_dir / "pool" / "part-0.parquet")
    return ids


def test_a_selection_joins_the_pool_in_rank_order_and_rejects_unknown_ids(tmp_path):
    ids = write_pool(tmp_path, 30)
    chosen = ids[5:25] + ["f" * 32]
    selection = pa.table({"id": chosen, "rank": pa.array(range(1, len(chosen) + 1), pa.int32())})
    (tmp_path / "selections" / "random").mkdir(parents=True)
    pq.write_table(selection, tmp_path / "selections" / "random" / "part-0.parquet")
    work = tmp_path / "_work" / "train-a"
    prepared = data.prepare(str(tmp_path), "selection:random", str(work), "train-a", 2, 4, seed=1)
    assert (prepared.rows_read, prepared.rows_rejected, prepared.rows_validation) == (21, 1, 4)
    assert prepared.shard_rows == [8, 8]
    shards = [pq.read_table(p) for p in prepared.shards]
    held = pq.read_table(prepared.validation)
    every = [i for t in [*shards, held] for i in t["id"].to_pylist()]
    assert sorted(every) == sorted(ids[5:25])  # each kept row once: training or held out
    rejects = pq.read_table(data.rejects_dir(str(work))).to_pylist()
    assert [(r["reason"], r["row"], r["file"]) for r in rejects] == [("not in pool", 21, "selections/random")]
    again = data.prepare(str(tmp_path), "selection:random", str(tmp_path / "again"), "train-a", 2, 4, seed=1)
    assert [pq.read_table(p)["id"].to_pylist() for p in again.shards] == [t["id"].to_pylist() for t in shards]


def test_files_are_checked_row_by_row_and_ids_computed_when_absent(tmp_path):
    lines = [json.dumps({"messages": conversation(i)}) for i in range(6)]
    lines[2] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    lines[4] = "{not json"
    lines.append(json.dumps({"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}))
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    prepared = data.prepare(str(tmp_path), str(tmp_path / "data.jsonl"), str(tmp_path / "w"), "train-x", 1, 0, 0)
    assert prepared.rows_read == 7 and prepared.rows_rejected == 3 and prepared.shard_rows == [4]
    assert prepared.rows_read == sum(prepared.shard_rows) + prepared.rows_rejected
    rejects = {r["row"]: r for r in pq.read_table(data.rejects_dir(str(tmp_path / "w"))).to_pylist()}
    assert rejects[3]["reason"] == "no assistant turn" and rejects[5]["reason"] == "malformed JSON"
    assert rejects[7]["reason"] == "unknown role" and rejects[7]["field"] == "messages[0].role"
    table = pq.read_table(prepared.shards[0])
    turns = [[(m["role"], m["content"]) for m in row] for row in table["messages"].to_pylist()]
    assert table["id"].to_pylist() == [example_id(t) for t in turns]
    assert data.fingerprint(str(tmp_path), str(tmp_path / "data.jsonl"))["files"][0][1] > 0


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(data.DataError, match="selections/best is not finished"):
        data.fingerprint(str(tmp_path), "selection:best")
    with pytest.raises(data.DataError, match="no Parquet or JSON Lines"):
        data.fingerprint(str(tmp_path), str(tmp_path / "nothing-*.parquet"))
    write_pool(tmp_path, 3)
    lines = [json.dumps({"messages": conversation(i)}) for i in range(3)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    with pytest.raises(data.DataError, match="3 training rows for 4 workers"):
        data.prepare(str(tmp_path), str(tmp_path / "d.jsonl"), str(tmp_path / "w"), "t", 4, 0, 0)


def test_presets_fill_what_an_arm_leaves_unset():
    cft = resolve(ArmConfig(model="m", data="cft", preset="cft"))
    assert (cft["lr"], cft["epochs"], cft["global_batch"], cft["max_length"], cft["warmup_ratio"]) == (
        5e-6,
        1,
        512,
        2048,
        0.1,
    )
    selection = resolve(ArmConfig(model="m", data="selection:x", preset="selection", epochs=1))
    assert (selection["lr"], selection["epochs"], selection["global_batch"], selection["max_length"]) == (
        7e-6,
        1,
        128,
        4096,
    )
    assert (selection["warmup_ratio"], selection["weight_decay"]) == (0.01, 0.1)


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({"global_batch": 10, "num_workers": 4}, "not a multiple of num_workers"),
        ({"select_checkpoint": {}}, "validation_rows > 0"),
        ({"select_checkpoint": {"metric": "accuracy"}, "validation_rows": 5}, "needs a `validation` callable"),
        ({"fsdp": True}, "fsdp needs num_workers > 1"),
        ({"learning_rate": 1e-5}, "Extra inputs are not permitted"),
        ({"data": "selection:"}, "needs a selection name"),
    ],
)
def test_bad_settings_are_errors_that_name_the_problem(arm, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(arms={"a": {"model": "m", "data": "cft", **arm}})


def test_arm_and_warmup_names_may_not_collide():
    with pytest.raises(ValidationError, match="both arms and warmup"):
        TrainConfig(arms={"x": {"model": "m", "data": "cft"}}, warmup={"x": {"model": "m"}})
