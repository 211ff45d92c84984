"""The ingest stage on real files of every format, on a real local Ray."""

from __future__ import annotations

import gzip
import json

import datasets
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines import config as config_module
from pipelines.ingest import normalize
from pipelines.ingest.adapters import FormatError
from pipelines.ingest.plan import InputError
from pipelines.ingest.stage import run
from tests.conftest import write_config

pytestmark = pytest.mark.ray

CAFE_NFD, CAFE_NFC = "Cafe\u0301?", "Caf\u00e9?"


def _jsonl(path, rows):
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n")


def make_inputs(root):
    """Files of every format; returns the expected reject reasons by (file name, row)."""
    chat = lambda u, a: {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}  # noqa: E731
    _jsonl(
        root / "openai.jsonl",
        [
            chat(CAFE_NFC, "A place."),  # 1 kept
            chat("Q2", "A2"),  # 2 kept
            b'{"messages": [',  # 3 malformed JSON
            b'{"messages": "\xff"}',  # 4 undecodable bytes
            chat("Q5", "   "),  # 5 empty turn
            {"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"}]},  # 6 order
            chat("Q7", "x" * 500),  # 7 text too long
            chat(f"  {CAFE_NFD}\r\n", "A place. "),  # 8 duplicate of row 1
            {"messages": [{"role": "user", "content": 5}]},  # 9 wrong-typed field
        ],
    )
    (root / "sharegpt.json").write_text(
        json.dumps(
            [
                {"conversations": [{"from": "human", "value": "S1"}, {"from": "gpt", "value": "R1"}]},
                {
                    "conversations": [{"from": "human", "value": "S2"}, {"from": "tool", "value": "R2"}]
                },  # 2 unknown role
            ]
        )
    )
    pq.write_table(
        pa.table(
            {
                "instruction": ["Q2", "Translate"],
                "input": ["", "bonjour"],
                "output": ["A2", "hello"],
            }
        ),
        root / "alpaca.parquet",
    )  # row 1 duplicates openai row 2
    with gzip.open(root / "gsm8k.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"}) + "\n")
    datasets.Dataset.from_list(
        [
            {"problem": "P1", "solution": r"so \boxed{7}"},
            {"problem": "P2", "solution": r"\boxed{8}"},
        ]
    ).save_to_disk(str(root / "math_hf"))
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"question": "T?", "gt_answer": "t"}]),
            "test": datasets.Dataset.from_list([{"question": "U?", "gt_answer": "u"}]),
        }
    ).save_to_disk(str(root / "qa_dict"))
    _jsonl(root / "cft.jsonl", [{"question": "Q?", "solution": "S", "critique": "ok\nConclusion: right [END]"}])
    return {
        ("openai.jsonl", 3): ("malformed JSON", None),
        ("openai.jsonl", 4): ("undecodable bytes", None),
        ("openai.jsonl", 5): ("empty turn", "messages[1].content"),
        ("openai.jsonl", 6): ("roles out of order", "messages[0]"),
        ("openai.jsonl", 7): ("text too long", "messages"),
        ("openai.jsonl", 9): ("wrong-typed field", "messages[0].content"),
        ("sharegpt.json", 2): ("unknown role", "conversations[1].from"),
    }


def sources(root, math_rows=30):
    return [
        {"kind": "files", "name": "chat", "paths": [str(root / "openai.jsonl"), str(root / "sharegpt.json")]},
        {"kind": "files", "name": "instruct", "paths": [str(root / "*.parquet"), str(root / "gsm8k.jsonl.gz")]},
        {"kind": "files", "name": "math", "paths": [str(root / "math_hf")]},
        {"kind": "files", "name": "questions", "paths": [str(root / "qa_dict")], "hf_splits": ["train"]},
        {"kind": "files", "name": "critiques", "paths": [str(root / "cft.jsonl")]},
        {"kind": "mathematics", "name": "generated", "rows": math_rows, "seed": 3},
        {"kind": "files", "name": "absent", "paths": [str(root / "nothing-*.jsonl")], "optional": True},
    ]


@pytest.fixture()
def inputs(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    return root, make_inputs(root)


def _ingest(tmp_path, root, run_name="run", **ingest):
    ingest.setdefault("max_text_chars", 200)
    path = write_config(tmp_path / f"{run_name}.yaml", tmp_path / run_name, sources(root), **ingest)
    loaded = config_module.load(path)
    return loaded, run(loaded)


def _pool(run_dir) -> pa.Table:
    return pq.read_table(run_dir / "pool").sort_by("id")


def test_every_format_lands_in_the_pool_and_every_bad_row_in_rejects(ray_local, tmp_path, inputs):
    root, expected_rejects = inputs
    loaded, manifest = _ingest(tmp_path, root)
    run_dir = tmp_path / "run"
    pool = _pool(run_dir)
    schemas.check("pool", pool)

    assert manifest["rows_in"] == manifest["rows_out"] + manifest["duplicates"] + manifest["rows_rejected"]
    assert (manifest["rows_in"], manifest["duplicates"], manifest["rows_rejected"]) == (48, 2, 7)
    assert manifest["sources"]["chat"] == {"rows_in": 11, "rows_out": 3, "duplicates": 1, "rows_rejected": 7}
    assert manifest["sources"]["instruct"] == {"rows_in": 3, "rows_out": 2, "duplicates": 1, "rows_rejected": 0}
    assert pool.num_rows == manifest["rows_out"] == 39

    rejects = pq.read_table(run_dir / "rejects" / "ingest")
    schemas.check("rejects", rejects)
    found = {(r["file"].rsplit("/", 1)[1], r["row"]): (r["reason"], r["field"]) for r in rejects.to_pylist()}
    assert found == expected_rejects
    assert all(r["stage"] == "ingest" and r["detail"] for r in rejects.to_pylist())

    rows = {r["messages"][0]["content"]: r for r in pool.to_pylist()}
    assert rows[CAFE_NFC]["source"] == "chat"  # the first occurrence wins; its NFD twin was a duplicate
    assert rows["Q2"]["source"] == "chat"  # alpaca's copy of it, in a later source, was dropped
    assert rows["Translate\nbonjour"]["messages"][1]["content"] == "hello"
    assert rows["1+1?"]["reference"] == "2"
    assert rows["P1"]["reference"] == "7" and rows["T?"]["reference"] == "t" and "U?" not in rows
    assert rows["S1"]["messages"][1] == {"role": "assistant", "content": "R1"}
    meta = json.loads(rows["Q2"]["meta"])
    assert meta["row"] == 2 and meta["file"].endswith("openai.jsonl") and meta["format"] == "openai"
    for row in pool.to_pylist():  # the id is recomputable from the stored messages
        assert row["id"] == normalize.example_id([(m["role"], m["content"]) for m in row["messages"]])
    assert len(set(pool["id"].to_pylist())) == pool.num_rows
    assert not (run_dir / "_work").exists()


def test_a_finished_stage_is_skipped_and_a_changed_config_reruns(ray_local, tmp_path, inputs):
    root, _ = inputs
    _, first = _ingest(tmp_path, root)
    _, again = _ingest(tmp_path, root)
    assert again == first  # the manifest on disk, untouched
    _, changed = _ingest(tmp_path, root, max_text_chars=1000)
    assert changed["identity"]["config_hash"] != first["identity"]["config_hash"]
    assert changed["rows_rejected"] == first["rows_rejected"] - 1  # row 7 now fits


def test_many_dedupe_buckets_give_the_same_pool_as_one(ray_local, tmp_path, inputs):
    root, _ = inputs
    _, one = _ingest(tmp_path, root, run_name="one")
    _, many = _ingest(tmp_path, root, run_name="many", bucket_bytes=2_000)
    assert one["buckets"] == 1 and many["buckets"] > 3
    assert len(list((tmp_path / "many" / "pool").glob("part-*.parquet"))) > 1
    assert _pool(tmp_path / "many").equals(_pool(tmp_path / "one"))
    assert many["duplicates"] == one["duplicates"]


def test_views_answer_questions_about_the_run(ray_local, tmp_path, inputs):
    from pipelines import views

    root, _ = inputs
    _ingest(tmp_path, root)
    connection = views.connect(str(tmp_path / "run"))
    assert views.views(connection) == ["manifests", "pool", "rejects"]
    columns, rows = views.run_query(connection, "pool_by_source")
    assert columns[:2] == ["source", "rows"] and dict(r[:2] for r in rows)["generated"] == 30
    _, rows = views.run_query(
        connection, "SELECT count(*) FROM rejects WHERE reason = $reason", {"reason": "empty turn"}
    )
    assert rows == [(1,)]
    assert isinstance(connection, duckdb.DuckDBPyConnection)


def test_unknown_columns_fail_before_any_work_naming_file_and_columns(ray_local, tmp_path):
    (tmp_path / "odd.jsonl").write_text('{"text": "hi", "label": 1}\n')
    path = write_config(
        tmp_path / "c.yaml",
        tmp_path / "run",
        [{"kind": "files", "name": "odd", "paths": [str(tmp_path / "odd.jsonl")]}],
    )
    with pytest.raises(FormatError, match=r"odd\.jsonl: no format fits the columns \['label', 'text'\]"):
        run(config_module.load(path))
    assert not (tmp_path / "run").exists()


def test_a_forced_format_overrides_detection(ray_local, tmp_path):
    (tmp_path / "p.jsonl").write_text('{"question": "Why?", "answer": "Because.", "solution": "x", "critique": "y"}\n')
    source = {"kind": "files", "name": "p", "paths": [str(tmp_path / "p.jsonl")], "format": "gsm8k"}
    manifest = run(config_module.load(write_config(tmp_path / "c.yaml", tmp_path / "run", [source])))
    row = pq.read_table(tmp_path / "run" / "pool").to_pylist()[0]
    assert manifest["rows_out"] == 1 and row["messages"][1]["content"] == "Because."


def test_a_required_source_that_matches_nothing_is_an_error(ray_local, tmp_path):
    source = {"kind": "files", "name": "gone", "paths": [str(tmp_path / "*.jsonl")]}
    with pytest.raises(InputError, match="source 'gone'.*matched no data files"):
        run(config_module.load(write_config(tmp_path / "c.yaml", tmp_path / "run", [source])))
