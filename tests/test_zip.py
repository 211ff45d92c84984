"""ZIP against a direct transcription of the published greedy, on a small real pool."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from pipelines.select import zip as zip_select
from tests.conftest import SHARED_DATA


def cr(rows: list[bytes]) -> float:
    """The reference's ratio: the Python list's repr, compressed by zlib at level 9."""
    raw = b"[" + b", ".join(rows) + b"]"
    return len(raw) / len(zlib.compress(raw, 9))


def published_zip(pool: list[bytes], budget: int, k1: int, k2: int, k3: int) -> list[int]:
    """Step by step, as written: stale scores, K1 rescored against the selection, K2 kept,
    K3 picked one at a time against the batch; K2 rows not picked are dropped."""
    scores = {i: cr([pool[i]]) for i in range(len(pool))}  # every row starts with its own ratio
    selected: list[int] = []
    while len(selected) < budget and scores:
        stage1 = sorted(scores, key=lambda i: (scores[i], i))[:k1]
        for i in stage1:
            scores[i] = cr([pool[j] for j in selected] + [pool[i]])
        stage2 = sorted(stage1, key=lambda i: (scores[i], i))[:k2]
        batch: list[int] = []
        remaining = list(stage2)
        while remaining and len(batch) < k3 and len(selected) + len(batch) < budget:
            best = min(remaining, key=lambda i: (cr([pool[j] for j in batch] + [pool[i]]), remaining.index(i)))
            batch.append(best)
            remaining.remove(best)
        selected += batch
        for i in stage2:
            del scores[i]
    return selected


def pool_rows(count: int) -> list[bytes]:
    path = SHARED_DATA / "pools" / "alpaca_en_demo.json"
    if path.exists():
        records = json.loads(path.read_text())[:count]
    else:  # a user's own clone without ../shared: a generated pool
        rng = random.Random(0)
        words = [
            "add",
            "the",
            "sum",
            "of",
            "two",
            "numbers",
            "then",
            "divide",
            "by",
            "three",
            "and",
            "round",
            "it",
            "up",
        ]
        records = [{"instruction": " ".join(rng.choices(words, k=rng.randint(4, 40)))} for _ in range(count)]
    return [json.dumps(r, ensure_ascii=False).encode() for r in records]


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_both_modes_pick_what_the_published_greedy_picks(mode):
    pool = pool_rows(160)
    expected = published_zip(pool, budget=45, k1=60, k2=20, k3=8)
    assert len(expected) == 45
    assert zip_select.select(pool, 45, k1=60, k2=20, k3=8, mode=mode, workers=2) == expected


def test_the_fast_ratio_is_the_exact_ratio():
    pool = pool_rows(200)
    prefix = zip_select.Prefix(9)
    for row in pool[:150]:
        prefix.add(row)
    for row in pool[150:]:
        assert prefix.ratio_with(row) == cr(pool[:150] + [row])
    assert zip_select.Prefix(9).ratio_with(pool[0]) == cr([pool[0]])


def test_a_resumed_state_goes_on_exactly():
    pool = pool_rows(150)
    clean = zip_select.select(pool, 40, k1=50, k2=15, k3=5)
    engine = zip_select.Zip(pool)
    state = engine.begin()
    for _ in range(3):
        engine.round(state, 40, 50, 15, 5)
    saved = zip_select.State(state.scores.copy(), list(state.selected), state.rounds)
    resumed = zip_select.Zip(pool).run(saved, 40, 50, 15, 5)
    assert resumed.selected == clean


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_an_engine_goes_on_from_an_earlier_state_than_its_own(mode):
    # the engine keeps the selection's set between rounds; a state from an earlier round
    # (fewer rows, another object) must not be scored against the rows picked since
    pool = pool_rows(150)
    clean = zip_select.select(pool, 40, k1=50, k2=15, k3=5, mode=mode)
    engine = zip_select.Zip(pool, mode=mode)
    state = engine.begin()
    engine.round(state, 40, 50, 15, 5)
    earlier = zip_select.State(state.scores.copy(), list(state.selected), state.rounds)
    for _ in range(3):
        engine.round(state, 40, 50, 15, 5)
    assert engine.run(earlier, 40, 50, 15, 5).selected == clean


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_every_row_starts_with_its_own_ratio(mode):
    pool = pool_rows(120)
    engine = zip_select.Zip(pool, mode=mode, workers=2)
    try:
        assert engine.begin().scores.tolist() == [cr([row]) for row in pool]
    finally:
        engine.close()
