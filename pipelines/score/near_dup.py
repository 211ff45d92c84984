"""Near-duplicates: MinHash-LSH over word shingles, verified by the true Jaccard, clustered.

1. Ray Data over the pool: each row's normalised text, word shingles, a MinHash signature
   (rensa), one key a band -> (band, key, id) Parquet in the scorer's work folder.
2. DuckDB groups the band rows by (band, key) (spilling to disk past its memory limit):
   rows sharing a bucket are candidate pairs. A bucket above `max_bucket` rows pairs each
   member with its lowest id only, so one boilerplate band cannot ask for n^2 pairs.
3. Each candidate pair's true Jaccard over the shingle sets (recomputed for the rows in a
   pair only, as 64-bit hashes); pairs below the threshold (LSH false positives) are dropped here.
4. Connected components of the verified pairs (scipy) are the clusters.
5. The kept row of a cluster: its lowest id, or (`keep: best`) the best row by a score column.
6. Every pool row gets a row of scores/near_dup: a row in no pair is its own cluster of one.

The global result is saved in the work folder before parts are written, so a run killed
while writing parts writes the rest from it; the pool's identity is in the scorer's identity,
so a grown pool is clustered again as a whole (a new row may duplicate an old one).
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import storage, views
from pipelines.score import dup_clusters, near_dup_minhash, parts, render
from pipelines.score.runner import Scorer

COLUMNS = ["id", "messages"]
RESULT = "near_dup_result.parquet"  # in the work folder: (id, cluster, cluster_size) of clustered rows


def task_settings(settings) -> dict:
    """What the scorer's tasks read from a `score.near_dup` block, bands x rows chosen."""
    bands, rows = settings.bands_and_rows()
    return {
        "threshold": settings.threshold,
        "shingle": settings.shingle,
        "bands": bands,
        "rows": rows,
        "seed": settings.seed,
        "text": settings.text,
        "max_bucket": settings.max_bucket,
        "keep": settings.keep,
        "keep_by": settings.keep_by,
        "keep_order": settings.keep_order,
        "rows_per_part": settings.rows_per_part,
    }


def scorer(config, settings) -> Scorer:
    chosen = task_settings(settings)
    identity = {"scorer": "near_dup", **{k: v for k, v in chosen.items() if k != "rows_per_part"}}
    identity["pool"] = dup_clusters.identity_hash(config.run_dir, "pool")  # a grown pool is clustered again, whole
    if settings.keep == "best":
        keep_table = f"scores/{settings.keep_by.split('.')[0]}"
        identity["keep_by_table"] = dup_clusters.identity_hash(config.run_dir, keep_table)

    def score(files, parts_dir, progress):
        import ray

        work = parts_dir.rsplit("/", 1)[0]
        started = time.process_time()
        cpu = 0.0
        if not storage.exists(storage.join(work, RESULT)):
            bands = storage.join(work, "bands")
            storage.remove(bands, within=config.run_dir)  # a killed run's blocks may have been cut otherwise
            cpu += write_band_rows(files, bands, chosen)
            task = ray.remote(num_cpus=1)(cluster_rows)
            keep_files = dup_clusters.keep_files(config.run_dir, settings, "near_dup")
            cpu += ray.get(task.remote(files, work, chosen, keep_files))
        cpu += write_parts(files, work, parts_dir, chosen)
        progress.advance(parts.count_rows(files))
        return cpu + time.process_time() - started

    return Scorer("near_dup", identity, "pool", COLUMNS, score)


def sign_block(batch: pa.Table, bands_dir: str, settings: dict) -> pa.Table:
    """Ray Data map: a block of pool rows -> its band rows, written as one Parquet file."""
    started = time.process_time()
    ids = batch.column("id").to_pylist()
    texts = render.render_column(batch.column("messages"), settings["text"]).to_pylist()
    table = near_dup_minhash.band_rows(ids, texts, settings)
    storage.write_parquet_atomic(table, storage.join(bands_dir, parts.part_name(ids)))
    return pa.table({"rows": [len(ids)], "cpu_seconds": [time.process_time() - started]})


def write_band_rows(files: list[str], bands_dir: str, settings: dict) -> float:
    """Step 1 on Ray Data, a read, sign and write fused into one task a block; CPU seconds."""
    import ray
    import ray.data

    from pipelines import fault_tolerance
    from pipelines.score.source import RowGroups

    slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
    source = RowGroups(files, COLUMNS, settings["rows_per_part"], workers=slots)
    retries = fault_tolerance.task_options()
    dataset = ray.data.read_datasource(source, override_num_blocks=source.num_tasks(), ray_remote_args=retries)
    dataset = dataset.map_batches(
        sign_block,
        batch_size=None,  # whole read blocks, so Ray Data fuses the read in
        batch_format="pyarrow",
        fn_kwargs={"bands_dir": bands_dir, "settings": settings},
        **retries,
    )
    return sum(row["cpu_seconds"] for row in dataset.iter_rows())


_PAIRS_SQL = """
WITH buckets AS (
    SELECT band, key, count(*) AS size, min(id) AS lowest FROM bands GROUP BY band, key HAVING count(*) > 1
), members AS (
    SELECT b.band, b.key, b.id, k.size, k.lowest FROM bands b JOIN buckets k USING (band, key)
)
SELECT DISTINCT a.id AS left_id, c.id AS right_id
FROM members a JOIN members c ON a.band = c.band AND a.key = c.key AND a.id < c.id
WHERE a.size <= $max_bucket OR a.id = a.lowest
"""


def candidate_pairs(bands_dir: str, max_bucket: int) -> pa.Table:
    """Step 2: distinct (left_id, right_id) pairs sharing a band bucket, left_id < right_id."""
    connection = views.duckdb_connection(keep_order=False)
    views.relation(connection, parts.parquet_files(bands_dir)).create_view("bands")
    return connection.sql(_PAIRS_SQL, params={"max_bucket": max_bucket}).to_arrow_table()


def verified_pairs(pairs: pa.Table, shingle_sets: dict[str, np.ndarray], threshold: float) -> pa.Table:
    """Step 3: the candidate pairs whose true Jaccard reaches the threshold, with it;
    `shingle_sets`: id -> near_dup_minhash.shingle_hashes of its text."""
    lefts, rights = pairs.column("left_id").to_pylist(), pairs.column("right_id").to_pylist()
    similarity = np.array(
        [near_dup_minhash.jaccard(shingle_sets[a], shingle_sets[b]) for a, b in zip(lefts, rights, strict=True)],
        dtype=np.float64,
    )
    mask = pa.array(similarity >= threshold) if len(similarity) else pa.array([], pa.bool_())
    return pairs.append_column("jaccard", pa.array(similarity, pa.float64())).filter(mask)


def components(pairs: pa.Table) -> tuple[list[str], np.ndarray]:
    """Step 4: (ids in a verified pair, sorted; the component label of each)."""
    ids = sorted(set(pairs.column("left_id").to_pylist()) | set(pairs.column("right_id").to_pylist()))
    position = {row_id: index for index, row_id in enumerate(ids)}
    left = np.array([position[i] for i in pairs.column("left_id").to_pylist()], dtype=np.int64)
    right = np.array([position[i] for i in pairs.column("right_id").to_pylist()], dtype=np.int64)
    return ids, dup_clusters.component_labels(len(ids), left, right)


def cluster_rows(files: list[str], work: str, settings: dict, keep_files: list[str]) -> float:
    """Steps 2-5 as one Ray task; saves the clustered rows as RESULT; its CPU seconds."""
    started = time.process_time()
    pairs = candidate_pairs(storage.join(work, "bands"), settings["max_bucket"])
    involved = set(pairs.column("left_id").to_pylist()) | set(pairs.column("right_id").to_pylist())
    words: dict[str, int] = {}
    shingle_sets = {
        row_id: near_dup_minhash.shingle_hashes(text, settings["shingle"], words)
        for row_id, text in _texts(files, involved, settings["text"])
    }
    del words
    verified = verified_pairs(pairs, shingle_sets, settings["threshold"])
    ids, labels = components(verified)
    scores = dup_clusters.keep_scores(keep_files, settings["keep_by"], ids) if keep_files else None
    chosen = dup_clusters.representatives(ids, labels, scores, settings["keep_order"])
    sizes = np.bincount(labels)[labels] if len(labels) else np.array([], np.int64)
    result = dup_clusters.result_table(ids, chosen, sizes)
    storage.write_parquet_atomic(result, storage.join(work, RESULT))
    return time.process_time() - started


def _texts(files: list[str], wanted: set[str], mode: str):
    """(id, text) of the rows of `files` whose id is wanted, streamed a batch at a time."""
    wanted_ids = pa.array(sorted(wanted), pa.string())
    for location in files:
        with storage.open_random_access(location) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=8192, columns=COLUMNS):
                table = pa.Table.from_batches([batch])
                table = table.filter(pc.is_in(table.column("id"), wanted_ids))
                if table.num_rows:
                    texts = render.render_column(table.column("messages"), mode).to_pylist()
                    yield from zip(table.column("id").to_pylist(), texts, strict=True)


def write_parts(files: list[str], work: str, parts_dir: str, settings: dict) -> float:
    """Step 6: a row of scores/near_dup for every row of `files`, in parts of `rows_per_part`."""
    result = storage.join(work, RESULT)
    return dup_clusters.write_parts(files, result, parts_dir, "scores/near_dup", settings["rows_per_part"])
