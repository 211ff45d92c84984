"""Semantic duplicates: SemDeDup (Abbas et al. 2023) over the embeddings Winnow already has.

1. DuckDB joins scores/clusters to scores/embedding and streams the rows ordered by k-means
   cluster, then id (sorting spills to disk past DuckDB's memory limit): one cluster's
   vectors at a time become a numpy matrix.
2. Within a cluster, rows whose L2-normalised embeddings have cosine >= `threshold` are
   linked. The cosines come from blocked matrix products (a block of rows against the rows
   from the block's first on), each block at most `block_mb` of float32, so a big cluster
   never asks for its whole n x n matrix; rows of different k-means clusters are never compared.
3. After each block the links so far are folded into connected components (scipy), so a
   cluster's memory is its vectors, one block and its links, never all its pairs; a block
   of many duplicates is folded in runs of rows, so its links stay near `block_mb` too.
4. The kept row of a component: its lowest id, or (`keep: best`) the best by a score column,
   by the rule near_dup uses (pipelines/score/dup_clusters.py).
5. Every row of scores/clusters (every pool row) gets a row of scores/semantic_dup.

The result is saved in the work folder before parts are written, so a run killed while
writing parts writes the rest from it; the clusters' identity is in the scorer's identity,
so re-clustered or grown embeddings are compared again as a whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from pipelines import storage, views
from pipelines.score import dup_clusters, parts
from pipelines.score.runner import Scorer

COLUMNS = ["id", "cluster"]  # of scores/clusters, the scorer's input
RESULT = "semantic_dup_result.parquet"  # in the work folder: (id, cluster, cluster_size) of duplicated rows
STREAM_ROWS = 8192  # rows a batch from DuckDB's ordered join


def scorer(config, settings) -> Scorer:
    task_settings = {
        "threshold": settings.threshold,
        "block_mb": settings.block_mb,
        "keep": settings.keep,
        "keep_by": settings.keep_by,
        "keep_order": settings.keep_order,
    }
    identity = {"scorer": "semantic_dup", **task_settings}
    # new clusters or embeddings (a grown pool) are compared again as a whole: nothing is reused
    identity["clusters"] = dup_clusters.identity_hash(config.run_dir, "scores/clusters")
    if settings.keep == "best":
        keep_table = f"scores/{settings.keep_by.split('.')[0]}"
        identity["keep_by_table"] = dup_clusters.identity_hash(config.run_dir, keep_table)

    def score(files, parts_dir, progress):
        import ray

        started = time.process_time()
        result = storage.join(parts_dir.rsplit("/", 1)[0], RESULT)
        cpu = 0.0
        if not storage.exists(result):
            vectors = _embedding_files(config.run_dir)
            keep_files = dup_clusters.keep_files(config.run_dir, settings, "semantic_dup")
            task = ray.remote(num_cpus=1)(find_duplicates)
            cpu += ray.get(task.remote(files, vectors, result, task_settings, keep_files))
        cpu += dup_clusters.write_parts(files, result, parts_dir, "scores/semantic_dup", settings.rows_per_part)
        progress.advance(parts.count_rows(files))
        return cpu + time.process_time() - started

    return Scorer("semantic_dup", identity, "scores/clusters", COLUMNS, score)


def _embedding_files(run_dir: str) -> list[str]:
    files = views.table_files(run_dir).get("scores_embedding")
    if not files:
        raise RuntimeError(f"score.semantic_dup: scores/embedding is not in {run_dir}; add the embedding scorer")
    return files


def cluster_members(cluster_files: list[str], embedding_files: list[str]) -> Iterator[tuple[list[str], np.ndarray]]:
    """Step 1: (ids ascending, their vectors as a float32 matrix), one k-means cluster at a time."""
    connection = views.duckdb_connection()
    views.relation(connection, cluster_files).create_view("members")
    views.relation(connection, embedding_files).create_view("vectors")
    reader = connection.sql(
        "SELECT m.cluster, m.id, v.embedding FROM members m JOIN vectors v USING (id) ORDER BY m.cluster, m.id"
    ).to_arrow_reader(STREAM_ROWS)
    current, pieces = None, []
    for batch in reader:
        labels = batch.column("cluster").to_numpy(zero_copy_only=False)
        # where the cluster changes inside the batch: each run of one cluster is a piece
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        for start, end in zip(starts, np.r_[starts[1:], len(labels)], strict=True):
            if labels[start] != current and pieces:
                yield _joined(pieces)
                pieces = []
            current = labels[start]
            pieces.append(batch.slice(start, end - start))
    if pieces:
        yield _joined(pieces)


def _joined(pieces: list[pa.RecordBatch]) -> tuple[list[str], np.ndarray]:
    table = pa.Table.from_batches(pieces).combine_chunks()
    flat = table.column("embedding").chunk(0).flatten().to_numpy(zero_copy_only=False)
    vectors = flat.astype(np.float32, copy=False).reshape(table.num_rows, -1)
    # cosine is a dot product of unit vectors; the embedding scorer writes them so, a
    # hand-made or foreign table may not
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return table.column("id").to_pylist(), vectors / np.maximum(norms, np.float32(1e-12))


def linked_rows(vectors: np.ndarray, threshold: float, block_mb: float) -> np.ndarray:
    """Steps 2-3: for each row of one k-means cluster, the index of the lowest row of its
    component (itself when no other row reaches `threshold`)."""
    size = len(vectors)
    lowest = np.arange(size)
    block_rows = max(1, int(block_mb * 2**20) // (4 * max(size, 1)))
    # a link costs ~80 bytes on its way to the components (index pairs, their copies, scipy's
    # graph), 20 times its 4-byte cosine: a block of duplicates is folded in runs of rows
    max_links = max(size, int(block_mb * 2**20) // 80)
    for start in range(0, size, block_rows):
        hits = vectors[start : start + block_rows] @ vectors[start:].T >= threshold
        ends = np.cumsum(hits.sum(axis=1))
        first = 0
        while first < len(hits):
            done = ends[first - 1] if first else 0
            last = max(first + 1, int(np.searchsorted(ends, done + max_links, side="right")))
            lowest = _fold(lowest, hits[first:last], start + first, start)
            first = last
    return lowest


def _fold(lowest: np.ndarray, hits: np.ndarray, row_start: int, column_start: int) -> np.ndarray:
    """`lowest` with the links of `hits` (rows from row_start, columns from column_start) joined in."""
    rows, columns = np.nonzero(hits)
    rows, columns = rows + row_start, columns + column_start
    ahead = rows < columns  # each pair once, and no row with itself
    if not ahead.any():
        return lowest
    size = len(lowest)
    # the links so far stay in as (row, its component's lowest row): the block's pairs are then dropped
    labels = dup_clusters.component_labels(
        size, np.concatenate([rows[ahead], np.arange(size)]), np.concatenate([columns[ahead], lowest])
    )
    first = np.full(labels.max() + 1, size)
    np.minimum.at(first, labels, np.arange(size))
    return first[labels]


def find_duplicates(
    cluster_files: list[str], embedding_files: list[str], result: str, settings: dict, keep_files: list[str]
) -> float:
    """Steps 1-4 as one Ray task; saves the rows with a duplicate as `result`; its CPU seconds."""
    started = time.process_time()
    ids: list[str] = []
    groups: list[np.ndarray] = []
    offset = 0
    for cluster_ids, vectors in cluster_members(cluster_files, embedding_files):
        lowest = linked_rows(vectors, settings["threshold"], settings["block_mb"])
        duplicated = np.flatnonzero(np.bincount(lowest, minlength=len(lowest))[lowest] > 1)
        ids.extend(cluster_ids[i] for i in duplicated)  # ascending within a group: the ids are sorted
        groups.append(lowest[duplicated] + offset)
        offset += len(cluster_ids)
    _, labels = np.unique(np.concatenate(groups) if groups else np.empty(0, np.int64), return_inverse=True)
    scores = dup_clusters.keep_scores(keep_files, settings["keep_by"], ids) if keep_files else None
    chosen = dup_clusters.representatives(ids, labels, scores, settings["keep_order"])
    sizes = np.bincount(labels)[labels] if len(labels) else np.array([], np.int64)
    storage.write_parquet_atomic(dup_clusters.result_table(ids, chosen, sizes), result)
    return time.process_time() - started
