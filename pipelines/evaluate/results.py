"""From benchmark rows to generation requests, and from generated outputs to graded tables.

A request id is `<benchmark>/<question_id>/<hash of the prompt>`: the engine's out_dir keeps
finished requests, so a resumed evaluation asks only for what is missing, and a question
whose prompt changed is asked again rather than answered by a stale output.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

import schemas.evaluate
from pipelines.evaluate import prompts
from pipelines.evaluate.grade import grade
from pipelines.evaluate.symbolic import SymbolicChecker
from schemas.pool import MESSAGE

REQUESTS = pa.schema([pa.field("request_id", pa.string(), nullable=False), pa.field("messages", pa.list_(MESSAGE))])


def request_id(benchmark: str, question_id: str, messages: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
    return f"{benchmark}/{question_id}/{digest}"


def build_requests(questions: pa.Table) -> tuple[pa.Table, list[dict]]:
    """(requests table for the engine, the questions as dicts with `request_id` and `prompt`)."""
    rows = questions.to_pylist()
    for row in rows:
        messages = prompts.messages_for(row)
        row["messages"] = messages
        row["prompt"] = json.dumps(messages, ensure_ascii=False)
        row["request_id"] = request_id(row["benchmark"], row["question_id"], messages)
    requests = pa.table(
        {"request_id": [r["request_id"] for r in rows], "messages": [r["messages"] for r in rows]}, schema=REQUESTS
    )
    return requests, rows


def grade_outputs(questions: list[dict], outputs: dict[str, dict], timeout_s: float, workers: int = 1) -> pa.Table:
    """The eval/<ARM>/<BENCH> table: one row per question, graded; a missing or failed
    generation is a row with status 'failed' that counts as wrong."""
    local = threading.local()
    checkers: list[SymbolicChecker] = []
    lock = threading.Lock()

    def checker() -> SymbolicChecker:
        if not hasattr(local, "checker"):
            local.checker = SymbolicChecker()
            with lock:
                checkers.append(local.checker)
        return local.checker

    def one(question: dict) -> dict:
        generated = outputs.get(question["request_id"]) or {"status": "failed", "error": "no result"}
        text = generated.get("output") if generated["status"] == "ok" else None
        if text is None:
            verdict = {"extracted": None, "correct": False, "rule": "no output"}
        else:
            verdict = grade(text, question["gold"], question["kind"], question["choices"], timeout_s, checker())
        return {
            "question_id": question["question_id"],
            "prompt": question["prompt"],
            "output": text,
            "extracted": verdict["extracted"],
            "gold": question["gold"],
            "correct": bool(verdict["correct"]),
            "rule": verdict["rule"],
            "status": "ok" if text is not None else "failed",
            "error": None if text is not None else generated.get("error") or "no output",
            "finish_reason": generated.get("finish_reason"),
            "output_tokens": generated.get("output_tokens"),
        }

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(one, questions))
    finally:
        for each in checkers:
            each.close()
    return pa.Table.from_pylist(rows, schema=schemas.evaluate.EVAL_RESULTS)


def retryable(row: dict) -> bool:
    """A failed generation worth asking again: not one whose prompt is too long for the model."""
    from pipelines.generate.results import TOO_LONG

    return row["status"] != "ok" and not (row.get("error") or "").startswith(TOO_LONG)


def summary_row(arm: str, model: str, benchmark: str, table: pa.Table, generation_s: float, grading_s: float) -> dict:
    rows = table.select(["correct", "extracted", "status", "finish_reason"]).to_pylist()
    n = len(rows)
    correct = sum(r["correct"] for r in rows)
    return {
        "arm": arm,
        "model": model,
        "benchmark": benchmark,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "no_answer": sum(r["status"] == "ok" and r["extracted"] is None for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "failed": sum(r["status"] != "ok" for r in rows),
        "generation_seconds": round(generation_s, 3),
        "grading_seconds": round(grading_s, 3),
    }


def with_comparisons(summary: list[dict], answers: dict, baseline: str | None, section) -> list[dict]:
    """The summary rows with each run's Wilson interval and paired comparison with the
    baseline arm (all its seeds pooled); `answers` is run -> benchmark -> {question_id: correct}."""
    from pipelines.report import comparisons, stats

    settings = comparisons.Settings(baseline, section.alpha, section.resamples, section.seed)
    groups = {run: [run] for run in answers}
    if baseline is not None:
        groups[baseline] = comparisons.group_runs(answers).get(baseline, [])
        groups = {run: runs for run, runs in groups.items() if run == baseline or run not in groups[baseline]}
    compared = {(row["arm"], row["benchmark"]): row for row in comparisons.compare(answers, groups, baseline, settings)}
    rows = []
    for row in summary:
        run, benchmark = row["arm"], row["benchmark"]
        group = baseline if baseline is not None and run in groups.get(baseline, []) else run
        comparison = compared[(group, benchmark)]
        low, high = stats.wilson(row["correct"], row["n"])
        rows.append({**row, "accuracy_low": low, "accuracy_high": high, **{k: comparison[k] for k in COMPARED}})
    return rows


COMPARED = (
    "baseline",
    "difference",
    "difference_low",
    "difference_high",
    "p_value",
    "p_holm",
    "significant",
    "verdict",
)


def timed(function, *args, **kwargs):
    """(result, seconds) of a call."""
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - started
