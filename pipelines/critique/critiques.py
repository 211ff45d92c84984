"""The teacher's critique of every candidate, its conclusion, and the reference's verdict.

The teacher gets the system prompt and the user template filled with the question and the
candidate's solution. Its output is stored with `[END]` stripped; `conclusion` is parsed
from it (conclusion.parse); where the question has a reference, the candidate's final
answer is graded against it (`verdict`) and `agrees` says whether the teacher concurs.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

import schemas.critique
import schemas.generate
from pipelines import storage, views
from pipelines.critique import conclusion
from pipelines.critique.candidates import BATCH_ROWS, query_batches, request_id
from pipelines.critique.prompts import Prompt, fill
from pipelines.generate import results


def teacher_messages(question: str, solution: str, system: Prompt, user: Prompt) -> list[dict]:
    return [
        {"role": "system", "content": system.text},
        {"role": "user", "content": fill(user.text, question=question, solution=solution)},
    ]


def forced_conclusion_regex(max_chars: int) -> str:
    """Any text of at most `max_chars` characters, then the conclusion line."""
    return rf"[\s\S]{{0,{max_chars}}}\nConclusion: (right|wrong) \[END\]"


def write_teacher_requests(candidates_file: str, questions_file: str, system: Prompt, user: Prompt, destination) -> int:
    out = storage.ParquetAppender(destination, schemas.generate.REQUESTS)
    query = "SELECT c.id, c.solution, q.question FROM candidates c JOIN questions q USING (question_id) ORDER BY c.id"
    for batch in query_batches(query, candidates=candidates_file, questions=questions_file):
        requests = []
        for row in batch.to_pylist():
            messages = teacher_messages(row["question"], row["solution"], system, user)
            requests.append({"request_id": request_id(row["id"], messages), "messages": messages})
        out.write(pa.Table.from_pylist(requests, schema=schemas.generate.REQUESTS))
    out.close()
    return out.rows


def write_critiques(
    out_dir: str, requests_file: str, candidates_file: str, questions_file: str, teacher: str, grader, destination
) -> dict:
    """The critiques table, one row per candidate; returns counts by status, conclusion, verdict."""
    connection = results.connect(out_dir, [requests_file], 1)
    views.relation(connection, [candidates_file]).create_view("candidates")
    views.relation(connection, [questions_file]).create_view("questions")
    reader = connection.sql(
        "SELECT c.id, c.solution, q.reference, l.output, l.status, l.error, l.attempts "
        "FROM keys k LEFT JOIN latest l USING (request_id, completion_index) "
        "JOIN candidates c ON c.id = split_part(k.request_id, '/', 1) "
        "JOIN questions q ON q.question_id = c.question_id ORDER BY c.id"
    ).to_arrow_reader(BATCH_ROWS)
    out = storage.ParquetAppender(destination, schemas.critique.CRITIQUES)
    counts = Counter()
    for batch in reader:
        found = batch.to_pylist()
        verdicts = grader.verdicts([(row["solution"], row["reference"]) for row in found])
        table = [critique_row(row, verdict, teacher) for row, verdict in zip(found, verdicts, strict=True)]
        for row in table:
            counts[f"status_{row['status']}"] += 1
            counts[f"conclusion_{row['conclusion']}"] += 1
            counts[f"verdict_{row['verdict']}"] += 1
            counts[f"agrees_{row['agrees']}"] += 1
            counts["too_long"] += (row["error"] or "").startswith(results.TOO_LONG)  # failed, not retried
        out.write(pa.Table.from_pylist(table, schema=schemas.critique.CRITIQUES))
    out.close()
    if not out.rows:
        storage.write_parquet_atomic(schemas.critique.CRITIQUES.empty_table(), destination)
    connection.close()
    return {"rows": out.rows, **{key.lower(): value for key, value in sorted(counts.items())}}


def critique_row(row: dict, verdict: str | None, teacher: str) -> dict:
    ok = row["status"] == "ok"
    found = conclusion.parse(row["output"]) if ok else None
    return {
        "id": row["id"],
        "critique": conclusion.strip_end(row["output"]) if ok else None,
        "conclusion": found,
        "verdict": verdict,
        "agrees": (found == verdict) if found is not None and verdict is not None else None,
        "teacher": teacher,
        "status": row["status"] or "failed",
        "error": row["error"] if row["status"] else "no result from the teacher",
        "attempts": row["attempts"] or 0,
    }
