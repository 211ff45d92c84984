"""Semantic duplicates (SemDeDup): hand-made embeddings with planted near-identical vectors in
and across k-means clusters, the threshold, the keep rules, blocked products against a
brute-force all-pairs cosine, the table contract; then the scorer on a real local Ray after
the embedding and clusters scorers, and a selection with `dedupe: semantic`."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines import experiment
from pipelines.score import dup_clusters, semantic_dup
from pipelines.score.embedding import embedding_table
from pipelines.score.settings import ScoreConfig
from tests.conftest import rows_config

DIM = 32


def _settings(**overrides) -> dict:
    return {"threshold": 0.95, "block_mb": 256, "keep": "lowest_id", "keep_by": None, "keep_order": "max", **overrides}


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def _at_cosine(base: np.ndarray, cosine: float, rng, *away: np.ndarray) -> np.ndarray:
    """A unit vector at exactly `cosine` to the unit vector `base`, turned away from it in a
    direction orthogonal to `away` too (so its cosine to those is set by `base` alone)."""
    basis = np.linalg.qr(np.stack([base, *away], axis=1))[0]
    other = rng.normal(size=base.shape)
    other = _unit(other - basis @ (basis.T @ other))
    return cosine * base + np.sqrt(1 - cosine**2) * other


def _planted(rng) -> tuple[list[str], list[int], np.ndarray]:
    """ids 00..09 in k-means clusters 0 and 1. Cluster 0: 01 at 0.99 to 00; 02 at 0.955 to 01
    and 0.945 to 00 (joined through 01); 03 at 0.93 to 00 and 0.92 to 01 (in at 0.9, out at
    0.95). Cluster 1: 05 a copy of 00 (a pair across clusters never counts), 07 at 0.97 to 06;
    the rest alone (random directions in 32 dimensions: cosines ~ 0 +- 0.18)."""
    base = _unit(rng.normal(size=DIM))
    near = _at_cosine(base, 0.99, rng)
    vectors = {
        "00": base,
        "01": near,
        "02": _at_cosine(near, 0.955, rng, base),
        "03": _at_cosine(base, 0.93, rng, near),
        "04": _unit(rng.normal(size=DIM)),
        "05": base.copy(),
    }
    other = _unit(rng.normal(size=DIM))
    vectors.update({"06": other, "07": _at_cosine(other, 0.97, rng)})
    vectors.update({f"{i:02d}": _unit(rng.normal(size=DIM)) for i in (8, 9)})
    ids = sorted(vectors)
    return ids, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1], np.stack([vectors[i] for i in ids]).astype(np.float32)


def _score(tmp_path, ids, clusters, vectors, settings, keep_files=()) -> pa.Table:
    """find_duplicates and the parts writer on real Parquet files, as the Ray task runs them."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cluster_file, embedding_file = tmp_path / "clusters.parquet", tmp_path / "embedding.parquet"
    distance = pa.array([0.0] * len(ids), pa.float32())
    table = pa.table({"id": ids, "cluster": pa.array(clusters, pa.int32()), "distance": distance})
    pq.write_table(table.cast(schemas.SCHEMAS["scores/clusters"]), cluster_file)
    order = np.random.default_rng(0).permutation(len(ids))  # the embedding table in another order
    pq.write_table(embedding_table(pa.array([ids[i] for i in order]), vectors[order]), embedding_file)
    result = str(tmp_path / "result.parquet")
    files = [str(cluster_file)]
    semantic_dup.find_duplicates(files, [str(embedding_file)], result, settings, list(keep_files))
    dup_clusters.write_parts(files, result, str(tmp_path / "parts"), "scores/semantic_dup", 4)
    return pq.read_table(tmp_path / "parts", schema=schemas.SCHEMAS["scores/semantic_dup"])


def _by_id(table: pa.Table) -> dict[str, dict]:
    return {row["id"]: row for row in table.to_pylist()}


def test_within_cluster_pairs_at_the_threshold_lowest_id_kept(tmp_path):
    ids, clusters, vectors = _planted(np.random.default_rng(1))
    table = _score(tmp_path, ids, clusters, vectors, _settings())
    schemas.check("scores/semantic_dup", table)
    assert table.num_rows == 10 and len(table.to_batches()) >= 3  # every row once, in parts of 4
    rows = _by_id(table)
    for member in ("00", "01", "02"):  # 02 reaches 00 only through 01
        assert (rows[member]["cluster"], rows[member]["cluster_size"], rows[member]["keep"]) == (
            "00",
            3,
            member == "00",
        )
    for alone in ("03", "04", "05", "08", "09"):  # 05 copies 00 from another k-means cluster
        assert rows[alone] == {"id": alone, "cluster": alone, "cluster_size": 1, "keep": True}
    assert [rows["06"]["keep"], rows["07"]["keep"], rows["07"]["cluster"]] == [True, False, "06"]

    looser = _by_id(_score(tmp_path / "b", ids, clusters, vectors, _settings(threshold=0.9)))
    assert looser["03"]["cluster"] == "00" and looser["00"]["cluster_size"] == 4
    stricter = _by_id(_score(tmp_path / "c", ids, clusters, vectors, _settings(threshold=0.98)))
    assert stricter["01"]["cluster_size"] == 2 and stricter["02"]["cluster_size"] == 1


def test_keep_best_by_a_score_column(tmp_path):
    ids, clusters, vectors = _planted(np.random.default_rng(1))
    scores = tmp_path / "compression.parquet"
    ratios = [1.0, 5.0, float("nan"), *[9.0] * 7]  # 01 is the best of 00/01/02; 02 has no value
    ones = [1] * len(ids)
    pq.write_table(
        pa.table({"id": ids, "n_bytes": ones, "n_bytes_compressed": ones, "compression_ratio": ratios}), scores
    )
    settings = _settings(keep="best", keep_by="compression.compression_ratio", keep_order="max")
    rows = _by_id(_score(tmp_path, ids, clusters, vectors, settings, [str(scores)]))
    assert {i: rows[i]["keep"] for i in ("00", "01", "02")} == {"00": False, "01": True, "02": False}
    assert rows["00"]["cluster"] == rows["02"]["cluster"] == "01"
    minimum = _by_id(_score(tmp_path / "b", ids, clusters, vectors, {**settings, "keep_order": "min"}, [str(scores)]))
    assert minimum["00"]["keep"] and minimum["01"]["cluster"] == "00"


def test_blocked_products_match_brute_force_components():
    """Many small blocks (block_mb ~ 20 rows) find the components the whole n x n matrix finds."""
    rng = np.random.default_rng(7)
    originals = rng.normal(size=(400, DIM))
    copies = originals[rng.integers(0, 400, 200)] + rng.normal(scale=0.08, size=(200, DIM))
    vectors = np.concatenate([originals, copies])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    block_mb = 20 * 4 * len(vectors) / 2**20
    lowest = semantic_dup.linked_rows(vectors, 0.95, block_mb)
    assert len(set(lowest.tolist())) < len(vectors) - 100  # the planted copies are there
    assert lowest.tolist() == _brute_force_lowest(vectors, 0.95)


def _brute_force_lowest(vectors: np.ndarray, threshold: float) -> list[int]:
    left, right = np.nonzero(np.triu(vectors @ vectors.T >= threshold, k=1))
    labels = dup_clusters.component_labels(len(vectors), left, right)
    first = {label: index for index, label in reversed(list(enumerate(labels.tolist())))}
    return [first[label] for label in labels.tolist()]


def test_a_block_of_duplicates_is_folded_within_the_block_memory():
    """Two groups of 1,000 near-identical rows and 200 others, 1 MB blocks: folded in runs of
    rows, the links stay within the block's memory (measured: 1.5 MB peak; 6.6 MB unfolded)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    groups = [np.tile(rng.normal(size=DIM), (1000, 1)) + rng.normal(scale=0.01, size=(1000, DIM)) for _ in range(2)]
    vectors = np.concatenate([*groups, rng.normal(size=(200, DIM))])[rng.permutation(2200)]
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    semantic_dup.linked_rows(vectors[:50], 0.95, 1.0)  # scipy's import outside the measurement
    tracemalloc.start()
    try:
        lowest = semantic_dup.linked_rows(vectors, 0.95, 1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lowest.tolist() == _brute_force_lowest(vectors, 0.95)
    assert len(set(lowest.tolist())) < 300  # the two groups are two components
    assert peak < 3 * 2**20  # the block (1 MB), its mask and a run of links


def test_config_names_the_scorers_semantic_dup_needs():
    assert ScoreConfig(embedding={}, clusters={}, semantic_dup={}).semantic_dup.threshold == 0.95
    with pytest.raises(ValueError, match="add `clusters: {}` under score:"):
        ScoreConfig(embedding={}, semantic_dup={})
    with pytest.raises(ValueError, match="keep_by"):
        ScoreConfig(embedding={}, clusters={}, semantic_dup={"keep": "best"})


# MiniLM cosines of these prompts (measured): spider 0.976 / 0.971 / 0.95, France 0.988, the rest < 0.45
PROMPTS = [
    "How many legs does a spider have?",
    "How many legs does a spider have in total?",
    "How many legs do spiders have?",
    "What is the capital city of France?",
    "Which city is the capital of France?",
    "Name three primary colours.",
    "Write a short poem about the sea.",
    "Explain how photosynthesis works.",
    "Solve 12 times 7.",
]


@pytest.mark.ray
def test_scorer_on_ray_then_a_semantic_selection(ray_local, tmp_path):
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "ok"}]} for p in PROMPTS]
    config = rows_config(
        tmp_path,
        "semantic-test",
        rows,
        score={
            "embedding": {"text": "prompt", "device": "cpu"},
            "clusters": {"k": 2, "max_points_per_centroid": 8},
            "semantic_dup": {"threshold": 0.96, "rows_per_part": 4},
        },
        select={
            "semantic": {"method": "random", "budget": 100, "dedupe": "semantic"},
            "near": {"method": "random", "budget": 100},  # dedupe: near, and no scores/near_dup: nothing skipped
        },
    )
    manifests = experiment.run(config, only=["ingest", "score", "select"])
    run_dir = config.run_dir
    pool = pq.read_table(f"{run_dir}/pool", columns=["id", "messages"]).to_pylist()
    id_of = {row["messages"][0]["content"]: row["id"] for row in pool}
    table = pq.read_table(f"{run_dir}/scores/semantic_dup")
    schemas.check("scores/semantic_dup", table.cast(schemas.SCHEMAS["scores/semantic_dup"]))
    found = _by_id(table)
    assert sorted(found) == sorted(id_of.values())  # every pool row once
    spider, france = [id_of[p] for p in PROMPTS[:3]], [id_of[p] for p in PROMPTS[3:5]]
    for group in (spider, france):
        assert {found[i]["cluster"] for i in group} == {min(group)}
        assert {found[i]["cluster_size"] for i in group} == {len(group)}
    dropped = {i for i, row in found.items() if not row["keep"]}
    assert dropped == (set(spider) | set(france)) - {min(spider), min(france)}

    chosen = set(pq.read_table(f"{run_dir}/selections/semantic")["id"].to_pylist())
    assert chosen == set(id_of.values()) - dropped
    clean = manifests["selections/semantic"]["clean"]["dedupe"]
    assert clean == {"setting": "semantic", "table": "scores/semantic_dup", "removed": 3}
    assert len(pq.read_table(f"{run_dir}/selections/near")) == len(PROMPTS)
