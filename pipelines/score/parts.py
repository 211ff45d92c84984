"""A score table is a folder of parts; a part is written whole or not at all.

Part names hash their ids, so a block scored again (after a kill) rewrites the same file.
Which rows still need a score is an anti-join of the input table against the ids already
in parts, done by DuckDB over Arrow datasets (local or object store), streamed to a file.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from pipelines import storage, views

ACTOR_IO_CPUS = 0.25  # a read or write task beside an actor pool: a fraction, so the pool never starves it


def part_name(ids: list[str]) -> str:
    return f"part-{hashlib.sha256(chr(10).join(ids).encode()).hexdigest()[:20]}.parquet"


CPU_COLUMN = "_cpu_seconds"  # scorers report their CPU time a row; the writer sums and drops it


def with_cpu(table: pa.Table, cpu_seconds: float) -> pa.Table:
    share = cpu_seconds / max(1, table.num_rows)
    return table.append_column(CPU_COLUMN, pa.array([share] * table.num_rows, pa.float64()))


def write_part(batch: pa.Table, parts_dir: str, table: str) -> pa.Table:
    """Ray Data writer: check the batch against its schema, write it as one part."""
    cpu = pc.sum(batch[CPU_COLUMN]).as_py() or 0.0
    batch = batch.drop_columns([CPU_COLUMN])
    expected = (
        schemas.embedding(batch.schema.field("embedding").type.list_size) if table == "scores/embedding" else None
    )
    schemas.check(table, batch, expected)
    storage.write_parquet_atomic(batch, storage.join(parts_dir, part_name(batch["id"].to_pylist())))
    return pa.table({"rows": [batch.num_rows], "cpu_seconds": [cpu]})


def map_and_write(
    files,
    columns,
    apply,
    parts_dir: str,
    table: str,
    rows_per_part: int,
    progress,
    io_cpus: float = ACTOR_IO_CPUS,
    rows_per_block: int | None = None,
) -> float:
    """Ray Data: read the input files, `apply` the scoring maps, write parts; CPU seconds used.

    With actors, reads and writes ask for a fraction of a CPU (`io_cpus`), so an actor pool
    holding whole CPUs never starves them (on 2 CPUs that would hang the pipeline); a block
    is `rows_per_block` rows, an actor call. A plain function scorer gives them a whole CPU
    and no `rows_per_block`: then Ray Data fuses read, score and write into one task a part,
    no rows cross the object store, and the parts (at most `rows_per_part` rows) come in
    whole waves of the cluster's CPUs (the scoring map must take whole blocks too:
    `batch_size=None`).
    """
    import ray
    import ray.data

    from pipelines import fault_tolerance
    from pipelines.score.source import RowGroups

    fused = rows_per_block is None
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // io_cpus)) if fused else None
    source = RowGroups(files, columns, rows_per_block or rows_per_part, workers=slots)
    retries = fault_tolerance.task_options()  # a part lost with its node is scored and written again
    dataset = ray.data.read_datasource(
        source, num_cpus=io_cpus, override_num_blocks=source.num_tasks(), ray_remote_args=retries
    )
    dataset = apply(dataset)
    if not fused:  # the bar follows actor calls as they finish, not parts as they are written
        dataset = dataset.map_batches(
            count_done, batch_size=None, batch_format="pyarrow", num_cpus=0, fn_kwargs={"counter": progress.counter()}
        )
    dataset = dataset.map_batches(
        write_part,
        # fused (a block a part): a batch size would keep Ray Data from fusing the read in
        batch_size=None if fused else rows_per_part,
        batch_format="pyarrow",
        num_cpus=io_cpus,
        fn_kwargs={"parts_dir": parts_dir, "table": table},
        **retries,
    )
    cpu = 0.0
    for row in dataset.iter_rows():
        cpu += row["cpu_seconds"]
        if fused:
            progress.advance(row["rows"])
    return cpu


def count_done(batch: pa.Table, counter) -> pa.Table:
    """Pass-through map after a scoring actor: adds the call's rows to the stage's counter."""
    counter.add.remote(batch.num_rows)
    return batch


def parquet_files(folder: str) -> list[str]:
    return [f for f in storage.list_files(folder, ".parquet") if not f.rsplit("/", 1)[-1].startswith("_")]


def count_rows(files: list[str]) -> int:
    total = 0
    for location in files:
        with storage.open_random_access(location) as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def write_pending(input_files: list[str], done_files: list[str], columns: list[str], destination: str) -> list[str]:
    """Rows of the input whose id is in no done part, as one Parquet file (or the input itself)."""
    if not done_files:
        return input_files
    connection = views.duckdb_connection(keep_order=False)
    views.relation(connection, input_files).create_view("input_rows")
    views.relation(connection, done_files).create_view("done_rows")
    projection = ", ".join(f'"{column}"' for column in columns)  # column names are ours, not user values
    reader = connection.sql(
        f"SELECT {projection} FROM input_rows WHERE id NOT IN (SELECT id FROM done_rows)"
    ).to_arrow_reader(8192)
    out = storage.ParquetAppender(destination, reader.schema)
    for batch in reader:
        out.write(pa.Table.from_batches([batch]))
    out.close()
    return [destination] if out.rows else []
