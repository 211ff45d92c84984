"""Benchmark files -> one table (schemas/evaluate.py BENCHMARK), from local paths or URIs.

Formats (detected from a file's fields, or named in the config):
  gsm8k          question, answer ending "#### N"
  math           problem, answer (MATH, MATH-500), solution kept in meta
  minerva        problem, solution: the gold is the solution's last \\boxed{}
  competition    id, problem, answer (AIME, AMC; 27.0 -> "27", "025" -> "25")
  olympiadbench  id, question, final_answer [one string], unit, answer_type
  theoremqa      problem, answer
  gpqa           Question, Correct Answer, Incorrect Answer 1-3: a multiple-choice question
                 whose options are shuffled by a hash of its Record ID; gold is the letter
Plus the `mathematics` source's held-out split (pipelines/ingest/mathematics.py).
A row that cannot be mapped is a reject naming the file, row and field.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

import schemas.evaluate
from pipelines import storage
from pipelines.evaluate.extract import last_boxed
from pipelines.ingest import readers
from pipelines.ingest.normalize import RowError
from pipelines.settings import repeated

LETTERS = "ABCDEFGHIJ"


@dataclass
class Loaded:
    table: pa.Table  # schemas.evaluate.BENCHMARK
    rejects: list[dict] = field(default_factory=list)  # schemas.pool.REJECTS rows
    rows_read: int = 0


def _text(data: dict, name: str) -> str:
    value = data.get(name)
    if isinstance(value, bool) or value is None:
        raise RowError("missing field" if value is None else "wrong-typed field", name)
    if isinstance(value, int | float):
        return _number_text(value)
    if not isinstance(value, str):
        raise RowError("wrong-typed field", name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError("empty field", name)
    return value.strip()


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


@dataclass
class Mapped:
    """One file row in the benchmark schema (meta: the row's fields worth keeping)."""

    question_id: str | int
    question: str
    gold: str
    meta: dict
    kind: str = "free"
    choices: list[str] | None = None


def gsm8k(data: dict, row: int) -> Mapped:
    answer = _text(data, "answer")
    if "####" not in answer:
        raise RowError("no final answer", "answer", "a GSM8K answer ends with '#### N'")
    gold = answer.rsplit("####", 1)[1].strip().replace(",", "")
    return Mapped(data.get("idx", row - 1), _text(data, "question"), gold, {"solution": answer})


def math_problems(data: dict, row: int) -> Mapped:
    meta = {k: data[k] for k in ("solution", "subject", "level") if k in data}
    question_id = data.get("unique_id", row - 1)
    return Mapped(question_id, _text(data, "problem"), _text(data, "answer"), meta)


def minerva(data: dict, row: int) -> Mapped:
    solution = _text(data, "solution")
    gold = last_boxed(solution)
    if not gold:
        raise RowError("no final answer", "solution", "no \\boxed{} in the solution")
    meta = {"solution": solution, "type": data.get("type")}
    return Mapped(data.get("idx", row - 1), _text(data, "problem"), gold, meta)


def competition(data: dict, row: int) -> Mapped:
    gold = _text(data, "answer")
    if re.fullmatch(r"0\d+", gold):
        gold = gold.lstrip("0")  # AIME answers are written with three digits
    meta = {k: data[k] for k in ("solution", "url") if data.get(k)}
    return Mapped(data.get("id", row - 1), _text(data, "problem"), gold, meta)


def olympiadbench(data: dict, row: int) -> Mapped:
    answers = data.get("final_answer")
    if not isinstance(answers, list) or len(answers) != 1 or not isinstance(answers[0], str):
        raise RowError("wrong-typed field", "final_answer", "expected a list of one string")
    gold = answers[0].replace("$", "").strip().rstrip(".").strip()
    solutions = data.get("solution") or []
    meta = {k: data.get(k) for k in ("subfield", "unit", "answer_type", "is_multiple_answer")}
    meta["solution"] = solutions[0] if solutions else None
    question = _text(data, "question")
    if data.get("context"):
        question = f"{data['context'].strip()}\n\n{question}"
    return Mapped(data.get("id", row - 1), question, gold, meta)


def theoremqa(data: dict, row: int) -> Mapped:
    return Mapped(row - 1, _text(data, "problem"), _text(data, "answer"), {})


def gpqa(data: dict, row: int) -> Mapped:
    record_id = _text(data, "Record ID")
    correct = _text(data, "Correct Answer")
    incorrect = [_text(data, f"Incorrect Answer {i}") for i in (1, 2, 3)]
    choices, letter = shuffled_choices(record_id, correct, incorrect)
    meta = {"domain": data.get("High-level domain"), "subdomain": data.get("Subdomain")}
    return Mapped(record_id, _text(data, "Question"), letter, meta, kind="choice", choices=choices)


def shuffled_choices(question_id: str, correct: str, incorrect: list[str]) -> tuple[list[str], str]:
    """Options in an order fixed by the question id (the same on every run), and the correct letter."""
    seed = int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big")
    choices = [correct, *incorrect]
    random.Random(seed).shuffle(choices)
    return choices, LETTERS[choices.index(correct)]


FORMATS: dict[str, Callable] = {
    "gsm8k": gsm8k,
    "math": math_problems,
    "minerva": minerva,
    "competition": competition,
    "olympiadbench": olympiadbench,
    "theoremqa": theoremqa,
    "gpqa": gpqa,
}


def detect_format(fields: set[str], sample: dict) -> str | None:
    """The format whose fields a file's first row has, or None."""
    if {"Question", "Correct Answer", "Incorrect Answer 1"} <= fields:
        return "gpqa"
    if {"final_answer", "question"} <= fields:
        return "olympiadbench"
    if {"question", "answer"} <= fields and "####" in str(sample.get("answer", "")):
        return "gsm8k"
    if {"problem", "answer", "url"} <= fields:
        return "competition"
    if {"problem", "answer", "solution"} <= fields:
        return "math"
    if {"problem", "solution"} <= fields:
        return "minerva"
    if {"problem", "answer"} <= fields:
        return "theoremqa"
    return None


def load_file(name: str, location: str, fmt: str = "auto", limit: int | None = None) -> Loaded:
    """Read a benchmark file (local path or URI; JSON Lines, JSON or Parquet) into the table."""
    container = readers.container_of(location)
    if container is None or not storage.exists(location):
        raise FileNotFoundError(f"benchmark {name!r}: {location} is not a readable JSON Lines, JSON or Parquet file")
    records = readers.read(location, container)
    mapped, rejects, read = [], [], 0
    mapper = FORMATS.get(fmt) if fmt != "auto" else None
    for record in records:
        if limit is not None and len(mapped) >= limit:
            break
        read += 1
        error = record.error
        if error is None:
            mapper = mapper or _detected(name, location, record.data)
            try:
                item = mapper(record.data, record.row)
                item.meta = {"file": location, "row": record.row, **item.meta}
                mapped.append(item)
            except RowError as problem:
                error = problem
        if error is not None:
            rejects.append(_reject(name, location, record, error))
    return Loaded(_table(name, location, mapped), rejects, read)


def _detected(name: str, location: str, data: dict) -> Callable:
    detected = detect_format(set(data), data)
    if detected is None:
        raise ValueError(
            f"benchmark {name!r}: {location}: no format fits the fields {sorted(data)[:12]}; "
            f"name one with format: ({', '.join(FORMATS)})"
        )
    return FORMATS[detected]


def _reject(name: str, location: str, record: readers.Record, error: RowError) -> dict:
    return {
        "stage": "evaluate",
        "source": name,
        "file": location,
        "row": record.row,
        "field": error.field,
        "reason": error.reason,
        "detail": f"{location} row {record.row}: {error}",
        "raw": record.raw() if record.data is not None or record.raw_text else None,
    }


def _table(name: str, location: str, mapped: list[Mapped]) -> pa.Table:
    ids = [str(item.question_id) for item in mapped]
    if twice := repeated(ids):
        raise ValueError(f"benchmark {name!r}: {location}: question ids appear more than once: {twice[:5]}")
    columns = {
        "question_id": ids,
        "benchmark": [name] * len(mapped),
        "question": [item.question for item in mapped],
        "gold": [item.gold for item in mapped],
        "kind": [item.kind for item in mapped],
        "choices": [item.choices for item in mapped],
        "meta": [json.dumps(item.meta, ensure_ascii=False, default=str) for item in mapped],
    }
    return pa.table(columns, schema=schemas.evaluate.BENCHMARK)


def load_mathematics_heldout(
    name: str,
    rows: int,
    seed: int,
    modules: tuple[str, ...],
    difficulty: str,
    heldout_fraction: float,
) -> Loaded:
    """The `mathematics` source's held-out questions: never in a `train` split with the same
    `heldout_fraction`, whatever its seed, since a question's split follows its text's hash."""
    from pipelines.ingest import mathematics

    generated = mathematics.generate(
        0, rows, seed=seed, modules=modules, difficulty=difficulty, split="heldout", heldout_fraction=heldout_fraction
    )
    mapped = [
        Mapped(
            question_id=f"{seed}-{item.index}",
            question=item.question,
            gold=item.answer,
            meta={"generator": "mathematics", "module": item.module, "seed": seed, "index": item.index},
        )
        for item in generated
    ]
    return Loaded(_table(name, "mathematics", mapped), [], len(mapped))
