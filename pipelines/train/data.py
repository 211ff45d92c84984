"""An arm's data reference -> checked examples, split into one file a worker plus a held-out file.

References: `selection:<NAME>` (the run's selections/<NAME> joined to the pool, in rank
order), `cft` (the run's cft table), or a path/glob of Parquet or JSON Lines files with a
`messages` column (list of {role, content}; `id` is computed when absent).

Every row is checked as ingest checks the pool (roles, order, empty turns) and must hold an
assistant turn; a bad row goes to the rejects table with its file, row and reason, so rows
read = rows kept + rows rejected. Kept rows are ordered by a seeded hash of their id: the
first `validation_rows` are held out, the rest are dealt to the workers in turn, so every
worker's shard is fixed and equal within one row. A fixed shard is what makes resuming exact:
a worker that restarts holds the same rows and can skip the ones its checkpoint trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

import schemas
from pipelines import runs, storage, views
from pipelines.ingest import normalize, readers
from schemas.train import TRAIN_DATA


class DataError(ValueError):
    """A data reference that cannot be used; names the reference and what is missing."""


@dataclass
class Prepared:
    shards: list[str]  # data/shard-<rank>.parquet, one a worker
    validation: str | None  # validation.parquet, when rows are held out
    rows_read: int = 0
    rows_rejected: int = 0
    rows_validation: int = 0
    shard_rows: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        return self.__dict__.copy()


def tables(run_dir: str, reference: str) -> list[str]:
    """Run tables a reference reads (their manifests must exist)."""
    if reference.startswith("selection:"):
        return [f"selections/{reference.removeprefix('selection:')}", "pool"]
    return ["cft"] if reference == "cft" else []


def fingerprint(run_dir: str, reference: str) -> dict:
    """What identifies the data: the manifests' identities of run tables, or the files' sizes and times."""
    inputs = tables(run_dir, reference)
    if inputs:
        found = {}
        for table in inputs:
            manifest = runs.read_manifest(run_dir, table)
            if manifest is None:
                raise DataError(f"data {reference!r}: {table} is not finished in {run_dir}; run its stage first")
            found[table] = manifest["identity"]
        return found
    infos = storage.file_infos(reference)
    files = [i for i in infos if readers.container_of(i.path) in ("parquet", "jsonl", "json")]
    if not files:
        raise DataError(f"data {reference!r}: no Parquet or JSON Lines files there")
    return {"files": [(i.path, i.size, i.mtime_ns) for i in files]}


def _records(run_dir: str, reference: str) -> Iterator[tuple[str, int, dict | None, normalize.RowError | None]]:
    """(file, row, record, read error) for every row the reference names."""
    if reference.startswith("selection:"):
        yield from _selection_rows(run_dir, reference.removeprefix("selection:"))
        return
    if reference == "cft":
        files = storage.list_files(storage.join(run_dir, "cft"), ".parquet")
    else:
        files = [storage.to_location(reference, i.path) for i in storage.file_infos(reference)]
    for location in files:
        container = readers.container_of(location)
        if container not in ("parquet", "jsonl", "json"):
            continue
        for record in readers.read(location, container):
            yield location, record.row, record.data, record.error


def _selection_rows(run_dir: str, name: str):
    """The selection's rows in rank order, each with the pool's messages (None when not in the pool)."""
    connection = views.duckdb_connection()
    selection = storage.list_files(storage.join(run_dir, "selections", name), ".parquet")
    if not selection:
        raise DataError(f"data 'selection:{name}': selections/{name} has no rows in {run_dir}")
    views.relation(connection, selection).select("id, rank").create_view("selection")
    pool = storage.list_files(storage.join(run_dir, "pool"), ".parquet")
    views.relation(connection, pool).select("id, messages").create_view("pool")
    result = connection.execute(
        "SELECT s.id, s.rank, p.messages FROM selection s LEFT JOIN pool p USING (id) ORDER BY s.rank"
    )
    while batch := result.fetchmany(4096):
        for example_id, rank, messages in batch:
            record = {"id": example_id, "messages": messages}
            error = None
            if messages is None:
                error = normalize.RowError("not in pool", "id", f"id {example_id} is not in the pool")
            yield f"selections/{name}", rank, record, error


def checked_example(record: dict) -> tuple[str, list[tuple[str, str]]]:
    """(id, normalised turns) of a record, or RowError naming the field at fault."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise normalize.RowError("missing field", "messages", "expected a list of {role, content}")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise normalize.RowError("wrong-typed field", f"messages[{index}]", "expected {role, content}")
        turns.append(
            (
                normalize.role(message.get("role"), f"messages[{index}].role"),
                normalize.text(message.get("content"), f"messages[{index}].content"),
            )
        )
    normalize.conversation(turns, "messages")
    if not any(role == "assistant" for role, _ in turns):
        raise normalize.RowError("no assistant turn", "messages", "nothing to train on: no assistant turn")
    example_id = record.get("id")
    if not isinstance(example_id, str) or not example_id:
        example_id = normalize.example_id(turns)
    return example_id, turns


def prepare(
    run_dir: str,
    reference: str,
    work_dir: str,
    stage: str,
    num_workers: int,
    validation_rows: int,
    seed: int,
    records: Iterator | None = None,
) -> Prepared:
    """Check every row, write rejects, hold out validation rows, write one shard file a worker.

    `records` ((file, row, record, read error) tuples) replaces the reference's own rows."""
    kept: list[tuple[str, str, list]] = []  # (order key, id, turns)
    rejects = {name: [] for name in schemas.SCHEMAS["rejects"].names}
    rows_read = 0
    for location, row, record, error in records if records is not None else _records(run_dir, reference):
        rows_read += 1
        try:
            if error is not None:
                raise error
            example_id, turns = checked_example(record)
        except normalize.RowError as problem:
            raw = json.dumps(record, ensure_ascii=False, default=str)[: readers.RAW_LIMIT] if record else ""
            for key, value in zip(
                rejects,
                (stage, reference, location, row, problem.field, problem.reason, problem.detail, raw),
                strict=True,
            ):
                rejects[key].append(value)
            continue
        order = hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()
        kept.append((order, example_id, turns))
    kept.sort(key=lambda item: item[0])
    held, training = kept[:validation_rows], kept[validation_rows:]
    if len(training) < num_workers:
        raise DataError(f"data {reference!r}: {len(training)} training rows for {num_workers} workers")
    prepared = Prepared([], None, rows_read, len(rejects["stage"]), len(held))
    storage.write_parquet_atomic(pa.Table.from_pydict(rejects, schema=schemas.SCHEMAS["rejects"]), _rejects(work_dir))
    for rank in range(num_workers):
        location = storage.join(work_dir, "data", f"shard-{rank:05d}.parquet")
        prepared.shard_rows.append(_write(training[rank::num_workers], location))
        prepared.shards.append(location)
    if held:
        prepared.validation = storage.join(work_dir, "data", "validation.parquet")
        _write(held, prepared.validation)
    return prepared


def rejects_dir(work_dir: str) -> str:
    return storage.join(work_dir, "rejects")


def _rejects(work_dir: str) -> str:
    return storage.join(rejects_dir(work_dir), "part-00000.parquet")


def _write(rows: list[tuple[str, str, list]], location: str) -> int:
    messages = [[{"role": r, "content": c} for r, c in turns] for _, _, turns in rows]
    table = pa.Table.from_pydict({"id": [r[1] for r in rows], "messages": messages}, schema=TRAIN_DATA)
    schemas.check("train_data", table, TRAIN_DATA)
    storage.write_parquet_atomic(table, location, row_group_size=1024)
    return table.num_rows
