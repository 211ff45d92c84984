"""ZIP (Entropy Law): greedy selection that keeps the selected set's compression ratio low.

CR(rows) = raw bytes / zlib-compressed bytes of the rows laid out as the reference lays
out a Python list, b"[" + b", ".join(rows) + b"]". Rounds until the budget is met:
  1. the K1 live rows with the lowest (possibly stale) scores;
  2. their scores recomputed as CR(selected + [row]); the K2 lowest go on;
  3. a batch of K3 built one row at a time, each the row minimising CR(batch + [row]);
     the batch joins the selection, and the K2 rows it did not take are dropped for good
     (the K1 - K2 others keep their new, from now on stale, scores).
`exact` compresses every candidate set from scratch, as the reference does. `fast` feeds
the set once into a `zlib.compressobj` and, per candidate, compresses only the candidate's
bytes on a copy of it: deflate without flushes emits the same bytes however its input is
split, so the ratios (and the picks) are exactly those of `exact`, at a cost that does not
grow with the selection. Fast mode also keeps the selected set's compressor from round to
round and grows the batch's one pick by pick, where rebuilding them compressed the whole
selection again every round (10 MB at 10,000 rows of 1,000 bytes) and the batch at every
pick. Candidate compressions run on a thread pool in chunks (zlib frees the GIL).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

OPEN, SEPARATOR, CLOSE = b"[", b", ", b"]"


def layout(rows: list[bytes]) -> bytes:
    return OPEN + SEPARATOR.join(rows) + CLOSE


def exact_ratio(rows: list[bytes], level: int) -> float:
    raw = layout(rows)
    return len(raw) / len(zlib.compress(raw, level))


class Recompressed:
    """Exact mode's set of rows: the ratio with one more row compresses them all again."""

    def __init__(self, level: int):
        self.level, self.rows = level, []

    def add(self, row: bytes) -> None:
        self.rows.append(row)

    def ratio_with(self, row: bytes) -> float:
        return exact_ratio([*self.rows, row], self.level)


class Prefix:
    """A set of rows fed once into a compressor; the ratio with one more row is cheap."""

    def __init__(self, level: int):
        self.compressor = zlib.compressobj(level)
        self.raw_bytes = self.emitted = 0

    def add(self, row: bytes) -> None:
        piece = (SEPARATOR if self.raw_bytes else OPEN) + row
        self.raw_bytes += len(piece)
        self.emitted += len(self.compressor.compress(piece))

    def ratio_with(self, row: bytes) -> float:
        piece = (SEPARATOR if self.raw_bytes else OPEN) + row + CLOSE
        copy = self.compressor.copy()
        compressed = self.emitted + len(copy.compress(piece)) + len(copy.flush())
        return (self.raw_bytes + len(piece)) / compressed


@dataclass
class State:
    """Where a run stands after a round: enough to go on and pick what a clean run picks."""

    scores: np.ndarray  # (N,) latest score of each row; +inf once selected or dropped
    selected: list[int] = field(default_factory=list)
    rounds: int = 0


class Zip:
    def __init__(self, rows: list[bytes], level: int = 9, mode: str = "fast", workers: int = 1):
        self.rows, self.level, self.workers = rows, level, workers
        self.base = {"exact": Recompressed, "fast": Prefix}[mode]
        self.pool = ThreadPoolExecutor(max_workers=workers)
        # the selection's set, kept from round to round, and the selected rows it holds
        self.kept, self.kept_rows = self.base(level), []

    def close(self) -> None:
        self.pool.shutdown()

    def begin(self) -> State:
        """Every row's own ratio, CR([row]), in both modes: one `zlib.compress` a row (a
        compressor copy and its flush cost more than the compression of a lone row)."""
        ratios = self._map(lambda row: exact_ratio([row], self.level), range(len(self.rows)))
        return State(scores=np.array(ratios, dtype=np.float64))

    def _selected(self, state: State):
        """The selection's set: the one kept from the last round, fed only the rows picked
        since (in fast mode, compressing the whole selection every round would grow with it);
        built again for a selection that does not go on from it, such as a resumed one."""
        if state.selected[: len(self.kept_rows)] != self.kept_rows:
            self.kept, self.kept_rows = self.base(self.level), []
        for i in state.selected[len(self.kept_rows) :]:
            self.kept.add(self.rows[i])
            self.kept_rows.append(i)
        return self.kept

    def _ratios(self, base, candidates) -> list[float]:
        """CR(base + [c]) for each candidate c, in the candidates' order."""
        return self._map(base.ratio_with, candidates)

    def _map(self, score: Callable[[bytes], float], candidates) -> list[float]:
        """score(row) for each candidate's row, in the candidates' order, in chunks on the pool."""
        candidates = list(candidates)
        size = max(1, min(1024, len(candidates) // (4 * self.workers)))  # few tasks, yet even shares
        chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
        parts = self.pool.map(lambda chunk: [score(self.rows[c]) for c in chunk], chunks)
        return [ratio for part in parts for ratio in part]

    def round(self, state: State, budget: int, k1: int, k2: int, k3: int) -> None:
        live = int(np.isfinite(state.scores).sum())
        order = np.argsort(state.scores, kind="stable")[: min(k1, live)]  # ties: lower index first
        fresh = np.array(self._ratios(self._selected(state), order.tolist()), dtype=np.float64)
        state.scores[order] = fresh
        finalists = order[np.argsort(fresh, kind="stable")[:k2]].tolist()
        batch = self._batch(finalists, min(k3, budget - len(state.selected)))
        state.selected += batch
        state.scores[finalists] = np.inf  # taken, or dropped for good
        state.rounds += 1

    def _batch(self, finalists: list[int], size: int) -> list[int]:
        batch: list[int] = []
        base = self.base(self.level)  # the batch's set, grown pick by pick
        remaining = list(finalists)
        for _ in range(min(size, len(remaining))):
            ratios = self._ratios(base, remaining)
            batch.append(remaining.pop(int(np.argmin(ratios))))  # ties: the earlier finalist
            base.add(self.rows[batch[-1]])
        return batch

    def run(self, state: State, budget: int, k1: int, k2: int, k3: int, after_round: Callable | None = None) -> State:
        while len(state.selected) < budget and np.isfinite(state.scores).any():
            self.round(state, budget, k1, k2, k3)
            if after_round is not None:
                after_round(state)
        return state


def select(
    rows: list[bytes], budget: int, k1=10_000, k2=200, k3=100, level=9, mode="fast", workers=1, after_round=None
) -> list[int]:
    """Plain use: the selected row indices, in pick order (`after_round(state)` after each round)."""
    engine = Zip(rows, level, mode, workers)
    try:
        return engine.run(engine.begin(), budget, k1, k2, k3, after_round).selected
    finally:
        engine.close()
