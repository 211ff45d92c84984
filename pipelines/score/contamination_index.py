"""Benchmark questions as a word n-gram index, built once on the driver and shared by every task.

Text is normalised as GPT-3's and DataTrove's decontamination do it: Unicode NFKC, lower
case, punctuation and symbols replaced by spaces, whitespace collapsed; then split into
words. A word hashes to 64 bits (blake2b); an n-gram's hash is a polynomial over its
words' hashes, so a row's every n-gram comes from one vectorised pass (numpy, uint64
arithmetic wraps), and the index is a sorted array of hashes beside the question each came
from: a few MB for thousands of questions, and numpy arrays leave Ray's object store
without a copy.

n per benchmark is GPT-3's rule (Brown et al. 2020, appendix C): the 5th percentile of
its questions' lengths in words, at least `min_n` (shorter n-grams collide by chance) and
at most `n` (13). A question shorter than its benchmark's n has no n-gram: it is found by
an exact match of the whole normalised question inside the row's normalised text (word
boundaries kept), which is the `exact` index here, one table per question length.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

NON_WORD = re.compile(r"[\W_]+")
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd, so the polynomial keeps the words' bits


def normalise(text: str) -> str:
    """NFKC, lower case, every run of punctuation, symbols and whitespace -> one space."""
    return NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def word_hashes(words: list[str], cache: dict[str, int]) -> np.ndarray:
    """64-bit hash of each word (blake2b: the same in every process, unlike hash())."""
    out = np.empty(len(words), np.uint64)
    for position, word in enumerate(words):
        value = cache.get(word)
        if value is None:
            value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            cache[word] = value
        out[position] = value
    return out


def gram_hashes(hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash of every run of n consecutive words (empty when there are fewer than n)."""
    count = len(hashes) - n + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    acc = hashes[:count].copy()
    with np.errstate(over="ignore"):
        for offset in range(1, n):
            acc = acc * MULTIPLIER + hashes[offset : offset + count]
    return acc


@dataclass
class Table:
    """Sorted n-gram hashes and, at the same positions, the question each belongs to."""

    hashes: np.ndarray  # uint64, sorted
    questions: np.ndarray  # int32 index into Index.question_ids

    @staticmethod
    def build(pairs: list[tuple[np.ndarray, int]]) -> Table:
        if not pairs:
            return Table(np.zeros(0, np.uint64), np.zeros(0, np.int32))
        hashes = np.concatenate([h for h, _ in pairs])
        questions = np.concatenate([np.full(len(h), q, np.int32) for h, q in pairs])
        order = np.argsort(hashes, kind="stable")
        return Table(hashes[order], questions[order])


@dataclass
class Index:
    """Every benchmark question: its n-gram table per n, and its exact table per length."""

    benchmarks: list[str]  # per question
    question_ids: list[str]
    questions: list[str]  # normalised text, for the exact check of full-coverage matches
    ngram_counts: np.ndarray  # int32: distinct n-grams of each question (0: short, exact only)
    ngrams: dict[int, Table] = field(default_factory=dict)  # n -> table
    exact: dict[int, Table] = field(default_factory=dict)  # question length in words -> table
    n_by_benchmark: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.question_ids)


def benchmark_n(lengths: list[int], n: int, min_n: int) -> int:
    """GPT-3's n for a benchmark: its 5th-percentile question length, within [min_n, n]."""
    if not lengths:
        return n
    return int(min(n, max(min_n, np.percentile(lengths, 5, method="lower"))))


def build(questions: list[tuple[str, str, str]], n: int = 13, min_n: int = 8) -> Index:
    """Index (benchmark, question_id, question text) triples."""
    cache: dict[str, int] = {}
    normalised = [normalise(text) for _, _, text in questions]
    words = [text.split() for text in normalised]
    lengths: dict[str, list[int]] = {}
    for (benchmark, _, _), question_words in zip(questions, words, strict=True):
        lengths.setdefault(benchmark, []).append(len(question_words))
    n_by_benchmark = {name: benchmark_n(values, n, min_n) for name, values in lengths.items()}
    ngram_pairs: dict[int, list] = {}
    exact_pairs: dict[int, list] = {}
    counts = np.zeros(len(questions), np.int32)
    for position, ((benchmark, _, _), question_words) in enumerate(zip(questions, words, strict=True)):
        if not question_words:
            continue  # nothing left after normalisation: nothing to find
        hashes = word_hashes(question_words, cache)
        size = n_by_benchmark[benchmark]
        if len(question_words) < size:
            exact_pairs.setdefault(len(question_words), []).append((gram_hashes(hashes, len(hashes)), position))
            continue
        grams = np.unique(gram_hashes(hashes, size))
        counts[position] = len(grams)
        ngram_pairs.setdefault(size, []).append((grams, position))
    return Index(
        benchmarks=[b for b, _, _ in questions],
        question_ids=[q for _, q, _ in questions],
        questions=normalised,
        ngram_counts=counts,
        ngrams={size: Table.build(pairs) for size, pairs in ngram_pairs.items()},
        exact={size: Table.build(pairs) for size, pairs in exact_pairs.items()},
        n_by_benchmark=n_by_benchmark,
    )


def fingerprint(questions: list[tuple[str, str, str]]) -> str:
    """What the index holds, for the scorer's identity: a changed benchmark file re-scores."""
    digest = hashlib.sha256()
    for benchmark, question_id, text in questions:
        digest.update(f"{benchmark}\0{question_id}\0{text}\0".encode())
    return digest.hexdigest()[:20]
