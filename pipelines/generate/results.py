"""An engine's out_dir: result parts by attempt, what is still to ask, and the latest row per key.

```
out_dir/_generate.json          the settings the results were made with
out_dir/attempt-00001/part-*.parquet   one folder per generate() call that had work
out_dir/_pending.todo           while a call runs: the rows it asks (Parquet)
```
A row is keyed by (request_id, completion_index); the latest attempt's row wins. `ok`
rows are never asked again, nor rows whose prompt is too long for the engine's context
(the same settings would fail them again), so later attempts only hold retried or new rows. After a call,
the attempts are compacted into one folder of latest rows, so readers that take every
Parquet file under out_dir see each key once; a call killed halfway leaves its finished
parts, and the next call asks only for the rest.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

import schemas
import schemas.generate
from pipelines import storage, views
from pipelines.progress import note

SETTINGS_FILE = "_generate.json"
PENDING_FILE = "_pending.todo"  # not *.parquet, and "_" first: readers of out_dir skip it
TABLE = "generations"  # the name results are checked under
TOO_LONG = "prompt too long"  # a failure that the same settings would repeat: not retried


def prepare(out_dir: str, fingerprint: dict, within: str | None = None) -> None:
    """Keep results made with these settings; results of other settings are removed (only
    inside the run folder `within`, where one is given)."""
    location = storage.join(out_dir, SETTINGS_FILE)
    if storage.exists(location) and storage.read_json(location) == fingerprint:
        return
    if attempt_dirs(out_dir):
        note(f"generate: {out_dir} holds results of other settings; starting over")
    storage.remove(out_dir, within=within)
    storage.write_json_atomic(fingerprint, location)


def attempt_dirs(out_dir: str) -> list[str]:
    files = storage.list_files(out_dir, ".parquet", recursive=True)
    folders = {f.rsplit("/", 2)[-2] for f in files if f.rsplit("/", 2)[-2].startswith("attempt-")}
    return [storage.join(out_dir, name) for name in sorted(folders)]


def next_attempt(out_dir: str) -> str:
    existing = attempt_dirs(out_dir)
    number = int(existing[-1].rsplit("-", 1)[-1]) + 1 if existing else 1
    return storage.join(out_dir, f"attempt-{number:05d}")


def part_name(request_ids: list[str], indexes: list[int]) -> str:
    keys = "\n".join(f"{r}/{i}" for r, i in zip(request_ids, indexes, strict=True))
    return f"part-{hashlib.sha256(keys.encode()).hexdigest()[:20]}.parquet"


def write_part(table: pa.Table, parts_dir: str) -> str:
    """Check result rows against their schema and write them as one part, whole or not at all."""
    schemas.check(TABLE, table, schemas.generate.RESULTS)
    name = part_name(table["request_id"].to_pylist(), table["completion_index"].to_pylist())
    location = storage.join(parts_dir, name)
    storage.write_parquet_atomic(table, location)
    return location


def connect(out_dir: str, requests: pa.Table | list[str], n: int):
    """DuckDB with views `requests`, `keys` (every request x completion) and `latest` (the
    latest result row of each key that has one)."""
    connection = views.duckdb_connection(keep_order=False)
    if isinstance(requests, pa.Table):
        connection.from_arrow(requests).create_view("requests")
    else:
        views.relation(connection, requests).create_view("requests")
    connection.execute(
        "CREATE TEMP TABLE completion_indexes AS SELECT CAST(range AS INTEGER) AS k FROM range($n)", {"n": n}
    )
    connection.execute(
        "CREATE VIEW keys AS SELECT r.request_id, i.k AS completion_index, r.messages "
        "FROM requests r CROSS JOIN completion_indexes i"
    )
    attempts = attempt_dirs(out_dir)
    selects = []
    for number, folder in enumerate(attempts):  # attempt order is name order
        views.relation(connection, storage.list_files(folder, ".parquet")).create_view(f"attempt_{number}")
        selects.append(f"SELECT *, {number} AS attempt_order FROM attempt_{number}")
    union = " UNION ALL ".join(selects) or _empty_results()
    connection.execute(
        f"CREATE VIEW latest AS SELECT * EXCLUDE (attempt_order) FROM ({union}) "
        "QUALIFY row_number() OVER (PARTITION BY request_id, completion_index ORDER BY attempt_order DESC) = 1"
    )
    return connection


def _empty_results() -> str:
    columns = ", ".join(
        f'CAST(NULL AS {"INTEGER" if pa.types.is_int32(f.type) else "VARCHAR"}) AS "{f.name}"'
        for f in schemas.generate.RESULTS
    )
    return f"SELECT {columns}, 0 AS attempt_order WHERE false"


def check_unique(connection) -> None:
    repeated = connection.execute(
        "SELECT request_id, count(*) FROM requests GROUP BY 1 HAVING count(*) > 1 LIMIT 3"
    ).fetchall()
    if repeated:
        raise ValueError(f"generate: request ids must be unique; repeated: {repeated}")


def write_pending(connection, out_dir: str, rows_per_group: int) -> tuple[str, int]:
    """Every requested key without an `ok` row, to out_dir/_pending.todo; (location, rows)."""
    reader = connection.sql(
        "SELECT k.request_id, k.completion_index, k.messages, "
        "CAST(coalesce(l.attempts, 0) AS INTEGER) AS previous_attempts "
        "FROM keys k LEFT JOIN latest l USING (request_id, completion_index) "
        "WHERE l.status IS DISTINCT FROM 'ok' AND NOT coalesce(starts_with(l.error, $too_long), false)",
        params={"too_long": TOO_LONG},
    ).to_arrow_reader(rows_per_group)
    location = storage.join(out_dir, PENDING_FILE)
    out = storage.ParquetAppender(location, schemas.generate.PENDING)
    for batch in reader:
        table = pa.Table.from_batches([batch]).cast(schemas.generate.PENDING)
        for start in range(0, table.num_rows, rows_per_group):  # a row group a block of work
            out.write(table.slice(start, rows_per_group))
    out.close()
    return location, out.rows


def compact(out_dir: str, rows_per_part: int) -> None:
    """Fold every attempt into one new folder of latest rows, then drop the old folders."""
    attempts = attempt_dirs(out_dir)
    if len(attempts) < 2:
        return
    connection = connect(out_dir, schemas.generate.REQUESTS.empty_table(), 1)
    columns = ", ".join(f'"{f.name}"' for f in schemas.generate.RESULTS)
    reader = connection.sql(f"SELECT {columns} FROM latest ORDER BY request_id, completion_index").to_arrow_reader(
        rows_per_part
    )
    target = next_attempt(out_dir)
    for batch in reader:
        write_part(pa.Table.from_batches([batch]).cast(schemas.generate.RESULTS), target)
    for folder in attempts:
        storage.remove(folder, within=out_dir)


def summary(connection) -> dict:
    """Counts over the requested keys: by status (missing: never answered), and tokens."""
    rows = connection.execute(
        "SELECT coalesce(l.status, 'missing'), count(*), sum(l.prompt_tokens), sum(l.output_tokens) "
        "FROM keys k LEFT JOIN latest l USING (request_id, completion_index) GROUP BY 1"
    ).fetchall()
    counts = {status: count for status, count, _, _ in rows}
    return {
        "completions": sum(counts.values()),
        "ok": counts.get("ok", 0),
        "failed": counts.get("failed", 0),
        "missing": counts.get("missing", 0),
        "prompt_tokens": int(sum(r[2] or 0 for r in rows)),
        "output_tokens": int(sum(r[3] or 0 for r in rows)),
    }
