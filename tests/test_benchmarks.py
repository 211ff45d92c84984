"""Every benchmark file in ../shared/data/benchmarks loads into one schema and grades itself."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

import schemas
import schemas.evaluate
from pipelines.evaluate import benchmarks
from pipelines.evaluate.extract import final_answer
from pipelines.evaluate.grade import grade, is_equivalent
from pipelines.ingest import mathematics
from tests.conftest import BIN

# name -> (rows in the README's table, share of worked solutions whose final answer grades
# equal to the gold, at least; None where the file has no solutions). Measured shares:
# gsm8k, math-500, minerva 1.00 (minerva's gold comes from its solution's box, so that one
# is a consistency check); aime24 1.00; olympiadbench 0.30: its solutions are proofs that
# state the answer in prose, and only the last number is found.
EXPECTED = {
    "gsm8k": (1319, 0.99),
    "math-500": (500, 0.99),
    "minerva_math": (272, 0.99),
    "aime24": (30, 0.95),
    "amc23": (40, None),
    "olympiadbench": (675, 0.25),
    "theoremqa": (800, None),
    "gpqa_diamond": (198, None),
}


@pytest.fixture(scope="module")
def loaded(shared_data):
    return {
        name: benchmarks.load_file(name, str(shared_data / "benchmarks" / name / "test.jsonl")) for name in EXPECTED
    }


@pytest.mark.parametrize("name", EXPECTED)
def test_each_benchmark_loads_with_its_row_count(loaded, name):
    result = loaded[name]
    schemas.check("benchmark", result.table, schemas.evaluate.BENCHMARK)
    assert result.table.num_rows == EXPECTED[name][0] == result.rows_read
    assert result.rejects == []
    ids = result.table.column("question_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(text.strip() for text in result.table.column("question").to_pylist())
    meta = json.loads(result.table.column("meta")[0].as_py())
    assert meta["file"].endswith(f"{name}/test.jsonl") and meta["row"] == 1


@pytest.mark.parametrize("name", EXPECTED)
def test_every_gold_grades_correct_against_itself(loaded, name):
    rows = loaded[name].table.to_pylist()
    for row in rows:
        if row["kind"] == "choice":
            letter = row["gold"]
            assert grade(f"The answer is ({letter}).", letter, "choice", row["choices"])["correct"]
            wrong = "A" if letter != "A" else "B"
            assert not grade(f"The answer is ({wrong}).", letter, "choice", row["choices"])["correct"]
        else:
            assert is_equivalent(row["gold"], row["gold"]), row
            assert grade(f"So the answer is $\\boxed{{{row['gold']}}}$.", row["gold"])["correct"], row


@pytest.mark.parametrize("name", [n for n, (_, share) in EXPECTED.items() if share is not None])
def test_final_answer_of_the_worked_solution_matches_the_gold(loaded, name):
    rows = loaded[name].table.to_pylist()
    solutions = [(json.loads(row["meta"]).get("solution"), row["gold"]) for row in rows]
    graded = [is_equivalent(final_answer(solution), gold) for solution, gold in solutions if solution]
    share = sum(graded) / len(graded)
    print(f"{name}: {sum(graded)}/{len(graded)} = {share:.3f}")
    assert len(graded) == len(rows)
    assert share >= EXPECTED[name][1]


def test_file_specific_mappings(loaded):
    gsm8k = loaded["gsm8k"].table.to_pylist()[0]
    assert (gsm8k["question_id"], gsm8k["gold"], gsm8k["kind"]) == ("0", "18", "free")
    amc = {row["question_id"]: row["gold"] for row in loaded["amc23"].table.to_pylist()}
    assert amc["0"] == "27"  # 27.0 in the file
    aime = [row["gold"] for row in loaded["aime24"].table.to_pylist()]
    assert "25" in aime and "025" not in aime
    olympiad = loaded["olympiadbench"].table.to_pylist()
    assert not any("$" in row["gold"] for row in olympiad)
    gpqa = loaded["gpqa_diamond"].table.to_pylist()
    letters = [row["gold"] for row in gpqa]
    assert set(letters) == set("ABCD") and max(letters.count(x) for x in "ABCD") < 0.4 * len(letters)
    first = gpqa[0]
    correct = first["choices"]["ABCD".index(first["gold"])]
    assert correct == "10^-4 eV" and len(first["choices"]) == 4
    again = benchmarks.load_file("gpqa_diamond", json.loads(first["meta"])["file"], limit=1).table.to_pylist()[0]
    assert again["choices"] == first["choices"]  # the shuffle is fixed by the question id


def test_bad_rows_are_rejected_with_file_row_and_field(tmp_path):
    path = tmp_path / "test.jsonl"
    lines = [
        {"question": "1+1?", "answer": "1+1=2\n#### 2"},
        {"question": "2+2?", "answer": "no marker"},
        {"question": "3+3?"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{not json\n", encoding="utf-8")
    result = benchmarks.load_file("mini", str(path), fmt="gsm8k")
    assert result.table.num_rows == 1 and result.rows_read == 4
    reasons = [(r["row"], r["field"], r["reason"]) for r in result.rejects]
    assert reasons == [(2, "answer", "no final answer"), (3, "answer", "missing field"), (4, None, "malformed JSON")]
    assert all(str(path) in r["detail"] for r in result.rejects)


def test_unknown_files_and_formats_are_clear_errors(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps({"prompt": "x", "target": "y"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no format fits the fields"):
        benchmarks.load_file("odd", str(path))
    with pytest.raises(FileNotFoundError, match="not a readable"):
        benchmarks.load_file("gone", str(tmp_path / "gone.jsonl"))


def test_limit_keeps_the_first_rows(shared_data):
    result = benchmarks.load_file("math-500", str(shared_data / "benchmarks/math-500/test.jsonl"), limit=7)
    assert result.table.num_rows == 7


def test_mathematics_heldout_is_disjoint_from_train_and_self_consistent():
    settings = dict(seed=3, modules=mathematics.DEFAULT_MODULES, difficulty="any", heldout_fraction=0.05)
    held = benchmarks.load_mathematics_heldout("mathematics_heldout", 84, **settings).table.to_pylist()
    train = list(mathematics.generate(0, 400, split="train", **{**settings, "seed": 0}))
    assert len(held) == 84 and not {r["question"] for r in held} & {r.question for r in train}
    assert all(is_equivalent(row["gold"], row["gold"]) for row in held)
    again = benchmarks.load_mathematics_heldout("mathematics_heldout", 84, **settings).table
    assert again.column("question").to_pylist() == [r["question"] for r in held]


@pytest.mark.slow
def test_a_benchmark_loads_from_an_s3_uri(shared_data, monkeypatch):
    """A real S3 API (moto's server on 127.0.0.1) behind pyarrow's S3 filesystem."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            monkeypatch.setenv(key, value)
        import boto3

        deadline = time.monotonic() + 30
        while True:
            try:
                s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
                s3.create_bucket(Bucket="winnow-eval")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        local = shared_data / "benchmarks/amc23/test.jsonl"
        s3.upload_file(str(local), "winnow-eval", "benchmarks/amc23/test.jsonl")
        remote = benchmarks.load_file("amc23", "s3://winnow-eval/benchmarks/amc23/test.jsonl")
        here = benchmarks.load_file("amc23", str(local))
        assert remote.table.column("gold").to_pylist() == here.table.column("gold").to_pylist()
        assert remote.table.num_rows == 40
    finally:
        server.terminate()
        server.wait()
