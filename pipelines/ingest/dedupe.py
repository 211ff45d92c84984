"""Reduce step of ingest: one dedupe bucket's staged rows -> one part of the pool.

Rows with the same id (the same normalised conversation) land in the same bucket, so each
bucket is deduplicated alone, keeping the row that came first in the inputs (lowest
`seq`). The staged files of a bucket, taken in unit order, are already in `seq` order, so
the first pass reads only (id, seq, source) to choose the rows to keep and the second
streams row groups through: memory follows the ids, not the rows' text.
"""

from __future__ import annotations

import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from pipelines import runs, storage

KEY_COLUMNS = ["id", "seq", "source"]


def bucket_key(bucket: int) -> str:
    return f"b-{bucket:05d}"


def process(bucket: int, work_dir: str) -> dict:
    started = time.process_time()
    key = bucket_key(bucket)
    files = storage.list_files(storage.join(work_dir, "staged", key), ".parquet")  # unit order
    keys = _read_keys(files)
    first = keys.group_by("id", use_threads=False).aggregate([("seq", "min")])["seq_min"]
    out = storage.ParquetAppender(storage.join(work_dir, "pool", f"part-{bucket:05d}.parquet"), schemas.SCHEMAS["pool"])
    for location in files:
        with storage.open_random_access(location) as handle:
            for batch in pq.ParquetFile(handle).iter_batches():
                kept = batch.filter(pc.is_in(batch["seq"], value_set=first))
                out.write(pa.Table.from_batches([kept]).drop_columns(["seq"]).cast(schemas.SCHEMAS["pool"]))
    out.close()
    kept_sources = keys.filter(pc.is_in(keys["seq"], value_set=first))["source"]
    stats = {
        "bucket": key,
        "rows_in": keys.num_rows,
        "rows_out": out.rows,
        "duplicates_by_source": _counts(keys["source"]) - _counts(kept_sources),
        "cpu_seconds": round(time.process_time() - started, 3),
    }
    runs.mark_unit_done(work_dir, key, stats)
    return stats


def _read_keys(files: list[str]) -> pa.Table:
    tables = []
    for location in files:
        with storage.open_random_access(location) as handle:
            tables.append(pq.read_table(handle, columns=KEY_COLUMNS))
    schema = schemas.SCHEMAS["staged_pool"]
    return pa.concat_tables(tables) if tables else pa.schema([schema.field(c) for c in KEY_COLUMNS]).empty_table()


def _counts(sources: pa.ChunkedArray) -> Counter:
    return Counter(sources.to_pylist())
