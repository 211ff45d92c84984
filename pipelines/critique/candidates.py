"""Candidate answers: a student model's, or the pool's own responses.

A candidate's id hashes (question id, candidate index, solution), so a changed answer is a
new candidate. Request ids sent to engines are `<key>/<hash of the messages>`: the engine's
results are reused only for the very same prompt.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa

import schemas.critique
import schemas.generate
from pipelines import storage, views
from pipelines.critique.prompts import Prompt
from pipelines.critique.questions import reject
from pipelines.generate import results

BATCH_ROWS = 4096


def candidate_id(question_id: str, index: int, solution: str) -> str:
    document = json.dumps([question_id, index, solution], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(document.encode("utf-8")).hexdigest()[:32]


def request_id(key: str, messages: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{key}/{digest[:12]}"


def key_of(request: str) -> str:
    return request.split("/", 1)[0]


def student_messages(question: str, system: Prompt | None) -> list[dict]:
    system_turn = [{"role": "system", "content": system.text}] if system else []
    return [*system_turn, {"role": "user", "content": question}]


def write_student_requests(questions_file: str, system: Prompt | None, destination: str) -> int:
    """One request a question; the engine's `n` makes the candidates."""
    out = storage.ParquetAppender(destination, schemas.generate.REQUESTS)
    for batch in query_batches("SELECT question_id, question FROM questions", questions=questions_file):
        requests = []
        for row in batch.to_pylist():
            messages = student_messages(row["question"], system)
            requests.append({"request_id": request_id(row["question_id"], messages), "messages": messages})
        out.write(pa.Table.from_pylist(requests, schema=schemas.generate.REQUESTS))
    out.close()
    return out.rows


def from_student(
    out_dir: str, requests_file: str, questions_file: str, n: int, model: str, sampling: str, destination: str
) -> tuple[dict, list[dict]]:
    """Candidates out of the student's results; failed or empty answers become rejects."""
    connection = results.connect(out_dir, [requests_file], n)
    views.relation(connection, [questions_file]).create_view("questions")
    reader = connection.sql(
        "SELECT q.question_id, q.source, k.completion_index, l.output, l.status, l.error "
        "FROM keys k LEFT JOIN latest l USING (request_id, completion_index) "
        "JOIN questions q ON q.question_id = split_part(k.request_id, '/', 1) "
        "ORDER BY q.question_id, k.completion_index"
    ).to_arrow_reader(BATCH_ROWS)
    out = _Writer(destination)
    counts, rejects = {"asked": 0, "failed": 0, "too_long": 0, "empty": 0}, []
    for batch in reader:
        for row in batch.to_pylist():
            counts["asked"] += 1
            where = f"question {row['question_id']}, candidate {row['completion_index']}"
            if row["status"] != "ok":
                counts["failed"] += 1
                error = row["error"] or "no result from the student"
                counts["too_long"] += error.startswith(results.TOO_LONG)  # failed, but not retried
                rejects.append(reject(row["source"], "solution", "student generation failed", where, error))
            elif not (row["output"] or "").strip():
                counts["empty"] += 1
                rejects.append(reject(row["source"], "solution", "empty answer", where, ""))
            else:
                out.add(row["question_id"], row["completion_index"], row["output"].strip(), model, sampling)
    connection.close()
    return {**counts, "kept": out.close()}, rejects


def from_pool(questions_file: str, destination: str) -> tuple[dict, list[dict]]:
    """Each question's own response is its one candidate."""
    out, counts, rejects = _Writer(destination), {"asked": 0, "failed": 0, "too_long": 0, "empty": 0}, []
    query = "SELECT question_id, source, response FROM questions ORDER BY question_id"
    for batch in query_batches(query, questions=questions_file):
        for row in batch.to_pylist():
            counts["asked"] += 1
            if not (row["response"] or "").strip():
                counts["empty"] += 1
                where = f"question {row['question_id']}"
                rejects.append(reject(row["source"], "messages", "no response to critique", where, ""))
                continue
            out.add(row["question_id"], 0, row["response"], "pool", "{}")
    return {**counts, "kept": out.close()}, rejects


class _Writer:
    def __init__(self, destination: str):
        self.out, self.rows = storage.ParquetAppender(destination, schemas.critique.CANDIDATES), []

    def add(self, question_id: str, index: int, solution: str, model: str, sampling: str) -> None:
        identity = candidate_id(question_id, index, solution)
        self.rows.append({"id": identity, "question_id": question_id, "candidate_index": index,
                          "solution": solution, "model": model, "sampling": sampling})  # fmt: skip
        if len(self.rows) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.out.write(pa.Table.from_pylist(self.rows, schema=schemas.critique.CANDIDATES))
        self.rows = []

    def close(self) -> int:
        self.flush()
        self.out.close()
        return self.out.rows


def query_batches(query: str, **tables: str):
    """Record batches of a query over Parquet files, each seen as the view named by its keyword."""
    connection = views.duckdb_connection()
    for name, location in tables.items():
        views.relation(connection, [location]).create_view(name)
    yield from connection.sql(query).to_arrow_reader(BATCH_ROWS)
    connection.close()
