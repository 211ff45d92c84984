"""Selection: k-center and ZIP against their plain forms (the SQL selectors: bench/sql_selectors.py).

- k-center: choosing 10k of 100k (and of 1M) unit vectors (384-d, drawn around 500 random
  directions, like sentence embeddings) with Winnow's blocked greedy; baseline: the plain
  greedy that computes every row's float64 distance to each new center, over the same first
  `baseline_picks` picks; both must pick the same rows.
- ZIP: fast vs exact mode, a 2k budget from 50k generated ShareGPT rows (the ingest
  benchmark's, rendered as JSON), K1/K2/K3 as given; speed-up and overlap of the picks. And
  fast mode alone choosing 10k of 1M (K1/K2/K3 the defaults), its first picks checked
  against exact mode's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import TreeMemory, gib, parts_from_argv, run_parts
from bench.ingest import write_pool


def unit_vectors(rows: int, dim: int, directions: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(directions, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    x = centers[rng.integers(0, directions, rows)]
    for start in range(0, rows, 65_536):  # in chunks: float64 noise for 1M rows would take 3 GB
        part = x[start : start + 65_536]
        part += rng.normal(scale=0.9 / np.sqrt(dim), size=part.shape).astype(np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    return x


def plain_greedy(x: np.ndarray, picks: int, first: int, chunk_rows: int = 65_536) -> list[int]:
    """Greedy farthest-point selection with no pruning and no blocks: every row's float64
    distance to each new center, a chunk of rows at a time (float32 plain greedy has no fixed
    picks to match: its results move with the BLAS call's shape, kcenter.py's docstring)."""
    squared = np.concatenate(
        [np.square(x[i : i + chunk_rows], dtype=np.float64).sum(1) for i in range(0, len(x), chunk_rows)]
    )
    nearest = np.full(len(x), np.inf)
    chosen = [first]
    while True:
        c = x[chosen[-1]].astype(np.float64)
        for i in range(0, len(x), chunk_rows):
            dots = x[i : i + chunk_rows].astype(np.float64) @ c
            distances = np.sqrt(np.maximum(squared[i : i + chunk_rows] + squared[chosen[-1]] - 2 * dots, 0))
            np.minimum(nearest[i : i + chunk_rows], distances, out=nearest[i : i + chunk_rows])
        nearest[chosen[-1]] = 0
        if len(chosen) == picks:
            return chosen
        chosen.append(int(np.argmax(nearest)))  # ties: the first row, as Winnow's tie keys


def kcenter(rows: int, budget: int, baseline_picks: int, dtypes=("float32", "float16")) -> dict:
    """One torch thread, as the select stage's default num_cpus: on this shared 2-CPU box two
    OpenMP threads ran k-center 10x slower (their small reductions spin while other jobs run)."""
    import torch

    from pipelines.select import kcenter as kc

    torch.set_num_threads(1)

    x = unit_vectors(rows, 384, 500)
    keys = np.arange(rows, dtype=np.uint64)
    started = time.perf_counter()
    plain = plain_greedy(x, baseline_picks, first=0)
    plain_seconds = time.perf_counter() - started
    out = {"rows": rows, "budget": budget, "baseline_picks": baseline_picks, "plain_seconds": plain_seconds}
    for dtype in dtypes:
        with TreeMemory(os.getpid()) as memory:
            started = time.perf_counter()
            engine = kc.KCenter(x, budget, dtype=dtype)
            state = engine.begin([], first=0)
            while len(state.centers) < baseline_picks:
                engine.step(state, keys)
            at_baseline = time.perf_counter() - started
            if dtype == "float32":  # float16 picks are the plain greedy's over the rounded vectors
                assert state.centers == plain, "the blocked greedy must pick what the plain greedy picks"
            while len(state.centers) < budget:
                engine.step(state, keys)
            seconds = time.perf_counter() - started
        out[dtype] = {
            "seconds": seconds,
            "seconds_first_picks": at_baseline,
            "radius": engine.covering_radius(),
            "peak_rss": memory.peak_root_rss,
        }
        del engine, state
    return out


def zip_modes(pool_rows: int, budget: int, k1: int, k2: int, k3: int, workers: int) -> dict:
    from pipelines.select import zip as zs

    rows = sharegpt_rows(pool_rows)
    out = {"pool": len(rows), "mean_row_bytes": sum(map(len, rows)) / len(rows), "budget": budget}
    out |= {"k": [k1, k2, k3], "workers": workers}
    picks = {}
    for mode in ("fast", "exact"):
        round_ends, clock = round_clock()  # exact's rounds grow with the selection, fast's do not
        picks[mode] = zs.select(rows, budget, k1, k2, k3, mode=mode, workers=workers, after_round=clock)
        out[f"{mode}_seconds"], out[f"{mode}_round_ends"] = round_ends[-1], round_ends
    out["overlap"] = len(set(picks["fast"]) & set(picks["exact"])) / budget
    out["identical_order"] = picks["fast"] == picks["exact"]
    return out


def sharegpt_rows(count: int) -> list[bytes]:
    """The ingest benchmark's generated ShareGPT rows, each one's conversation as JSON."""
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        paths = write_pool(Path(tmp), count, seed=3)
        return [
            json.dumps(json.loads(line)["conversations"]).encode()
            for path in paths
            for line in path.read_text().splitlines()
        ]


def zip_at_scale(pool_rows: int, budget: int, k1: int, k2: int, k3: int, checked: int, workers: int) -> dict:
    """Fast mode's `budget` picks with their seconds and peak memory; exact mode's first
    `checked` picks (part of round 1: exact's later rounds take hours) must be fast's first."""
    from pipelines.select import zip as zs

    rows = sharegpt_rows(pool_rows)
    out = {"pool": len(rows), "mean_row_bytes": sum(map(len, rows)) / len(rows), "budget": budget}
    out |= {"k": [k1, k2, k3], "workers": workers, "checked": checked}
    engine = zs.Zip(rows, mode="fast", workers=workers)
    with TreeMemory(os.getpid()) as memory:
        started = time.perf_counter()
        state = engine.begin()
        out["initial_seconds"] = time.perf_counter() - started
        round_ends, clock = round_clock()
        engine.run(state, budget, k1, k2, k3, after_round=clock)
        out["fast_seconds"] = time.perf_counter() - started
    engine.close()
    out |= {"round_ends": round_ends, "rounds": state.rounds, "peak_rss": memory.peak_root_rss}
    started = time.perf_counter()
    exact = zs.select(rows, checked, k1, k2, k3, mode="exact", workers=workers)
    out["exact_seconds_checked"] = time.perf_counter() - started
    out["same_prefix"] = exact == state.selected[:checked]
    assert out["same_prefix"], "exact mode must pick what fast mode picks"
    return out


def round_clock():
    """(the list it fills, a callback): each call appends the seconds since the clock's making."""
    started, ends = time.perf_counter(), []
    return ends, lambda _: ends.append(time.perf_counter() - started)


def report_kcenter(quick: bool) -> dict:
    r = kcenter(*((20_000, 2_000, 500) if quick else (100_000, 10_000, 1_000)))
    f32, f16 = r["float32"], r["float16"]
    print(
        f"  k-center, {r['budget']:,} of {r['rows']:,} vectors: float32 {r['budget'] / f32['seconds']:,.0f} picks/s "
        f"({f32['seconds']:.1f} s), float16 {r['budget'] / f16['seconds']:,.0f} picks/s ({f16['seconds']:.1f} s); "
        f"first {r['baseline_picks']:,} picks x{r['plain_seconds'] / f32['seconds_first_picks']:.1f} faster than the "
        f"plain float64 greedy (same picks)"
    )
    return r


def report_kcenter_1m(quick: bool) -> dict:
    r = kcenter(*((50_000, 1_000, 50) if quick else (1_000_000, 10_000, 20)), dtypes=("float32",))
    f = r["float32"]
    print(
        f"  k-center, {r['budget']:,} of {r['rows']:,} vectors, float32: {f['seconds']:.1f} s, "
        f"{r['budget'] / f['seconds']:,.1f} picks/s (target: under 900 s), peak RSS {gib(f['peak_rss'])}; "
        f"first {r['baseline_picks']:,} picks the plain float64 greedy's ({r['plain_seconds']:.1f} s for them "
        f"plain, {f['seconds_first_picks']:.1f} s here)"
    )
    return r


def report_zip_1m(quick: bool) -> dict:
    r = zip_at_scale(*((20_000, 300, 1_000, 100, 50, 20) if quick else (1_000_000, 10_000, 10_000, 200, 100, 20)), 2)
    rounds = np.diff([0.0, *r["round_ends"]])
    print(
        f"  ZIP fast, {r['budget']:,} of {r['pool']:,} rows, K1/K2/K3 {r['k']}, {r['workers']} threads: "
        f"{r['fast_seconds']:.1f} s, {r['budget'] / r['fast_seconds']:,.1f} picks/s (target: under 900 s), peak RSS "
        f"{gib(r['peak_rss'])}; initial ratios {r['initial_seconds']:.1f} s, {r['rounds']} rounds of "
        f"{rounds.min():.1f}-{rounds.max():.1f} s; exact's first {r['checked']} picks "
        f"({r['exact_seconds_checked']:.1f} s) the same as fast's: {r['same_prefix']}"
    )
    return r


def report_zip(quick: bool) -> dict:
    r = zip_modes(*((5_000, 300, 1_000, 100, 50) if quick else (50_000, 2_000, 2_000, 200, 100)), workers=2)
    print(
        f"  ZIP, {r['budget']:,} of {r['pool']:,} rows, K1/K2/K3 {r['k']}: fast {r['fast_seconds']:.1f} s, exact "
        f"{r['exact_seconds']:.1f} s: x{r['exact_seconds'] / r['fast_seconds']:.1f} (target >= 20); overlap "
        f"{r['overlap']:.0%} (target >= 90%), same order: {r['identical_order']}"
    )
    return r


PARTS = {
    "kcenter": report_kcenter,
    "kcenter_1m": report_kcenter_1m,
    "zip": report_zip,
    "zip_1m": report_zip_1m,
}


def main(quick: bool = False, parts: tuple[str, ...] = tuple(PARTS)) -> None:
    """All parts by default; `python -m bench.selection zip` runs one (the full ZIP part takes
    about 1 h 55 min on a 2-CPU machine: the exact mode's rounds grow with the selection;
    `zip_1m` about 11 min there when nothing else runs, 30 s of it building the rows)."""
    run_parts("selection", PARTS, parts, quick)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv, parts=parts_from_argv(PARTS, sys.argv[1:]))
