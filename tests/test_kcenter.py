"""k-center greedy against a brute-force farthest-point loop, on small inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.select import kcenter


def brute_force(vectors: np.ndarray, budget: int, first: int, seeds=()) -> tuple[list[int], list[float]]:
    """The textbook greedy: every step, every distance, in float64."""
    x = vectors.astype(np.float64)
    nearest = np.full(len(x), np.inf)
    for center in list(seeds) or [first]:
        nearest = np.minimum(nearest, np.linalg.norm(x - x[center], axis=1))
    picks, radii = ([], []) if seeds else ([first], [np.inf])
    while len(picks) < budget:
        row = int(np.argmax(nearest))
        radii.append(float(nearest[row]))
        picks.append(row)
        nearest = np.minimum(nearest, np.linalg.norm(x - x[row], axis=1))
    return picks, radii


def clustered(rng, rows: int, dim: int, normalise: bool) -> np.ndarray:
    centers = rng.normal(size=(12, dim))
    x = centers[rng.integers(0, 12, rows)] + 0.3 * rng.normal(size=(rows, dim))
    if normalise:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.mark.parametrize("normalise", [True, False])
@pytest.mark.parametrize("chunk_rows", [97, 65_536])
def test_equals_brute_force_greedy(normalise, chunk_rows):
    rng = np.random.default_rng(7)
    x = clustered(rng, 1500, 24, normalise)
    keys = rng.integers(0, 2**63, len(x)).astype(np.uint64)
    ours, radii = kcenter.select(x, 200, first=11, tie_keys=keys, chunk_rows=chunk_rows)
    expected, expected_radii = brute_force(x, 200, first=11)
    assert ours == expected
    np.testing.assert_allclose(radii[1:], expected_radii[1:], rtol=1e-9)  # float64, not the screens
    assert all(a >= b for a, b in zip(radii, radii[1:], strict=False))  # the covering radius never grows


def test_seeded_with_an_earlier_selection():
    rng = np.random.default_rng(1)
    x = clustered(rng, 800, 16, True)
    seeds = [3, 50, 400]
    ours, _ = kcenter.select(x, 60, first=0, tie_keys=np.zeros(len(x), np.uint64), seeds=seeds)
    expected, _ = brute_force(x, 60, first=0, seeds=seeds)
    assert ours == expected and not set(ours) & set(seeds)


def test_float16_storage_picks_what_greedy_picks_on_the_rounded_vectors():
    rng = np.random.default_rng(2)
    x = clustered(rng, 1000, 32, True)
    rounded = x.astype(np.float16).astype(np.float32)
    ours, _ = kcenter.select(x, 100, first=5, tie_keys=np.zeros(len(x), np.uint64), dtype="float16")
    expected, _ = brute_force(rounded, 100, first=5)
    assert ours == expected


def test_ties_go_to_the_smallest_key_and_duplicates_are_never_picked_twice():
    x = np.array([[0, 0], [4, 0], [-4, 0], [4, 0], [0, 1]], dtype=np.float32)
    keys = np.array([0, 9, 5, 1, 0], dtype=np.uint64)
    picks, _ = kcenter.select(x, 3, first=0, tie_keys=keys)
    assert picks == [0, 3, 2]  # rows 1, 2, 3 tie at distance 4: key 1 (row 3) wins, then row 2
    with pytest.raises(ValueError, match="duplicate"):
        kcenter.select(x, 5, first=0, tie_keys=keys)


def test_a_resumed_state_goes_on_exactly():
    rng = np.random.default_rng(3)
    x = clustered(rng, 600, 8, True)
    keys = rng.integers(0, 2**63, len(x)).astype(np.uint64)
    clean, _ = kcenter.select(x, 80, first=2, tie_keys=keys)
    engine = kcenter.KCenter(x, capacity=80)
    state = engine.begin([], first=2)
    while len(state.centers) < 30:
        engine.step(state, keys)
    saved = engine.snapshot(state)
    again = kcenter.KCenter(x, capacity=80)
    state = again.resume(kcenter.State(list(saved.centers), 0, list(saved.radii), saved.min_distance))
    while len(state.centers) < 80:
        again.step(state, keys)
    assert state.centers == clean


def test_a_tie_in_float32_is_decided_in_float64():
    # |row 1| = 1 and |row 2| = sqrt(1 + 2^-24): equal in float32 (whose step at 1 is 2^-23),
    # so a float32 greedy ties them and takes row 1 by its smaller key; row 2 is farther
    x = np.array([[0, 0], [1, 0], [1, 2**-12]], dtype=np.float32)
    assert np.float32(1) + np.float32(2**-24) == np.float32(1)
    picks, radii = kcenter.select(x, 3, first=0, tie_keys=np.array([0, 0, 1], dtype=np.uint64))
    assert picks == brute_force(x, 3, first=0)[0] == [0, 2, 1]
    assert radii[1] == np.sqrt(1 + 2.0**-24) and radii[2] == 2.0**-12


def test_float64_decides_where_float32_cancellation_swamps_the_distances():
    # rows 1,000 from the origin spread over a radius of 1.5: float32's |x|^2 + |c|^2 - 2 x.c
    # loses more than the distances' spread to cancellation, so only the float64 decision
    # among every row within the error bound picks what the brute-force greedy picks
    rng = np.random.default_rng(5)
    u = rng.normal(size=(300, 8))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x = (1000 + u * rng.uniform(0.5, 1.5, size=(300, 1))).astype(np.float32)
    keys = rng.integers(0, 2**63, len(x)).astype(np.uint64)
    picks, radii = kcenter.select(x, 40, first=0, tie_keys=keys, chunk_rows=64)
    expected, expected_radii = brute_force(x, 40, first=0)
    assert picks == expected
    np.testing.assert_allclose(radii[1:], expected_radii[1:], rtol=1e-9)
