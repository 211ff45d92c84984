"""What the duplicate scorers (near_dup, semantic_dup) share once their pairs are found:
connected components, each cluster's kept row, and the table of one row per pool row.

Both tables have the same shape (id, cluster = the kept row's id, cluster_size, keep), so
`dedupe: near | semantic` on a selection reads either the same way.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

import schemas
from pipelines import runs, storage, views
from pipelines.score import parts


def component_labels(size: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The connected-component label of each of `size` nodes joined by the (left, right) edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(left), np.int8), (left, right)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return labels


def representatives(ids: list[str], labels: np.ndarray, scores: dict[str, float] | None, order: str) -> list[str]:
    """Each row's cluster representative: the lowest id, or the best score (ties and rows
    without a score: the lowest id; with a score beats without). Within a label, `ids` must
    come in ascending order."""
    best: dict[int, tuple] = {}
    sign = -1.0 if order == "max" else 1.0
    for row_id, label in zip(ids, labels.tolist(), strict=True):  # ascending within a label: first seen is lowest
        value = None if scores is None else scores.get(row_id)
        rank = (0, sign * value) if value is not None and not np.isnan(value) else (1, 0.0)
        if label not in best or rank < best[label][0]:
            best[label] = (rank, row_id)
    return [best[label][1] for label in labels.tolist()]


def keep_files(run_dir: str, settings, scorer: str) -> list[str]:
    """keep: best: the files of the table `keep_by` names (none for the lowest-id rule)."""
    if settings.keep != "best":
        return []
    table = settings.keep_by.split(".")[0]
    files = views.table_files(run_dir).get(f"scores_{table}")
    if not files:
        raise RuntimeError(f"score.{scorer}.keep_by: scores/{table} is not in {run_dir}; add its scorer")
    return files


def keep_scores(files: list[str], keep_by: str, ids: list[str]) -> dict[str, float]:
    """id -> the `keep_by` column's value, for the wanted ids that have one."""
    column = keep_by.split(".", 1)[1]
    connection = views.duckdb_connection(keep_order=False)
    views.relation(connection, files).create_view("keep_scores")
    connection.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
    # the column name was checked against schemas/ by the settings: an identifier, not a value
    sql = f'SELECT s.id, s."{column}"::DOUBLE FROM keep_scores s SEMI JOIN wanted w ON w.id = s.id'
    rows = connection.execute(sql).fetchall()
    return {row_id: value for row_id, value in rows if value is not None}


def identity_hash(run_dir: str, table: str) -> str | None:
    """A finished table's identity, for a scorer that must start over when that table changes."""
    manifest = runs.read_manifest(run_dir, table)
    return None if manifest is None else runs.stable_hash(manifest["identity"])


def result_table(ids: list[str], chosen: list[str], sizes) -> pa.Table:
    """The clustered rows (those with a duplicate), as saved in a scorer's work folder."""
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "cluster": pa.array(chosen, pa.string()),
            "cluster_size": pa.array(sizes, pa.int32()),
        }
    )


def write_parts(files: list[str], result: str, parts_dir: str, table: str, rows_per_part: int) -> float:
    """A row of `table` for every row of `files`: the saved `result` for clustered rows, a
    cluster of one for the rest; in parts of `rows_per_part`. Returns CPU seconds."""
    started = time.process_time()
    connection = views.duckdb_connection()
    views.relation(connection, files).create_view("input_rows")
    views.relation(connection, [result]).create_view("clustered")
    reader = connection.sql(
        "SELECT i.id, coalesce(c.cluster, i.id) AS cluster, coalesce(c.cluster_size, 1)::INTEGER AS cluster_size,"
        " coalesce(c.cluster, i.id) = i.id AS keep FROM input_rows i LEFT JOIN clustered c USING (id) ORDER BY i.id"
    ).to_arrow_reader(rows_per_part)
    storage.make_dirs(parts_dir)
    for batch in reader:
        written = pa.Table.from_batches([batch]).cast(schemas.SCHEMAS[table])
        schemas.check(table, written)
        storage.write_parquet_atomic(written, storage.join(parts_dir, parts.part_name(written["id"].to_pylist())))
    return time.process_time() - started
