"""CFT training examples from critiques, with the paper's optional filters.

A critique becomes an example when the teacher answered and concluded right or wrong, and
it passes, in this order: agreement with the reference grading (`drop_disagreeing`),
digits in the question and/or solution (`require_digits_in`), `max_solution_chars`, then
the longest `drop_longest_solutions` fraction of solutions and the shortest
`drop_shortest_critiques` fraction of critiques among the rows still in (ties broken by
id). Every candidate that does not become an example is a reject with the first reason.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

import schemas.critique
from pipelines import storage
from pipelines.critique.candidates import query_batches
from pipelines.critique.examples import cft_turns
from pipelines.critique.questions import reject
from pipelines.critique.settings import Filters
from pipelines.generate.results import TOO_LONG

JOINED = "FROM critiques r JOIN candidates c USING (id) JOIN questions q ON q.question_id = c.question_id ORDER BY r.id"


def drop_reasons(rows: list[dict], filters: Filters, drop_disagreeing: bool) -> dict[str, str]:
    """id -> why the row is not an example, for every row that is not."""
    reasons: dict[str, str] = {}
    for row in rows:
        reason = _row_reason(row, filters, drop_disagreeing)
        if reason:
            reasons[row["id"]] = reason
    remaining = [row for row in rows if row["id"] not in reasons]
    for fraction, key, longest, why in (
        (filters.drop_longest_solutions, "solution_chars", True, "among the longest solutions"),
        (filters.drop_shortest_critiques, "critique_chars", False, "among the shortest critiques"),
    ):
        count = int(fraction * len(remaining))
        if not count:
            continue
        ranked = sorted(remaining, key=lambda r: (-r[key] if longest else r[key], r["id"]))
        for row in ranked[:count]:
            reasons[row["id"]] = why
        remaining = [row for row in remaining if row["id"] not in reasons]
    return reasons


def _row_reason(row: dict, filters: Filters, drop_disagreeing: bool) -> str | None:
    if row["status"] != "ok":
        too_long = (row["error"] or "").startswith(TOO_LONG)
        return "question and solution too long for the teacher" if too_long else "critique failed"
    if row["conclusion"] is None:
        return "no conclusion in the critique"
    if drop_disagreeing and row["agrees"] is False:
        return "teacher disagrees with the reference"
    for field in filters.require_digits_in:
        if not row[f"{field}_digits"]:
            return f"no digits in the {field}"
    if filters.max_solution_chars is not None and row["solution_chars"] > filters.max_solution_chars:
        return "solution over max_solution_chars"
    return None


def write(files: dict[str, str], filters: Filters, drop_disagreeing: bool, destination: str):
    """Write the cft table; returns (counts, rejects). `files`: candidates, questions, critiques."""
    light = (
        "SELECT r.id, r.status, r.error, r.conclusion, r.agrees, length(c.solution) AS solution_chars, "
        "coalesce(length(r.critique), 0) AS critique_chars, regexp_matches(q.question, '[0-9]') AS question_digits, "
        f"regexp_matches(c.solution, '[0-9]') AS solution_digits {JOINED}"
    )
    rows = [row for batch in query_batches(light, **files) for row in batch.to_pylist()]
    reasons = drop_reasons(rows, filters, drop_disagreeing)
    full = f"SELECT r.id, c.question_id, q.source, q.question, c.solution, r.critique, r.error, r.conclusion {JOINED}"
    out = storage.ParquetAppender(destination, schemas.critique.CFT)
    labels, rejects = Counter(), []
    for batch in query_batches(full, **files):
        examples = []
        for row in batch.to_pylist():
            if row["id"] in reasons:
                detail = f"candidate {row['id']} of question {row['question_id']}"
                raw = row["critique"] or row["error"] or ""  # a failed critique: why it failed
                rejects.append(reject(row["source"], "critique", reasons[row["id"]], detail, raw))
                continue
            turns = cft_turns(row["question"], row["solution"], row["critique"])
            messages = [{"role": role, "content": content} for role, content in turns]
            examples.append({"id": row["id"], "messages": messages, "label": row["conclusion"],
                             "question_id": row["question_id"]})  # fmt: skip
            labels[row["conclusion"]] += 1
        out.write(pa.Table.from_pylist(examples, schema=schemas.critique.CFT))
    out.close()
    if not out.rows:
        storage.write_parquet_atomic(schemas.critique.CFT.empty_table(), destination)
    return {"rows": out.rows, "labels": label_balance(labels)}, rejects


def label_balance(labels: Counter) -> dict:
    total = sum(labels.values())
    return {label: {"rows": labels[label], "fraction": round(labels[label] / total, 4) if total else None}
            for label in ("right", "wrong")}  # fmt: skip
