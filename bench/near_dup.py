"""Near-duplicate exactness: LSH + verification against a brute-force all-pairs Jaccard.

`python -m bench near_dup`: 16,000 random texts plus 4,000 copies with 0-5% of their words
replaced (20,000 rows; `--quick`: 2,600), clustered by the scorer's own steps in one process
(signing, DuckDB buckets, verification, components), compared with every pair whose exact
Jaccard reaches the threshold. Prints recall, precision and the seconds of each side.
The 100,000-row comparison with datasketch is bench/near_dup_datasketch.py; 1,000,000 rows, bench/near_dup_scale.py.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.score import near_dup, near_dup_minhash
from pipelines.score.near_dup_settings import NearDupScorer
from tests.near_dup_planted import planted_texts, rendered_hashes, rendered_shingles, true_pairs, write_pool


def main(quick: bool = False) -> None:
    distinct, copies = (2000, 600) if quick else (16_000, 4000)
    texts = planted_texts(distinct, copies, seed=3)
    chosen = NearDupScorer()
    settings = near_dup.task_settings(chosen)
    bands, rows = settings["bands"], settings["rows"]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        ids = write_pool(texts, work / "pool.parquet")
        (work / "bands").mkdir()
        started = time.perf_counter()
        rendered = [f"User: {t}" for t in texts]
        pq.write_table(near_dup_minhash.band_rows(ids, rendered, settings), work / "bands" / "part-0.parquet")
        pairs = near_dup.candidate_pairs(str(work / "bands"), settings["max_bucket"])
        verified = near_dup.verified_pairs(pairs, rendered_hashes(ids, texts, 5), 0.8)
        lsh_seconds = time.perf_counter() - started
    started = time.perf_counter()
    truth = true_pairs(rendered_shingles(texts, chosen.shingle), chosen.threshold)
    brute_seconds = time.perf_counter() - started
    position = {row_id: n for n, row_id in enumerate(ids)}
    left, right = verified["left_id"].to_pylist(), verified["right_id"].to_pylist()
    found = {(position[a], position[b]) for a, b in zip(left, right, strict=True)}
    recall, precision = len(found & truth) / max(1, len(truth)), len(found & truth) / max(1, len(found))
    print(
        f"near_dup: {len(texts):,} rows, bands x rows {bands} x {rows}: {len(truth):,} true pairs >= "
        f"{chosen.threshold}, {pairs.num_rows:,} candidates, {len(found):,} verified; "
        f"recall {recall:.4f}, precision {precision:.4f}; "
        f"LSH + verification {lsh_seconds:.1f} s, brute force {brute_seconds:.1f} s (one process)"
    )


if __name__ == "__main__":
    main()
