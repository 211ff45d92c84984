"""The select stage on a real scored run: every method, checked against a direct computation."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import config as config_module
from pipelines import experiment, views
from pipelines.score import render
from pipelines.select import greedy, kcenter
from pipelines.select import zip as zip_select
from tests.test_kcenter import brute_force

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SELECT = {
    "random": {"method": "random", "budget": 40, "seed": 1, "export": ["jsonl", "alpaca", "sharegpt"]},
    "top_ifd": {
        "method": "top_k",
        "score": "model_loss.ifd",
        "budget": 0.1,
        "where": [
            {"column": "model_loss.ifd", "op": "<", "value": 1},
            {"column": "model_loss.truncated", "op": "=", "value": False},
        ],
    },
    "km_ifd": {"method": "top_k", "score": "model_loss.ifd", "budget": 24, "allocation": "clusters_equal"},
    "diverse": {"method": "kcenter", "budget": 30},
    "diverse_more": {"method": "kcenter", "budget": 10, "start_from": "diverse"},
    "zip": {"method": "zip", "budget": 30, "k1": 120, "k2": 24, "k3": 8},
}


def make_config(tmp_path, select: dict) -> config_module.ExperimentConfig:
    document = {
        "name": "select-test",
        "run_dir": str(tmp_path / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {"sources": [{"kind": "mathematics", "rows": 300, "seed": 4}]},
        "models": {"tiny": {"build": {"vocab_size": 500, "train_rows": 300}}},
        "score": {
            "compression": {},
            "embedding": {"text": "prompt", "max_seq_length": 32, "batch_size": 32, "threads": 1},
            "model_loss": {"model": "tiny", "max_length": 96, "rows_per_call": 100, "threads": 1},
            "clusters": {"k": 4, "seed": 1},
        },
        "select": select,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return config_module.load(path)


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, ray_local):
    tmp_path = tmp_path_factory.mktemp("select")
    config = make_config(tmp_path, SELECT)
    manifests = experiment.run(config)
    return tmp_path, config, manifests


def ids_of(run_dir: str, name: str) -> list[str]:
    table = pq.read_table(f"{run_dir}/selections/{name}")
    assert table["rank"].to_pylist() == list(range(1, table.num_rows + 1))
    return table.sort_by("rank")["id"].to_pylist()


def test_every_selection_is_written_with_its_manifest(scored_run):
    _, config, manifests = scored_run
    sizes = {name: len(ids_of(config.run_dir, name)) for name in SELECT}
    assert sizes == {"random": 40, "top_ifd": 30, "km_ifd": 24, "diverse": 30, "diverse_more": 10, "zip": 30}
    top = manifests["selections/top_ifd"]
    assert top["method"] == "top_k" and top["budget"] == {"requested": 0.1, "rows": 30}
    assert set(top["inputs"]) == {"pool", "scores/model_loss"}
    assert set(manifests["selections/diverse_more"]["inputs"]) == {"pool", "scores/embedding", "selections/diverse"}


def test_a_selection_exports_its_pool_rows_for_trainers(scored_run):
    _, config, _ = scored_run
    folder = f"{config.run_dir}/exports/random"
    pool = {r["id"]: r["messages"] for r in pq.read_table(f"{config.run_dir}/pool").to_pylist()}
    ids = ids_of(config.run_dir, "random")
    with open(f"{folder}/random.jsonl") as handle:
        rows = [json.loads(line) for line in handle]
    assert [r["id"] for r in rows] == ids and rows[0]["messages"] == pool[ids[0]]
    with open(f"{folder}/random_alpaca.json") as handle:
        alpaca = json.load(handle)
    assert len(alpaca) == 40 and alpaca[0]["output"] == pool[ids[0]][-1]["content"]
    with open(f"{folder}/random_sharegpt.json") as handle:
        sharegpt = json.load(handle)
    assert sharegpt[0]["conversations"][0] == {"from": "human", "value": pool[ids[0]][0]["content"]}


def test_sql_selections_match_direct_queries(scored_run):
    _, config, _ = scored_run
    connection = views.connect(config.run_dir)
    expected = connection.sql(
        "SELECT id FROM scores_model_loss WHERE ifd < 1 AND NOT truncated ORDER BY ifd DESC LIMIT 30"
    ).fetchall()
    assert ids_of(config.run_dir, "top_ifd") == [i for (i,) in expected]
    clusters = connection.execute(
        "SELECT count(DISTINCT cluster) FROM scores_clusters JOIN selections_km_ifd USING (id)"
    ).fetchone()
    assert clusters == (4,)


def test_kcenter_is_the_greedy_over_the_embedding_table(scored_run):
    _, config, _ = scored_run
    table = pq.read_table(f"{config.run_dir}/scores/embedding").sort_by("id")
    ids = table["id"].to_pylist()
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    first = int(np.argmin(greedy.tie_keys(ids, 0)))
    picks, _ = brute_force(vectors, 30, first)
    assert ids_of(config.run_dir, "diverse") == [ids[i] for i in picks]
    more, _ = kcenter.select(vectors, 10, first, greedy.tie_keys(ids, 0), seeds=picks)
    assert ids_of(config.run_dir, "diverse_more") == [ids[i] for i in more]


def test_zip_is_the_greedy_over_the_pool_texts(scored_run):
    _, config, _ = scored_run
    pool = pq.read_table(f"{config.run_dir}/pool").sort_by("id")
    rows = [t.encode() for t in render.render_column(pool["messages"], "json").to_pylist()]
    picks = zip_select.select(rows, 30, k1=120, k2=24, k3=8, mode="exact")
    assert ids_of(config.run_dir, "zip") == [pool["id"][i].as_py() for i in picks]


def test_named_queries_compare_the_selections(scored_run):
    _, config, _ = scored_run
    connection = views.connect(config.run_dir)
    names, rows = views.run_query(connection, "selection_overlap")
    pairs = {(a, b): (shared, jaccard) for a, b, shared, jaccard in rows}
    assert len(pairs) == len(SELECT) ** 2 and pairs[("zip", "zip")] == (30, 1.0)
    assert pairs[("diverse", "diverse_more")][0] == 0  # a seeded run never picks its seeds again
    _, matrix = views.run_query(connection, "selection_overlap_matrix")
    assert len(matrix) == len(SELECT)
    _, summary = views.run_query(connection, "selection_summary")
    assert {row[0]: (row[1], row[3]) for row in summary}["zip"] == ("zip", 30)
    _, scores = views.run_query(connection, "selection_scores")
    assert scores[0][0] == "(pool)" and scores[0][1] == 300


def test_unchanged_selections_are_skipped_and_a_changed_one_rebuilt(scored_run, capfd):
    tmp_path, _, before = scored_run
    changed = {**SELECT, "random": {**SELECT["random"], "seed": 2}}
    config = make_config(tmp_path, changed)
    after = experiment.run(config, ["select"])
    assert capfd.readouterr().err.count("up to date; skipped") == len(SELECT) - 1
    assert after["selections/zip"] == before["selections/zip"]
    assert after["selections/random"]["identity"] != before["selections/random"]["identity"]
