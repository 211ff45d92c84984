"""Prompts, requests and graded result tables, on real benchmark rows (no engine needed)."""

from __future__ import annotations

import json

import pytest

import schemas
import schemas.evaluate
from pipelines.evaluate import benchmarks, prompts, results
from pipelines.evaluate.grade import grade


@pytest.fixture(scope="module")
def math500(shared_data):
    return benchmarks.load_file("math-500", str(shared_data / "benchmarks/math-500/test.jsonl"), limit=40)


@pytest.fixture(scope="module")
def gpqa(shared_data):
    return benchmarks.load_file("gpqa_diamond", str(shared_data / "benchmarks/gpqa_diamond/test.jsonl"), limit=12)


def test_the_cot_prompt_is_the_cft_study_s():
    messages = prompts.cot_messages("  What is 1+1?\n")
    assert messages == [
        {"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
        {"role": "user", "content": "What is 1+1?"},
    ]


def test_the_choice_prompt_letters_the_shuffled_options(gpqa):
    row = gpqa.table.to_pylist()[0]
    user = prompts.messages_for(row)[1]["content"]
    for letter, choice in zip("ABCD", row["choices"], strict=True):
        assert f"({letter}) {choice.strip()}" in user
    assert user.startswith(row["question"].strip()) and "\\boxed{A}" in user
    with pytest.raises(ValueError, match="2 to 10 options"):
        prompts.choice_messages("q", ["only one"])


def test_requests_have_stable_ids_that_follow_the_prompt(math500):
    requests, questions = results.build_requests(math500.table)
    again, _ = results.build_requests(math500.table)
    assert requests.equals(again) and requests.num_rows == 40
    first = questions[0]
    assert first["request_id"].startswith(f"math-500/{first['question_id']}/")
    assert json.loads(first["prompt"]) == prompts.cot_messages(first["question"])
    changed = results.request_id("math-500", first["question_id"], prompts.cot_messages("another question"))
    assert changed != first["request_id"]


def test_graded_table_on_real_solutions_failures_and_truncation(math500, gpqa):
    _, questions = results.build_requests(math500.table)
    outputs = {
        q["request_id"]: {
            "request_id": q["request_id"],
            "completion_index": 0,
            "output": json.loads(q["meta"])["solution"],  # MATH's worked solution, as a model would write it
            "status": "ok",
            "finish_reason": "stop",
            "output_tokens": 100,
        }
        for q in questions
    }
    failed, missing, truncated = questions[0]["request_id"], questions[1]["request_id"], questions[2]["request_id"]
    outputs[failed] = {"request_id": failed, "completion_index": 0, "output": None, "status": "failed"}
    del outputs[missing]
    outputs[truncated] = {
        **outputs[truncated],
        "output": "Let me think step by step. First,",
        "finish_reason": "length",
    }
    table = results.grade_outputs(questions, outputs, timeout_s=5.0, workers=2)
    schemas.check("eval/arm/math-500", table, schemas.evaluate.EVAL_RESULTS)
    rows = table.to_pylist()
    assert [r["question_id"] for r in rows] == [q["question_id"] for q in questions]
    assert [r["status"] for r in rows[:2]] == ["failed", "failed"] and not rows[0]["correct"]
    assert rows[2]["extracted"] is None and not rows[2]["correct"]
    assert all(r["correct"] for r in rows[3:]), [r for r in rows[3:] if not r["correct"]]
    summary = results.summary_row("base", "tiny", "math-500", table, 12.0, 0.5)
    assert summary["n"] == 40 and summary["correct"] == 37 and summary["accuracy"] == pytest.approx(37 / 40)
    assert (summary["failed"], summary["truncated"], summary["no_answer"]) == (2, 1, 1)


def test_gpqa_graded_by_letter(gpqa):
    rows = gpqa.table.to_pylist()
    for row in rows:
        right, wrong = row["gold"], "ABCD"[("ABCD".index(row["gold"]) + 1) % 4]
        assert grade(f"... so the answer is \\boxed{{{right}}}", right, "choice", row["choices"])["correct"]
        assert not grade(f"... so the answer is \\boxed{{{wrong}}}", right, "choice", row["choices"])["correct"]
