"""Reduce step of ingest: one dedupe bucket's staged rows -> one part of the pool.

Rows with the same id (the same normalised conversation) land in the same bucket, so each
bucket is deduplicated alone, in bounded memory, keeping the row that came first in the
inputs (lowest `seq`). The part is sorted by `seq`, which makes the pool deterministic.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from pipelines import runs, storage


def bucket_key(bucket: int) -> str:
    return f"b-{bucket:05d}"


def process(bucket: int, work_dir: str) -> dict:
    started = time.process_time()
    key = bucket_key(bucket)
    files = storage.list_files(storage.join(work_dir, "staged", key), ".parquet")
    staged = _read_all(files)
    first = staged.group_by("id", use_threads=False).aggregate([("seq", "min")])
    kept = staged.filter(pc.is_in(staged["seq"], value_set=first["seq_min"])).sort_by("seq")
    pool = kept.drop_columns(["seq"]).cast(schemas.SCHEMAS["pool"])
    schemas.check("pool", pool)
    if pool.num_rows:
        storage.write_parquet_atomic(pool, storage.join(work_dir, "pool", f"part-{bucket:05d}.parquet"))
    stats = {
        "bucket": key,
        "rows_in": staged.num_rows,
        "rows_out": pool.num_rows,
        "duplicates_by_source": _duplicates_by_source(staged, kept),
        "cpu_seconds": round(time.process_time() - started, 3),
    }
    runs.mark_unit_done(work_dir, key, stats)
    return stats


def _read_all(files: list[str]) -> pa.Table:
    schema = schemas.SCHEMAS["staged_pool"]
    tables = []
    for location in files:
        with storage.open_random_access(location) as handle:
            tables.append(pq.read_table(handle).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _duplicates_by_source(staged: pa.Table, kept: pa.Table) -> dict[str, int]:
    def counts(table: pa.Table) -> dict[str, int]:
        grouped = table.group_by("source").aggregate([("source", "count")])
        return dict(zip(grouped["source"].to_pylist(), grouped["source_count"].to_pylist(), strict=True))

    before, after = counts(staged), counts(kept)
    return {source: n - after.get(source, 0) for source, n in before.items() if n > after.get(source, 0)}
