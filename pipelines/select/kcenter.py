"""k-center greedy (farthest-point) selection: true greedy, exact, never an N x N matrix.

Each step picks the row farthest from every center chosen so far, then updates each row's
distance to its nearest center. The update skips rows the triangle inequality rules out:
a row x whose nearest center a satisfies d(a, c) >= 2 d(x, a) cannot be closer to the new
center c (d(x, c) >= d(a, c) - d(x, a) >= d(x, a)). Only the other rows' distances are
computed, in chunks, so late steps touch a small part of the data. The picks are the ones
plain greedy makes (tested against a brute-force loop). Vectors are held as float32 or
float16 on the CPU or a GPU (torch); distances are computed in float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

# Pruning compares squared distances computed as |a|^2 + |c|^2 - 2 a.c, whose float32 error
# grows with the norms: a margin of this much (times the norms) keeps pruning on the safe side.
PRUNE_MARGIN = 1e-5
# Above this fraction of rows left after pruning, one pass over all rows (contiguous) is
# faster than gathering the survivors (measured here: gathering costs about 3x a row).
DENSE_FRACTION = 0.3


@dataclass
class State:
    """Everything a greedy run needs to go on from where it stopped."""

    centers: list[int] = field(default_factory=list)  # row indices in pick order, seeds first
    seeds: int = 0  # how many of `centers` came from a seed selection
    radii: list[float] = field(default_factory=list)  # covering radius just before each new pick
    min_distance: np.ndarray | None = None  # (N,) distance of each row to its nearest center
    nearest: np.ndarray | None = None  # (N,) index into `centers` of that center


class KCenter:
    def __init__(self, vectors: np.ndarray, capacity: int, dtype="float32", device="cpu", chunk_rows=65_536):
        import torch

        self.torch, self.device, self.chunk_rows = torch, device, chunk_rows
        with warnings.catch_warnings():  # Arrow's read-only buffer: the tensor is never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            vectors = torch.from_numpy(np.ascontiguousarray(vectors))
        self.vectors = vectors.to(device=device, dtype=getattr(torch, dtype))
        self.n = self.vectors.shape[0]
        self.squared = torch.empty(self.n, dtype=torch.float32, device=device)
        for start in range(0, self.n, chunk_rows):
            block = self.vectors[start : start + chunk_rows].float()
            self.squared[start : start + len(block)] = (block * block).sum(dim=1)
        self.centers = torch.empty((capacity, self.vectors.shape[1]), dtype=torch.float32, device=device)
        self.center_squared = torch.empty(capacity, dtype=torch.float32, device=device)
        self.k = 0

    def distances(self, rows, center: int):
        """Euclidean distances of `rows` (an index tensor; None: every row) to row `center`."""
        torch, c = self.torch, self.vectors[center].float()
        total = self.n if rows is None else len(rows)
        out = torch.empty(total, dtype=torch.float32, device=self.device)
        for start in range(0, total, self.chunk_rows):
            chosen = slice(start, start + self.chunk_rows) if rows is None else rows[start : start + self.chunk_rows]
            block = self.vectors[chosen].float()
            squared = self.squared[chosen] + self.squared[center] - 2 * (block @ c)
            out[start : start + len(block)] = squared.clamp_min_(0).sqrt_()
        return out

    def begin(self, seeds: list[int], first: int) -> State:
        """Centers = the seed rows, or `first` alone when there are none (its radius: inf)."""
        torch = self.torch
        self.min_distance = torch.full((self.n,), float("inf"), dtype=torch.float32, device=self.device)
        self.nearest = torch.zeros(self.n, dtype=torch.int32, device=self.device)
        state = State(seeds=len(seeds))
        for row in seeds:
            self.add(state, row)
        if not seeds:
            self.add(state, first)
            state.radii.append(float("inf"))
        return state

    def resume(self, state: State) -> State:
        torch = self.torch
        self.min_distance = torch.from_numpy(state.min_distance).to(self.device)
        self.nearest = torch.from_numpy(state.nearest).to(self.device)
        for row in state.centers:
            self._append(row)
        return state

    def snapshot(self, state: State) -> State:
        state.min_distance = self.min_distance.cpu().numpy().copy()
        state.nearest = self.nearest.cpu().numpy().copy()
        return state

    def step(self, state: State, tie_keys: np.ndarray) -> int:
        """Pick the farthest row (ties: the smallest tie key), make it a center; returns it."""
        farthest = float(self.min_distance.max())
        if farthest <= 0:
            raise ValueError("k-center: every row is a center or a duplicate of one; lower the budget")
        tied = self.torch.nonzero(self.min_distance == farthest).flatten().cpu().numpy()
        row = int(tied[np.argmin(tie_keys[tied])]) if len(tied) > 1 else int(tied[0])
        self.add(state, row)
        state.radii.append(farthest)
        return row

    def add(self, state: State, row: int) -> None:
        torch = self.torch
        candidates = None  # None: every row
        if self.k:  # rows that may be closer to the new center: d(a, c)^2 < 4 d(x, a)^2
            c = self.vectors[row].float()
            existing = self.centers[: self.k]
            gap = self.center_squared[: self.k] + self.squared[row] - 2 * (existing @ c)  # d(a, c)^2, all a
            margin = PRUNE_MARGIN * (self.center_squared[: self.k].max() + self.squared[row])
            bound = gap[self.nearest.long()]
            candidates = torch.nonzero(bound < 4 * self.min_distance.square() + margin).flatten()
            if len(candidates) > DENSE_FRACTION * self.n:  # gathering scattered rows costs more
                candidates = None
        distances = self.distances(candidates, row)
        closer = distances < (self.min_distance if candidates is None else self.min_distance[candidates])
        updated = torch.nonzero(closer).flatten() if candidates is None else candidates[closer]
        self.min_distance[updated] = distances[closer]
        self.nearest[updated] = self.k
        self.min_distance[row], self.nearest[row] = 0.0, self.k
        self._append(row)
        state.centers.append(row)

    def covering_radius(self) -> float:
        """The largest distance of any row to its nearest center."""
        return float(self.min_distance.max())

    def _append(self, row: int) -> None:
        self.centers[self.k] = self.vectors[row].float()
        self.center_squared[self.k] = self.squared[row]
        self.k += 1


def select(vectors: np.ndarray, budget: int, first: int, tie_keys: np.ndarray, seeds=(), **options):
    """Plain use: `budget` new rows beyond `seeds`, in pick order, and the radius before each."""
    seeds = list(seeds)
    engine = KCenter(vectors, capacity=len(seeds) + budget, **options)
    state = engine.begin(seeds, first)
    while len(state.centers) - state.seeds < budget and len(state.centers) < len(vectors):
        engine.step(state, tie_keys)
    return state.centers[state.seeds :], state.radii
