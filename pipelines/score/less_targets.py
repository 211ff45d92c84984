"""LESS target sets: the rows whose gradients pool rows are compared with.

A target is the first `rows` rows of a file or glob (JSON Lines, JSON, Parquet; any ingest
format, detected from the columns or forced: gsm8k and math benchmark files, qa, openai
messages, ...), or `rows` pool rows of one source in a seeded hash order of their ids. Rows are
normalised as ingest normalises them and need an assistant turn (the gradient's loss is on
it). A bad row stops the scorer with its file, row and field: a target set is a few dozen
hand-picked rows, and a silently smaller one would change every score.
"""

from __future__ import annotations

from pipelines import runs, storage, views
from pipelines.ingest import adapters, normalize, readers

POOL_ROWS = """
SELECT messages FROM pool
WHERE source = $source AND messages[-1].role = 'assistant'
ORDER BY md5($seed || ':' || id)
LIMIT $rows
"""


class TargetError(ValueError):
    pass


def read(name: str, target, run_dir: str) -> list[list[dict]]:
    """The target's rows as messages lists ({role, content})."""
    turns_list = _file_rows(name, target) if target.path is not None else _pool_rows(name, target, run_dir)
    if not turns_list:
        where = target.path if target.path is not None else f"pool source {target.pool_source!r}"
        raise TargetError(f"less target {name!r}: no rows in {where}")
    return [[{"role": r, "content": c} for r, c in turns] for turns in turns_list]


def fingerprint(rows: list[list[dict]]) -> str:
    """What identifies a target set: the ids of its rows, in order."""
    ids = [normalize.example_id([(m["role"], m["content"]) for m in row]) for row in rows]
    return runs.stable_hash(ids)


def _file_rows(name: str, target) -> list[list[tuple[str, str]]]:
    files = [storage.to_location(target.path, info.path) for info in storage.file_infos(target.path)]
    files = [f for f in files if readers.container_of(f) is not None]
    if not files:
        raise TargetError(f"less target {name!r}: no JSON Lines, JSON or Parquet file at {target.path!r}")
    found: list[list[tuple[str, str]]] = []
    for location in files:
        container = readers.container_of(location)
        fmt = target.format or adapters.detect(readers.columns(location, container), location)
        for record in readers.read(location, container):
            if len(found) == target.rows:
                return found
            found.append(_checked(name, location, record, fmt))
    return found


def _checked(name: str, location: str, record: readers.Record, fmt: str) -> list[tuple[str, str]]:
    try:
        if record.error is not None:
            raise record.error
        turns = normalize.conversation(adapters.adapt(fmt, record.data).turns, "messages")
        if not any(role == "assistant" for role, _ in turns):
            raise normalize.RowError("no assistant turn", "messages", "a target row needs an answer to take a loss on")
    except normalize.RowError as problem:
        field = f", field {problem.field}" if problem.field else ""
        raise TargetError(f"less target {name!r}: {location}, row {record.row}{field}: {problem.detail}") from None
    return turns


def _pool_rows(name: str, target, run_dir: str) -> list[list[tuple[str, str]]]:
    connection = views.duckdb_connection()
    views.relation(connection, storage.list_files(storage.join(run_dir, "pool"), ".parquet")).create_view("pool")
    parameters = {"source": target.pool_source, "seed": str(target.seed), "rows": target.rows}
    rows = connection.execute(POOL_ROWS, parameters).fetchall()  # rows without an answer are left out
    return [[(m["role"], m["content"]) for m in messages] for (messages,) in rows]
