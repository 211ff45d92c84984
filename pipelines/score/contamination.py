"""Contamination: which pool rows contain benchmark questions (docs/cleaning.md, "Contamination").

Every pool row's text (all its turns' contents, prompt and response) is normalised and cut
into word n-grams, and looked up in the benchmarks' index (contamination_index.py), which
the driver builds once and puts in Ray's object store; the pool streams through plain
function tasks (read, match, write fused, as the compression scorer does). A row matches a
question when it holds at least `min_matched_ngrams` of the question's n-grams and at least
`min_overlap` of them; or when it holds the whole normalised question (`exact`: the only
check a question shorter than its benchmark's n gets, and what a match covering every
n-gram of a question becomes when the question is there word for word). The table keeps
the strongest match in its columns and every match in `matches`; a clean row has nulls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import schemas
from pipelines.score import contamination_index, parts
from pipelines.score.contamination_index import Index, Table


@dataclass(frozen=True)
class Thresholds:
    min_matched_ngrams: int = 1  # GPT-3 and DataTrove flag a single shared n-gram
    min_overlap: float = 0.5  # of the question's n-grams: one shared 9-gram is often boilerplate (docs)


@dataclass
class Match:
    benchmark: str
    question_id: str
    matched_ngrams: int
    overlap: float
    match: str  # "ngram" or "exact"

    def strength(self) -> tuple:
        return (-self.overlap, self.match != "exact", -self.matched_ngrams, self.benchmark, self.question_id)


def row_text(messages: list[dict]) -> str:
    """Every turn's content, prompt and response: a benchmark question may be in either."""
    return "\n".join(message["content"] or "" for message in messages)


def _hits(table: Table, grams: np.ndarray, gram_rows: np.ndarray, n_questions: int) -> tuple[np.ndarray, np.ndarray]:
    """(row * n_questions + question, distinct grams of that question found in that row)."""
    left = np.searchsorted(table.hashes, grams, "left")
    right = np.searchsorted(table.hashes, grams, "right")
    found = right > left
    if not found.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # one (row, gram) once: a row repeating an n-gram has matched it once
    pairs = np.unique(np.stack([gram_rows[found].astype(np.uint64), grams[found]]), axis=1)
    first = np.searchsorted(table.hashes, pairs[1], "left")
    widths = np.searchsorted(table.hashes, pairs[1], "right") - first
    entry = np.repeat(first - np.cumsum(widths) + widths, widths) + np.arange(widths.sum())
    keys = np.repeat(pairs[0].astype(np.int64), widths) * n_questions + table.questions[entry]
    return np.unique(keys, return_counts=True)


def _grams_of(hashes: np.ndarray, rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every n-gram of the batch's concatenated words that lies inside one row, and its row."""
    grams = contamination_index.gram_hashes(hashes, size)
    inside = rows[: len(grams)] == rows[size - 1 : size - 1 + len(grams)]
    return grams[inside], rows[: len(grams)][inside]


def match_texts(texts: list[str], index: Index, thresholds: Thresholds = Thresholds()) -> list[list[Match]]:
    """Every row's matches, strongest first (an empty list: clean)."""
    normalised = [contamination_index.normalise(text) for text in texts]
    cache: dict[str, int] = {}
    words = [text.split() for text in normalised]
    hashes = contamination_index.word_hashes([w for row in words for w in row], cache)
    rows = np.repeat(np.arange(len(words), dtype=np.int64), [len(row) for row in words])
    found: list[dict[int, Match]] = [{} for _ in texts]
    for size, table in index.exact.items():
        keys, _ = _hits(table, *_grams_of(hashes, rows, size), index.size)
        for key in keys.tolist():
            row, question = divmod(key, index.size)
            found[row][question] = _match(index, question, 1, 1.0, "exact")
    for size, table in index.ngrams.items():
        keys, counts = _hits(table, *_grams_of(hashes, rows, size), index.size)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            row, question = divmod(key, index.size)
            total = int(index.ngram_counts[question])
            if count == total and f" {index.questions[question]} " in f" {normalised[row]} ":
                found[row][question] = _match(index, question, count, 1.0, "exact")
            elif count >= thresholds.min_matched_ngrams and count / total >= thresholds.min_overlap:
                found[row][question] = _match(index, question, count, count / total, "ngram")
    return [sorted(matches.values(), key=Match.strength) for matches in found]


def _match(index: Index, question: int, matched: int, overlap: float, kind: str) -> Match:
    return Match(index.benchmarks[question], index.question_ids[question], matched, overlap, kind)


def score_batch(batch: pa.Table, index, thresholds: Thresholds) -> pa.Table:
    """Ray Data map: the contamination table's rows for a block of pool rows."""
    started = time.process_time()
    if not isinstance(index, Index):  # an ObjectRef: the shared copy in the object store
        import ray

        index = ray.get(index)
    texts = [row_text(messages) for messages in batch["messages"].to_pylist()]
    table = to_table(batch["id"], match_texts(texts, index, thresholds))
    return parts.with_cpu(table, time.process_time() - started)


def to_table(ids, matches: list[list[Match]]) -> pa.Table:
    best = [row[0] if row else None for row in matches]
    columns = {
        "id": ids,
        "contaminated": [m is not None for m in best],
        "benchmark": [m.benchmark if m else None for m in best],
        "question_id": [m.question_id if m else None for m in best],
        "matched_ngrams": [m.matched_ngrams if m else 0 for m in best],
        "overlap": [m.overlap if m else 0.0 for m in best],
        "match": [m.match if m else None for m in best],
        "matches": [
            [
                {
                    "benchmark": m.benchmark,
                    "question_id": m.question_id,
                    "matched_ngrams": m.matched_ngrams,
                    "overlap": m.overlap,
                }
                for m in row
            ]
            for row in matches
        ],
    }
    return pa.table(columns, schema=schemas.SCHEMAS["scores/contamination"])
