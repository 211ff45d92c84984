"""k-center greedy (farthest-point) selection: true greedy, exact, never an N x N matrix.

Each step picks the row farthest from every center chosen so far. A row's distance to its
nearest center only shrinks as centers are added, so rows are kept in blocks, and a block's
largest distance, last brought up to date after its first t centers, bounds every distance
in it from above. A step brings up to date only the blocks whose bound reaches the farthest
distance found so far (largest bound first), so a block usually catches up on many pending
centers at once: one matrix product, bound by arithmetic, where one center at a time reads
every vector for two flops a value and is bound by memory (1.5 GB a pick at 1M x 384).

The products run in float32 (any BLAS, any shape, a GPU), so the kept distances are float32
screens, each within a proven bound of its float64 value. Only the pick is decided in
float64: the rows whose screen is within twice the bound of the largest are the only ones
that can be farthest; their float64 distances (to the centers whose screens come within the
bound of their nearest) decide, ties going to the smallest tie key. So the picks are those of
the plain greedy in float64 (tested against a brute-force loop; the bench checks a float64
plain greedy at 1M rows), and depend on no BLAS, shape or grouping of the work. Plain float32
greedy has no fixed picks to match: MKL's float32 result for one row and center changes with
the call's shape (a matrix-vector product over 1 to 33 gathered rows differs from the same
rows inside a large one), and a near tie at pick 648 of 100k rows once went the other way
under another BLAS. Vectors are held as float32 or float16 (for a GPU's memory); float16
picks are exact for the rounded vectors. TF32 matmul must stay off (torch's default): its
error exceeds the bound.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

# |float32 - exact| of |x|^2 + |c|^2 - 2 x.c is at most (2.5 dim + 4) u (|x|^2 + |c|^2), u = 2^-24
# (each dot product: dim u; the sums: a few u); the screen allows (4 dim + 8) u, with room for
# the rounding of stored and resumed values.
UNIT_ROUNDOFF = 2.0**-24
# Pending centers a block catches up on per matrix product: bounds its (rows x centers) floats.
CENTERS_PER_PRODUCT = 1024
# Rows near the farthest whose float64 distances are brought up to date at a time.
EXACT_ROWS = 1024


@dataclass
class State:
    """Everything a greedy run needs to go on from where it stopped."""

    centers: list[int] = field(default_factory=list)  # row indices in pick order, seeds first
    seeds: int = 0  # how many of `centers` came from a seed selection
    radii: list[float] = field(default_factory=list)  # covering radius just before each new pick
    min_distance: np.ndarray | None = None  # (N,) each row's float32-screened distance to its nearest center


class KCenter:
    def __init__(self, vectors: np.ndarray, capacity: int, dtype="float32", device="cpu", chunk_rows=2048):
        """`chunk_rows`: rows a block holds (a block's product is chunk_rows x pending centers)."""
        import torch

        self.torch, self.device, self.block_rows = torch, device, chunk_rows
        with warnings.catch_warnings():  # Arrow's read-only buffer: the tensor is never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            vectors = torch.from_numpy(np.ascontiguousarray(vectors))
        self.vectors = vectors.to(device=device, dtype=getattr(torch, dtype))
        self.n, dim = self.vectors.shape
        self.squared = torch.empty(self.n, dtype=torch.float64, device=device)
        for start in range(0, self.n, chunk_rows):
            block = self.vectors[start : start + chunk_rows].double()
            self.squared[start : start + len(block)] = (block * block).sum(dim=1)
        self.squared32 = self.squared.float()
        self.blocks = (self.n + chunk_rows - 1) // chunk_rows
        # the screen's error bound on a squared distance, for the largest norms there are
        self.margin = (4 * dim + 8) * UNIT_ROUNDOFF * 2 * float(self.squared.max())
        # the centers' float32 vectors and squared norms, contiguous for the screens' products;
        # their float64 values are read from `vectors` and `squared` by row
        self.centers = torch.empty((capacity, dim), dtype=torch.float32, device=device)
        self.center_squared32 = torch.empty(capacity, dtype=torch.float32, device=device)
        self.center_rows = torch.empty(capacity, dtype=torch.int64, device=device)
        self.k = 0
        # float64 distances, kept for the rows that came near the farthest, and the centers they cover
        self.exact_distance = torch.full((self.n,), float("inf"), dtype=torch.float64, device=device)
        self.covered = torch.zeros(self.n, dtype=torch.int64, device=device)

    def begin(self, seeds: list[int], first: int) -> State:
        """Centers = the seed rows, or `first` alone when there are none (its radius: inf)."""
        torch = self.torch
        self._reset(torch.full((self.n,), float("inf"), dtype=torch.float32, device=self.device))
        state = State(seeds=len(seeds))
        for row in seeds:
            self.add(state, row)
        if not seeds:
            self.add(state, first)
            state.radii.append(float("inf"))
        return state

    def resume(self, state: State) -> State:
        """Go on from a snapshot (whose distances are up to date with all its centers)."""
        torch = self.torch
        for row in state.centers:
            self._append(row)
        distances = torch.from_numpy(np.asarray(state.min_distance, dtype=np.float32)).to(self.device)
        self._reset(distances.square())
        self.done[:] = self.k
        centers = torch.tensor(state.centers, dtype=torch.int64, device=self.device)
        self.exact_distance[centers], self.covered[centers] = 0.0, self.k
        return state

    def snapshot(self, state: State) -> State:
        for block in np.flatnonzero(self.done < self.k):
            self._catch_up(block)
        state.min_distance = self.min_squared.sqrt().cpu().numpy()
        return state

    def step(self, state: State, tie_keys: np.ndarray) -> int:
        """Pick the farthest row (ties: the smallest tie key), make it a center; returns it."""
        farthest, rows, distances = self._farthest()
        if farthest <= 0:
            raise ValueError("k-center: every row is a center or a duplicate of one; lower the budget")
        tied = rows[distances == farthest]
        row = int(tied[np.argmin(tie_keys[tied])]) if len(tied) > 1 else int(tied[0])
        self.add(state, row)
        state.radii.append(farthest)
        return row

    def add(self, state: State, row: int) -> None:
        """Make `row` a center; the blocks catch up on it when their bound next matters."""
        self._append(row)
        self.min_squared[row] = 0.0
        self.exact_distance[row], self.covered[row] = 0.0, self.k
        state.centers.append(row)

    def covering_radius(self) -> float:
        """The largest float64 distance of any row to its nearest center."""
        return self._farthest()[0]

    def _farthest(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(the largest float64 distance, the rows that could hold it, their float64 distances)."""
        while True:  # the largest screen: every other block's bound is below it
            block = int(np.argmax(self.block_max))
            if self.done[block] == self.k:
                break
            self._catch_up(block)
        window = self.block_max[block] - 2 * self.margin  # a farther row's screen is above this
        for stale in np.flatnonzero((self.block_max >= window) & (self.done < self.k)):
            self._catch_up(stale)
        rows = []
        for block in np.flatnonzero(self.block_max >= window):
            start = block * self.block_rows
            near = self.torch.nonzero(self.min_squared[start : start + self.block_rows] >= window).flatten()
            rows.append(near + start)
        rows = self.torch.cat(rows)
        distances = self.torch.cat([self._exact(rows[i : i + EXACT_ROWS]) for i in range(0, len(rows), EXACT_ROWS)])
        distances = distances.cpu().numpy()
        return float(distances.max()), rows.cpu().numpy(), distances

    def _exact(self, rows):
        """The rows' float64 distances to their nearest centers, going on from the centers each
        last covered: in float64 only the centers whose screen comes within the bound of its nearest."""
        torch = self.torch
        distance, covered = self.exact_distance[rows], self.covered[rows]
        stale = torch.nonzero(covered < self.k).flatten()
        if not len(stale):
            return distance
        rows, covered, since = rows[stale], covered[stale], int(covered[stale].min())
        x = self.vectors[rows].float()
        fast = torch.addmm(self.center_squared32[None, since : self.k], x, self.centers[since : self.k].T, alpha=-2)
        fast += self.squared32[rows, None]
        already = torch.arange(since, self.k, device=self.device)[None, :] < covered[:, None]
        fast[already] = float("inf")  # centers a row's distance already covers
        nearest_screen = fast.min(dim=1).values.double()
        limit = torch.minimum(distance[stale].square(), nearest_screen + self.margin) + self.margin
        pairs, centers = torch.nonzero(fast < limit[:, None], as_tuple=True)
        centers = self.center_rows[centers + since]
        dots = (x[pairs].double() * self.vectors[centers].double()).sum(dim=1)  # one pair's sum at a time
        squared = self.squared[rows[pairs]] + self.squared[centers] - 2 * dots
        nearest = torch.full((len(rows),), float("inf"), dtype=torch.float64, device=self.device)
        nearest.scatter_reduce_(0, pairs, squared.clamp_min_(0).sqrt_(), "amin")
        distance[stale] = torch.minimum(distance[stale], nearest)
        self.exact_distance[rows], self.covered[rows] = distance[stale], self.k
        return distance

    def _reset(self, min_squared) -> None:
        self.min_squared = min_squared
        self.done = np.zeros(self.blocks, dtype=np.int64)  # centers each block is up to date with
        rows = self.block_rows
        self.block_max = np.array([float(min_squared[b * rows : (b + 1) * rows].max()) for b in range(self.blocks)])

    def _append(self, row: int) -> None:
        self.centers[self.k], self.center_squared32[self.k] = self.vectors[row].float(), self.squared32[row]
        self.center_rows[self.k] = row
        self.k += 1

    def _catch_up(self, block: int) -> None:
        """Bring one block's screens up to date with every center."""
        start = block * self.block_rows
        x = self.vectors[start : start + self.block_rows].float()
        current = self.min_squared[start : start + len(x)]
        for first in range(int(self.done[block]), self.k, CENTERS_PER_PRODUCT):
            end = min(first + CENTERS_PER_PRODUCT, self.k)
            # |c|^2 - 2 x.c in one fused product; |x|^2 is the same along a row
            fast = self.torch.addmm(self.center_squared32[None, first:end], x, self.centers[first:end].T, alpha=-2)
            nearest = fast.amin(dim=1).add_(self.squared32[start : start + len(x)])
            nearest.clamp_min_(0)  # a duplicate's may dip below 0
            self.torch.minimum(current, nearest, out=current)
        self.done[block] = self.k
        self.block_max[block] = float(current.max())


def select(vectors: np.ndarray, budget: int, first: int, tie_keys: np.ndarray, seeds=(), **options):
    """Plain use: `budget` new rows beyond `seeds`, in pick order, and the radius before each."""
    seeds = list(seeds)
    engine = KCenter(vectors, capacity=len(seeds) + budget, **options)
    state = engine.begin(seeds, first)
    while len(state.centers) - state.seeds < budget and len(state.centers) < len(vectors):
        engine.step(state, tie_keys)
    return state.centers[state.seeds :], state.radii
