"""Reduce step of ingest: one dedupe bucket's staged rows -> one part of the pool.

Rows with the same id (the same normalised conversation) land in the same bucket, so each
bucket is deduplicated alone, keeping the row that came first in the inputs (lowest
`seq`). The staged files of a bucket, taken in unit order, are already in `seq` order, so
the first pass reads only (id, seq, source) to choose the rows to keep and the second
streams row groups through: memory follows the ids, not the rows' text.

The part is written in row groups of ROW_GROUP_ROWS rows, each with a Bloom filter of its
ids: ids are hashes, so min/max statistics prune nothing, and a query that looks a few rows
up by id (a join whose other side has at most DuckDB's dynamic_or_filter_threshold rows)
reads only the row groups whose filter may hold one of them, not the whole `messages`
column (docs/scale.md has the figures).
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
ROW_GROUP_ROWS = 10_000
# A false positive costs one row group's read: at 0.001, 13 ids over 100 row groups (1M rows)
# read ~1.3 more. The filter is ~14 bits an id, ~18 KB a row group.
BLOOM_FPP = 0.001


def bucket_key(bucket: int) -> str:
    return f"b-{bucket:05d}"


def process(bucket: int, work_dir: str) -> dict:
    started = time.process_time()
    key = bucket_key(bucket)
    files = storage.list_files(storage.join(work_dir, "staged", key), ".parquet")  # unit order
    keys = _read_keys(files)
    first = keys.group_by("id", use_threads=False).aggregate([("seq", "min")])["seq_min"]
    location = storage.join(work_dir, "pool", f"part-{bucket:05d}.parquet")
    bloom = {"id": {"ndv": ROW_GROUP_ROWS, "fpp": BLOOM_FPP}}
    out = storage.ParquetAppender(location, schemas.SCHEMAS["pool"], bloom_filter_options=bloom)
    _write_row_groups(out, _kept_batches(files, first), ROW_GROUP_ROWS)
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


def _kept_batches(files: list[str], first: pa.ChunkedArray):
    """The staged rows whose `seq` is their id's first, as pool-schema tables, in `seq` order."""
    for location in files:
        with storage.open_random_access(location) as handle:
            for batch in pq.ParquetFile(handle).iter_batches():
                kept = batch.filter(pc.is_in(batch["seq"], value_set=first))
                yield pa.Table.from_batches([kept]).drop_columns(["seq"]).cast(schemas.SCHEMAS["pool"])


def _write_row_groups(out: storage.ParquetAppender, tables, group_rows: int) -> None:
    """`tables` written as row groups of `group_rows` rows (the last one shorter): each
    write is a row group of its own, and the staged batches come in whatever sizes the
    filter left, so rows wait here until a full group is there."""
    waiting: list[pa.Table] = []
    rows = 0
    for table in tables:
        waiting.append(table)
        rows += table.num_rows
        if rows >= group_rows:
            whole = pa.concat_tables(waiting)
            cut = rows - rows % group_rows
            out.write(whole.slice(0, cut), row_group_size=group_rows)
            waiting, rows = [whole.slice(cut)], rows - cut
    if rows or (out.rows == 0 and waiting):  # an empty bucket still writes its (empty) part, as before
        out.write(pa.concat_tables(waiting))


def _read_keys(files: list[str]) -> pa.Table:
    tables = []
    for location in files:
        with storage.open_random_access(location) as handle:
            tables.append(pq.read_table(handle, columns=KEY_COLUMNS))
    schema = schemas.SCHEMAS["staged_pool"]
    return pa.concat_tables(tables) if tables else pa.schema([schema.field(c) for c in KEY_COLUMNS]).empty_table()


def _counts(sources: pa.ChunkedArray) -> Counter:
    return Counter(sources.to_pylist())
