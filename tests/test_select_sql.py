"""SQL selectors on a hand-made scored pool whose answers are known."""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa
import pytest

import schemas
from pipelines.select import ranked
from pipelines.select.settings import Ranked

# id, source, ifd, truncated, response tokens, cluster
ROWS = [
    ("r00", "a", 0.95, False, 10, 0),
    ("r01", "a", 0.90, False, 20, 0),
    ("r02", "a", 0.85, True, 30, 0),
    ("r03", "a", 0.80, False, 40, 0),
    ("r04", "b", 0.75, False, 50, 0),
    ("r05", "b", 0.70, False, 60, 0),
    ("r06", "b", 0.65, False, 70, 1),
    ("r07", "b", 1.20, False, 80, 1),
    ("r08", "c", 0.55, False, 90, 1),
    ("r09", "c", None, False, 0, 1),
    ("r10", "c", 0.45, False, 110, 2),
    ("r11", "c", 0.40, False, 120, 2),
]


@pytest.fixture()
def connection():
    connection = duckdb.connect()
    ids = [r[0] for r in ROWS]
    pool = pa.table({"id": ids, "source": [r[1] for r in ROWS]})
    loss = pa.table(
        {
            "id": ids,
            "ifd": [r[2] for r in ROWS],
            "truncated": [r[3] for r in ROWS],
            "n_response_tokens": pa.array([r[4] for r in ROWS], pa.int32()),
        }
    )
    clusters = pa.table({"id": ids, "cluster": pa.array([r[5] for r in ROWS], pa.int32())})
    for name, table in (("pool", pool), ("scores_model_loss", loss), ("scores_clusters", clusters)):
        connection.from_arrow(table).create_view(name)
    return connection


def chosen(connection, budget: int, **spec) -> list[str]:
    table = ranked.select(connection, Ranked(budget=budget, **spec), budget)
    schemas.check("selections", table)
    assert table["rank"].to_pylist() == list(range(1, table.num_rows + 1))
    return table["id"].to_pylist()


def md5_order(ids: list[str], seed: int) -> list[str]:
    return sorted(ids, key=lambda i: (hashlib.md5(f"{seed}:{i}".encode()).hexdigest(), i))


def test_random_is_a_seeded_md5_order(connection):
    ids = [r[0] for r in ROWS]
    assert chosen(connection, 5, method="random", seed=3) == md5_order(ids, 3)[:5]
    assert chosen(connection, 5, method="random", seed=3) == chosen(connection, 5, method="random", seed=3)
    assert chosen(connection, 5, method="random", seed=4) != chosen(connection, 5, method="random", seed=3)


def test_top_and_bottom_k_skip_rows_without_a_score(connection):
    assert chosen(connection, 3, method="top_k", score="model_loss.ifd") == ["r07", "r00", "r01"]
    assert chosen(connection, 3, method="bottom_k", score="model_loss.ifd") == ["r11", "r10", "r08"]
    everything = chosen(connection, 100, method="top_k", score="model_loss.ifd")
    assert len(everything) == 11 and "r09" not in everything


def test_filters_bind_their_values(connection):
    where = [
        {"column": "model_loss.ifd", "op": "<", "value": 1},
        {"column": "model_loss.truncated", "op": "=", "value": False},
        {"column": "model_loss.n_response_tokens", "op": "between", "value": [15, 100]},
    ]
    assert chosen(connection, 3, method="top_k", score="model_loss.ifd", where=where) == ["r01", "r03", "r04"]
    sources = [{"column": "pool.source", "op": "in", "value": ["c", "x' OR 1=1 --"]}]
    assert sorted(chosen(connection, 10, method="random", where=sources)) == ["r08", "r09", "r10", "r11"]
    hostile = [{"column": "pool.source", "op": "=", "value": "a' OR '1'='1"}]
    assert chosen(connection, 10, method="random", where=hostile) == []


def test_source_quotas_take_the_best_of_each_source(connection):
    quotas = {"a": 2, "c": 0.5}  # c: half of the budget of 4 = 2 rows
    ids = chosen(connection, 4, method="top_k", score="model_loss.ifd", allocation="source_quotas", quotas=quotas)
    assert ids == ["r00", "r01", "r08", "r10"]


def test_clusters_equal_fills_small_clusters_first_then_the_best(connection):
    # ranked by ifd: cluster 0 = r00 r01 r02 r03 r04 r05, cluster 1 = r07 r06 r08, cluster 2 = r10 r11;
    # round 1 takes each cluster's best, round 2 each second best, round 3 the best third (r02 over r08)
    ids = chosen(connection, 7, method="top_k", score="model_loss.ifd", allocation="clusters_equal")
    assert ids == ["r07", "r00", "r10", "r01", "r06", "r11", "r02"]


def test_clusters_proportional_shares_follow_cluster_sizes(connection):
    ids = chosen(connection, 5, method="top_k", score="model_loss.ifd", allocation="clusters_proportional")
    by_cluster = {r[0]: r[5] for r in ROWS}
    counts = [sum(1 for i in ids if by_cluster[i] == c) for c in range(3)]
    assert counts == [3, 1, 1]  # sizes 6, 3, 2 of 11 scored rows: 2.7, 1.4, 0.9
    assert ids == ["r00", "r07", "r01", "r10", "r02"]  # (n - 0.5) / size: .08, .17, .25, .25 (r01 ranks higher), .42


def test_a_fraction_is_of_the_pool():
    assert ranked.budget_rows(0.25, 12) == 3 and ranked.budget_rows(0.01, 12) == 1 and ranked.budget_rows(7, 12) == 7
