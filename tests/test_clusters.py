"""k-means pieces without Ray: the training sample and the assignment."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipelines.score import clusters
from pipelines.score.embedding import embedding_table


def _write(tmp_path, ids, vectors, splits):
    files = []
    for n, (a, b) in enumerate(splits):
        path = tmp_path / f"part-{n}.parquet"
        pq.write_table(embedding_table(pa.array(ids[a:b]), vectors[a:b]), path)
        files.append(str(path))
    return files


def test_the_sample_does_not_depend_on_how_the_table_is_split(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:032x}" for i in rng.integers(0, 2**62, size=500)]
    vectors = rng.standard_normal((500, 8)).astype(np.float32)
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    one = clusters.training_sample(_write(tmp_path / "a", ids, vectors, [(0, 500)]), 120, seed=3)
    reordered = _write(tmp_path / "b", ids[::-1], vectors[::-1].copy(), [(0, 77), (77, 300), (300, 500)])
    assert one.shape == (120, 8) and np.array_equal(one, clusters.training_sample(reordered, 120, seed=3))
    other_seed = clusters.training_sample(_write(tmp_path / "c", ids, vectors, [(0, 500)]), 120, seed=4)
    assert not np.array_equal(one, other_seed)


def test_fit_and_assign_writes_nearest_centroids(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((4, 16)).astype(np.float32) * 5
    vectors = (centres[rng.integers(0, 4, size=400)] + rng.standard_normal((400, 16))).astype(np.float32)
    files = _write(tmp_path, [f"{i:032x}" for i in range(400)], vectors, [(0, 400)])
    settings = {"k": 4, "seed": 0, "iterations": 20, "max_points_per_centroid": 256, "rows_per_part": 150}
    result = clusters.fit_and_assign(files, str(tmp_path / "out"), settings, threads=1)
    assigned = pq.read_table(tmp_path / "out", schema=schemas.SCHEMAS["scores/clusters"])
    centroids = np.load(tmp_path / "out" / clusters.CENTROIDS)
    assert result["rows"] == assigned.num_rows == 400 and len(list((tmp_path / "out").glob("part-*"))) == 3
    for row in assigned.to_pylist():
        distances = np.linalg.norm(centroids - vectors[int(row["id"], 16)], axis=1)
        assert row["cluster"] == int(np.argmin(distances))
        assert abs(row["distance"] - distances.min()) < 1e-3
    again = clusters.fit_and_assign(files, str(tmp_path / "again"), settings, threads=1)
    assert again["rows"] == 400 and np.array_equal(np.load(tmp_path / "again" / clusters.CENTROIDS), centroids)
