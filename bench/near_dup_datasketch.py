"""Near-duplicates side by side with datasketch's own MinHash-LSH, on the same rows.

`python -m bench near_dup_datasketch`: 80,000 distinct random texts plus 20,000 copies with
0-5% of their words replaced (100,000 rows; `--quick`: 10,000), one process each side, the
same word 5-gram shingles of the same rendered text:
- Winnow: the scorer's own steps (rensa signatures and band keys, DuckDB buckets, true-Jaccard
  verification, connected components);
- datasketch 2.0.0: `MinHash.bulk` signatures, `MinHashLSH` at the same threshold and the same
  16 x 8 bands (its weights set to ours), every row inserted then queried; its clusters are
  the connected components of what the LSH returns (how it is used for dedup: no
  verification), and again after the same verification, to tell the hashing from the checking.
Every side is scored against the brute-force all-pairs Jaccard (exact, a sparse product);
the clusters are compared row by row (a row agrees when its cluster holds the same rows).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import run_parts
from pipelines.score import dup_clusters, near_dup, near_dup_minhash
from pipelines.score.near_dup_settings import NearDupScorer
from tests.near_dup_planted import planted_texts, rendered_hashes


def exact_pairs(hashes: list[np.ndarray], threshold: float) -> set[tuple[int, int]]:
    """Every pair (i < j) at or above the threshold, from the rows' distinct shingle hashes."""
    from scipy.sparse import csr_matrix, triu

    columns = np.unique(np.concatenate(hashes), return_inverse=True)[1]
    rows = np.repeat(np.arange(len(hashes)), [len(h) for h in hashes])
    incidence = csr_matrix((np.ones(len(rows), np.int32), (rows, columns)), shape=(len(hashes), columns.max() + 1))
    shared = triu(incidence @ incidence.T, k=1).tocoo()
    sizes = np.array([len(h) for h in hashes])
    keep = shared.data / (sizes[shared.row] + sizes[shared.col] - shared.data) >= threshold
    return set(zip(shared.row[keep].tolist(), shared.col[keep].tolist(), strict=True))


def winnow_pairs(ids: list[str], rendered: list[str], settings: dict) -> tuple[set, float]:
    """Verified pairs (positions) by the scorer's steps in this process; seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bands").mkdir()
        pq.write_table(near_dup_minhash.band_rows(ids, rendered, settings), Path(folder) / "bands" / "part.parquet")
        candidates = near_dup.candidate_pairs(str(Path(folder) / "bands"), settings["max_bucket"])
    words: dict[str, int] = {}
    hashes = {
        i: near_dup_minhash.shingle_hashes(t, settings["shingle"], words) for i, t in zip(ids, rendered, strict=True)
    }
    verified = near_dup.verified_pairs(candidates, hashes, settings["threshold"])
    seconds = time.perf_counter() - started
    position = {row_id: n for n, row_id in enumerate(ids)}
    pairs = zip(verified["left_id"].to_pylist(), verified["right_id"].to_pylist(), strict=True)
    return {(position[a], position[b]) for a, b in pairs}, seconds


def datasketch_pairs(rendered: list[str], settings: dict) -> tuple[set, float, float]:
    """LSH candidate pairs (positions) from datasketch; (pairs, signing seconds, LSH seconds)."""
    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    shingle_lists = [[s.encode() for s in near_dup_minhash.shingles(t, settings["shingle"])] for t in rendered]
    signatures = MinHash.bulk(shingle_lists, num_perm=settings["bands"] * settings["rows"], seed=settings["seed"])
    signed = time.perf_counter()
    lsh = MinHashLSH(threshold=settings["threshold"], params=(settings["bands"], settings["rows"]))
    with lsh.insertion_session() as session:
        for position, signature in enumerate(signatures):
            session.insert(position, signature)
    pairs = {(i, j) for i, signature in enumerate(signatures) for j in lsh.query(signature) if i < j}
    return pairs, signed - started, time.perf_counter() - signed


def verify(pairs: set, hashes: list[np.ndarray], threshold: float) -> set:
    return {(i, j) for i, j in pairs if near_dup_minhash.jaccard(hashes[i], hashes[j]) >= threshold}


def clusters(pairs: set, rows: int) -> np.ndarray:
    """Connected-component label of every row (singletons included)."""
    left = np.array([i for i, _ in pairs], np.int64)
    right = np.array([j for _, j in pairs], np.int64)
    return dup_clusters.component_labels(rows, left, right)


def same_clusters(labels_a: np.ndarray, labels_b: np.ndarray) -> int:
    """Rows whose cluster holds the same rows under both labelings."""
    pairs = pa.table({"a": labels_a, "b": labels_b})
    joint = pairs.group_by(["a", "b"]).aggregate([("a", "count")]).rename_columns(["a", "b", "n"])
    size_a = np.bincount(labels_a)[joint["a"].to_numpy()]
    size_b = np.bincount(labels_b)[joint["b"].to_numpy()]
    n = joint["n"].to_numpy()
    return int(n[(n == size_a) & (n == size_b)].sum())


def compare(rows: int) -> dict:
    texts = planted_texts(rows * 4 // 5, rows // 5, seed=5)
    ids = [f"{i:08d}" for i in range(len(texts))]
    rendered = [f"User: {t}" for t in texts]  # the scorer's rendering of a one-turn pool row
    settings = near_dup.task_settings(NearDupScorer())
    hashes_by_id = rendered_hashes(ids, texts, settings["shingle"])
    hashes = [hashes_by_id[i] for i in ids]
    truth = exact_pairs(hashes, settings["threshold"])
    ours, our_seconds = winnow_pairs(ids, rendered, settings)
    theirs, sign_seconds, lsh_seconds = datasketch_pairs(rendered, settings)
    theirs_verified = verify(theirs, hashes, settings["threshold"])
    labels = {name: clusters(p, len(ids)) for name, p in [("winnow", ours), ("datasketch", theirs), ("truth", truth)]}
    labels["datasketch_verified"] = clusters(theirs_verified, len(ids))
    print(f"  {len(ids):,} rows, {len(truth):,} exact pairs at >= {settings['threshold']} (brute force)")
    result = {"rows": len(ids), "true_pairs": len(truth), "bands_rows": [settings["bands"], settings["rows"]]}
    for name, found in [("winnow", ours), ("datasketch", theirs), ("datasketch_verified", theirs_verified)]:
        hit = len(found & truth)
        result[name] = {
            "pairs": len(found),
            "recall": hit / max(1, len(truth)),
            "precision": hit / max(1, len(found)),
            "rows_same_cluster_as_winnow": same_clusters(labels[name], labels["winnow"]),
            "rows_same_cluster_as_truth": same_clusters(labels[name], labels["truth"]),
        }
    result["winnow"]["seconds"] = our_seconds
    result["datasketch"].update(seconds=sign_seconds + lsh_seconds, sign_seconds=sign_seconds, lsh_seconds=lsh_seconds)
    for name in ("winnow", "datasketch", "datasketch_verified"):
        side = result[name]
        extra = f", {len(ids) / side['seconds']:,.0f} rows/s ({side['seconds']:.1f} s)" if "seconds" in side else ""
        print(
            f"  {name}: {side['pairs']:,} pairs, recall {side['recall']:.4f}, precision {side['precision']:.4f}; "
            f"rows in the same cluster as winnow's {side['rows_same_cluster_as_winnow']:,}/{len(ids):,}, "
            f"as the exact clusters' {side['rows_same_cluster_as_truth']:,}{extra}"
        )
    print(f"  datasketch: signing {sign_seconds:.1f} s, LSH insert + query {lsh_seconds:.1f} s")
    return result


def main(quick: bool = False) -> None:
    rows = 10_000 if quick else 100_000
    run_parts("near_dup_datasketch", {"compare": compare}, ("compare",), rows)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
