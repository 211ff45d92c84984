"""Clusters: seeded k-means (faiss) over the embedding table; cluster id and distance a row.

Training uses a sample of at most k x max_points_per_centroid rows, chosen by a seeded
hash of each id (so the sample does not depend on how the embedding table is split into
files); the centroids are saved beside the table (`_centroids.npy`). When the pool grows,
new rows are assigned to the saved centroids; a changed k, seed or embedding model refits.
Distance is Euclidean to the assigned centroid.
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipelines import storage
from pipelines.score import parts

CENTROIDS = "_centroids.npy"


def _sample_keys(ids: list[str], seed: int) -> np.ndarray:
    return np.array(
        [int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:8], "big") for i in ids], np.uint64
    )


def _batches(files: list[str], batch_rows: int = 20_000):
    for location in files:
        with storage.open_random_access(location) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=["id", "embedding"]):
                vectors = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
                yield batch.column("id"), vectors.reshape(batch.num_rows, -1).astype(np.float32, copy=False)


def training_sample(files: list[str], size: int, seed: int) -> np.ndarray:
    """The `size` rows with the smallest seeded id hashes, in that order: a streaming top-k."""
    keys, rows = np.empty(0, np.uint64), None
    for ids, vectors in _batches(files):
        keys = np.concatenate([keys, _sample_keys(ids.to_pylist(), seed)])
        rows = vectors if rows is None else np.concatenate([rows, vectors])
        if len(keys) > size:
            keep = np.argpartition(keys, size - 1)[:size]
            keys, rows = keys[keep], rows[keep]
    order = np.argsort(keys, kind="stable")
    return np.ascontiguousarray(rows[order])


def fit(sample: np.ndarray, k: int, seed: int, iterations: int) -> np.ndarray:
    import faiss

    if len(sample) < k:
        raise ValueError(f"clusters: k={k} but only {len(sample)} embedded rows")
    kmeans = faiss.Kmeans(sample.shape[1], k, niter=iterations, seed=seed, max_points_per_centroid=len(sample) // k + 1)
    kmeans.train(sample)
    return kmeans.centroids.copy()


def fit_and_assign(files: list[str], parts_dir: str, settings: dict, threads: int) -> dict:
    """Fit (unless centroids are saved) and assign every row of `files`; runs as a Ray task."""
    import faiss

    started = time.process_time()
    faiss.omp_set_num_threads(threads)
    centroids_location = storage.join(parts_dir, CENTROIDS)
    if storage.exists(centroids_location):
        with storage.open_input(centroids_location, compression=None) as stream:
            centroids = np.load(io.BytesIO(stream.read()))
    else:
        size = settings["k"] * settings["max_points_per_centroid"]
        centroids = fit(
            training_sample(files, size, settings["seed"]), settings["k"], settings["seed"], settings["iterations"]
        )
        buffer = io.BytesIO()
        np.save(buffer, centroids)
        storage.make_dirs(parts_dir)
        fs, path = storage.resolve(centroids_location)
        with fs.open_output_stream(path + ".tmp") as out:
            out.write(buffer.getvalue())
        fs.move(path + ".tmp", path)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    rows = 0
    for ids, vectors in _batches(files, settings["rows_per_part"]):
        squared, nearest = index.search(vectors, 1)
        table = pa.Table.from_arrays(
            [ids, pa.array(nearest[:, 0], pa.int32()), pa.array(np.sqrt(np.maximum(squared[:, 0], 0)), pa.float32())],
            schema=schemas.SCHEMAS["scores/clusters"],
        )
        storage.write_parquet_atomic(table, storage.join(parts_dir, parts.part_name(ids.to_pylist())))
        rows += table.num_rows
    return {"rows": rows, "cpu_seconds": time.process_time() - started}
