"""A pool with planted near-duplicates, and the brute-force all-pairs Jaccard to check against
(shared by tests/test_near_dup.py and bench/near_dup.py)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.score import near_dup_minhash

EDIT_RATES = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)  # share of a copy's words replaced: J ~ 1, .95, .9, .82, .74, .6


def planted_texts(distinct: int, copies: int, seed: int = 0) -> list[str]:
    """`distinct` random texts, then `copies` edited copies of randomly chosen ones."""
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(20_000)]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(30, 150))) for _ in range(distinct)]
    for n in range(copies):
        words = texts[rng.randrange(distinct)].split()
        rate = EDIT_RATES[n % len(EDIT_RATES)]
        for position in rng.sample(range(len(words)), k=max(1, round(rate * len(words)))):
            words[position] = rng.choice(vocabulary)
        texts.append(" ".join(words))
    return texts


def write_pool(texts: list[str], path) -> list[str]:
    """A pool-shaped Parquet file (id, messages) of the texts as user turns; the ids."""
    ids = [f"{i:08d}" for i in range(len(texts))]
    messages = [[{"role": "user", "content": t}] for t in texts]
    pq.write_table(pa.table({"id": ids, "messages": messages}), path)
    return ids


def true_pairs(shingle_sets: list[set[str]], threshold: float) -> set[tuple[int, int]]:
    """Every pair (i < j) whose exact Jaccard is at least the threshold: all pairs at once, as a
    sparse product of the row-by-shingle incidence matrix (exact integer intersections)."""
    from scipy.sparse import csr_matrix, triu

    index: dict[str, int] = {}
    rows, columns = [], []
    for row, shingles in enumerate(shingle_sets):
        for shingle in shingles:
            rows.append(row)
            columns.append(index.setdefault(shingle, len(index)))
    incidence = csr_matrix((np.ones(len(rows), np.int32), (rows, columns)), shape=(len(shingle_sets), len(index)))
    shared = triu(incidence @ incidence.T, k=1).tocoo()
    sizes = np.array([len(s) for s in shingle_sets])
    jaccard = shared.data / (sizes[shared.row] + sizes[shared.col] - shared.data)
    keep = jaccard >= threshold
    return set(zip(shared.row[keep].tolist(), shared.col[keep].tolist(), strict=True))


def rendered_shingles(texts: list[str], size: int) -> list[set[str]]:
    return [near_dup_minhash.shingles(f"User: {t}", size) for t in texts]


def rendered_hashes(ids: list[str], texts: list[str], size: int) -> dict:
    """id -> the shingle hashes verification compares, of each text as the scorer renders it."""
    words: dict[str, int] = {}
    return {i: near_dup_minhash.shingle_hashes(f"User: {t}", size, words) for i, t in zip(ids, texts, strict=True)}
