"""Pool rows as CFT questions: which rows, and the question and response inside each.

Rows are filtered by source and reference, then ordered by md5(seed/id) and cut at the
limit, so the same seed picks the same questions whatever the pool's file layout. A row's
question is its only user turn before the final assistant turn (the response, when there
is one); a row with several user turns, or none, is rejected with its reason.
"""

from __future__ import annotations

import pyarrow as pa

import schemas.critique
from pipelines import storage, views
from pipelines.critique.settings import Questions
from pipelines.score import parts

NO_LIMIT = 2**62
RAW_CHARS = 1000


def split(messages: list[dict]) -> tuple[str | None, str | None, str | None]:
    """(question, response, why not) of a conversation."""
    turns = [(m["role"], m["content"]) for m in messages]
    response = None
    if turns and turns[-1][0] == "assistant":
        response, turns = turns[-1][1], turns[:-1]
    users = [content for role, content in turns if role == "user"]
    if len(users) != 1:
        why = "multi-turn conversation" if users else "no user turn"
        return None, response, why
    return users[0], response, None


def select(run_dir: str, settings: Questions, destination: str) -> tuple[int, list[dict]]:
    """Write the questions to `destination` (Parquet); (rows read, reject rows)."""
    connection = views.duckdb_connection()
    views.relation(connection, parts.parquet_files(storage.join(run_dir, "pool"))).create_view("pool")
    reader = connection.sql(
        "SELECT id, source, messages, nullif(trim(reference), '') AS reference FROM pool "
        "WHERE ($sources IS NULL OR list_contains($sources, source)) "
        "AND (NOT $require_reference OR nullif(trim(reference), '') IS NOT NULL) "
        "ORDER BY md5(concat(CAST($seed AS VARCHAR), '/', id)) LIMIT $limit",
        params={
            "sources": settings.sources,
            "require_reference": settings.require_reference,
            "seed": settings.seed,
            "limit": settings.limit or NO_LIMIT,
        },
    ).to_arrow_reader(4096)
    out = storage.ParquetAppender(destination, schemas.critique.QUESTIONS)
    read, rejects = 0, []
    for batch in reader:
        kept = []
        for row in batch.to_pylist():
            read += 1
            question, response, why = split(row["messages"])
            if why is not None:
                rejects.append(reject(row["source"], "messages", why, f"pool id {row['id']}", row["messages"]))
                continue
            kept.append({"question_id": row["id"], "source": row["source"], "question": question,
                         "reference": row["reference"], "response": response})  # fmt: skip
        out.write(pa.Table.from_pylist(kept, schema=schemas.critique.QUESTIONS))
    out.close()
    if not out.rows:
        storage.write_parquet_atomic(schemas.critique.QUESTIONS.empty_table(), destination)
    connection.close()
    return read, rejects


def reject(source: str | None, field: str, reason: str, detail: str, raw) -> dict:
    """A row of rejects/critique."""
    text = raw if isinstance(raw, str) else repr(raw)
    return {"stage": "critique", "source": source, "file": None, "row": None, "field": field,
            "reason": reason, "detail": detail, "raw": text[:RAW_CHARS]}  # fmt: skip
