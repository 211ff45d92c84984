"""MinHash pieces of the near-duplicate scorer: normalised text, word shingles, signatures,
LSH band keys, and the bands x rows split chosen from the Jaccard threshold.

Signatures come from rensa (Rust MinHash, seeded, the same in every process): measured here
on 10,000 rows it signs ~111,000 rows/s against datasketch's ~8,400 (`MinHash.bulk`), and
the Python shingling around it is then the slower part (docs/cleaning.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

import numpy as np
import pyarrow as pa

from pipelines.score import contamination_index

_NOT_WORD = re.compile(r"[^\w\s]+")  # punctuation and symbols; \w keeps letters and digits of every script
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, lowercase, punctuation dropped, whitespace collapsed: edits of form are no edits."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def shingles(text: str, size: int) -> set[str]:
    """The set of word `size`-grams of the normalised text; a shorter text is one shingle."""
    words = normalise(text).split(" ")
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def shingle_hashes(text: str, size: int, cache: dict[str, int]) -> np.ndarray:
    """`shingles` as sorted distinct 64-bit hashes (contamination_index's word n-gram hashes):
    8 bytes a shingle where a set of strings costs ~140, for the rows verification holds at
    once. `cache` maps words to their hashes across calls."""
    words = normalise(text).split(" ")
    hashes = contamination_index.word_hashes(words, cache)
    return np.unique(contamination_index.gram_hashes(hashes, min(size, len(words))))


def jaccard(left: np.ndarray, right: np.ndarray) -> float:
    """Jaccard of two `shingle_hashes` arrays (never empty: a text has at least one shingle)."""
    shared = len(np.intersect1d(left, right, assume_unique=True))
    return shared / (len(left) + len(right) - shared)


def signature(shingle_set: set[str], num_perm: int, seed: int) -> np.ndarray:
    import rensa

    minhash = rensa.RMinHash(num_perm=num_perm, seed=seed)
    minhash.update(list(shingle_set))  # order-free: a minimum per permutation
    return np.asarray(minhash.digest(), dtype=np.uint64)


def band_keys(signature_row: np.ndarray, bands: int, rows: int) -> list[int]:
    """One 63-bit key a band: a hash of the band's `rows` values (fits a signed int64 column)."""
    keys = []
    for band in range(bands):
        chunk = signature_row[band * rows : (band + 1) * rows].astype("<u8").tobytes()
        keys.append(int.from_bytes(hashlib.blake2b(chunk, digest_size=8).digest(), "little") >> 1)
    return keys


def _probability(similarity: float, bands: int, rows: int) -> float:
    """Chance that a pair of this Jaccard shares at least one band (the S-curve)."""
    return 1.0 - (1.0 - similarity**rows) ** bands


@lru_cache(maxsize=64)
def choose_bands(threshold: float, num_perm: int, false_negative_weight: float) -> tuple[int, int]:
    """(bands, rows) with bands x rows <= num_perm minimising the weighted area of false
    positives (pairs below the threshold that share a band) and false negatives (pairs above
    it that share none): datasketch's `_optimal_param`. Verification by the true Jaccard
    removes false positives, so misses weigh more by default."""
    from scipy.integrate import quad

    best, best_error = (1, num_perm), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = quad(_probability, 0.0, threshold, args=(bands, rows))[0]
            false_negative = (1.0 - threshold) - quad(_probability, threshold, 1.0, args=(bands, rows))[0]
            error = (1 - false_negative_weight) * false_positive + false_negative_weight * false_negative
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


BAND_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.int64()), ("id", pa.string())])


def band_rows(ids: list[str], texts: list[str], settings: dict) -> pa.Table:
    """(band, key, id) for every band of every row: what LSH buckets are grouped from."""
    bands, rows = settings["bands"], settings["rows"]
    band_column, key_column, id_column = [], [], []
    for row_id, text in zip(ids, texts, strict=True):
        keys = band_keys(signature(shingles(text, settings["shingle"]), bands * rows, settings["seed"]), bands, rows)
        band_column.extend(range(bands))
        key_column.extend(keys)
        id_column.extend([row_id] * bands)
    return pa.Table.from_arrays(
        [pa.array(band_column, pa.int16()), pa.array(key_column, pa.int64()), pa.array(id_column, pa.string())],
        schema=BAND_SCHEMA,
    )
