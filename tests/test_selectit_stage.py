"""The SelectIT scorer in the score stage on a real local Ray (one actor pool a model, two tiny
models), checked row by row against the direct computation, ranked by the SQL selector, then
skipped when up to date and resumed from the parts a killed run left."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from test_selectit import direct_scores

from pipelines import config as config_module
from pipelines import experiment, views
from pipelines.score import selectit
from pipelines.select.columns import selectable

pytestmark = [pytest.mark.ray, pytest.mark.slow]
MAX_LENGTH = 200
EXTRA = [
    {"messages": [{"role": "user", "content": "A question with no answer yet?"}]},
    {
        "messages": [
            {"role": "user", "content": "Q1?"},
            {"role": "assistant", "content": "A1."},
            {"role": "user", "content": "And 7 * 6?"},
            {"role": "assistant", "content": "7 * 6 = 42"},
        ]
    },
    {"messages": [{"role": "user", "content": "Go."}, {"role": "assistant", "content": "step " * 120}]},
]


@pytest.fixture(scope="module")
def scored(ray_local, tmp_path_factory):
    """ingest -> models -> score (selectit) -> select (top 10 by selectit.selectit)."""
    tmp = tmp_path_factory.mktemp("selectit")
    extra = tmp / "extra.jsonl"
    extra.write_text("".join(json.dumps(row) + "\n" for row in EXTRA))
    document = {
        "name": "selectit-test",
        "run_dir": str(tmp / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {
            "sources": [
                {"kind": "mathematics", "rows": 40, "seed": 5},
                {"kind": "files", "name": "extra", "paths": [str(extra)]},
            ]
        },
        "models": {
            "tiny": {"build": {"vocab_size": 400, "train_rows": 40}},
            "tiny2": {"build": {"vocab_size": 400, "train_rows": 40, "hidden_size": 64, "seed": 1}},
        },
        "score": {
            "selectit": {
                "models": ["tiny", "tiny2"],
                "k": 3,
                "max_length": MAX_LENGTH,
                "rows_per_call": 16,
                "rows_per_part": 16,  # several parts, so a killed run can leave some
                "num_cpus": 0.5,
                "threads": 1,
            }
        },
        "select": {
            "top_selectit": {
                "method": "top_k",
                "score": "selectit.selectit",
                "budget": 10,
                "where": [{"column": "selectit.truncated", "op": "=", "value": False}],
            }
        },
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    config = config_module.load(path)
    return config, experiment.run(config)


def test_pool_rows_have_the_directly_computed_scores(scored):
    config, manifests = scored
    pool = {r["id"]: r for r in pq.read_table(f"{config.run_dir}/pool").to_pylist()}
    rows = pq.read_table(f"{config.run_dir}/scores/selectit").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(pool) and manifests["scores/selectit"]["rows_out"] == len(pool)
    folders = [f"{config.run_dir}/models/{name}" for name in ("tiny", "tiny2")]
    prompts = selectit.load_prompts(None, 3)
    assert any(r["truncated"] for r in rows) and any(r["selectit"] is None for r in rows)
    special = [r for r in rows if r["truncated"] or r["selectit"] is None or len(pool[r["id"]]["messages"]) > 2]
    for row in special + [r for r in rows if r not in special][:8]:  # every kind of row, and 8 plain ones
        turns = [(m["role"], m["content"]) for m in pool[row["id"]]["messages"]]
        if turns[-1][0] != "assistant":
            assert row["selectit"] is None and row["token_scores"] is None
            continue
        tokens, sentences, mixed = direct_scores(folders, turns, prompts, MAX_LENGTH)
        assert row["selectit"] == pytest.approx(mixed, abs=1e-5)
        assert row["model_sentence"] == pytest.approx(sentences, abs=1e-5)
        assert [t for model in row["token_scores"] for t in model] == pytest.approx(sum(tokens, []), abs=1e-5)


def test_the_sql_selector_ranks_by_the_selectit_column(scored):
    config, _ = scored
    assert {"selectit.selectit", "selectit.selectit_sentence", "selectit.truncated"} <= set(selectable())
    assert "selectit.token_scores" not in selectable()  # lists are not selectable
    connection = views.connect(config.run_dir)
    _, expected = views.run_query(
        connection,
        "SELECT id FROM scores_selectit WHERE NOT truncated AND selectit IS NOT NULL ORDER BY selectit DESC LIMIT 10",
    )
    selected = pq.read_table(f"{config.run_dir}/selections/top_selectit").sort_by("rank")["id"].to_pylist()
    assert selected == [row[0] for row in expected]


def test_a_second_run_is_skipped(scored):
    config, manifests = scored
    again = experiment.run(config, ["score"])
    assert again["scores/selectit"] == manifests["scores/selectit"]


def leave_as_killed(run_dir: str, name: str, keep: int) -> int:
    """The run folder as a kill during scoring leaves it: the scorer's identity in its work
    folder, `keep` parts written there, no table. Returns the rows those parts hold."""
    table, work = Path(run_dir, "scores", name), Path(run_dir, "_work", f"score-{name}")
    identity = json.loads((table / "_SUCCESS.json").read_text())["identity"]
    (work / "parts").mkdir(parents=True)
    (work / "identity.json").write_text(json.dumps(identity))
    kept = sorted(table.glob("part-*.parquet"))[:keep]
    for part in kept:
        shutil.move(part, work / "parts" / part.name)
    shutil.rmtree(table)
    return sum(pq.read_metadata(work / "parts" / part.name).num_rows for part in kept)


def test_a_killed_run_resumes_from_its_parts_to_the_same_scores(scored):
    config, manifests = scored
    before = pq.read_table(f"{config.run_dir}/scores/selectit").sort_by("id").to_pylist()
    assert len(list(Path(config.run_dir, "scores", "selectit").glob("part-*.parquet"))) >= 3
    kept = leave_as_killed(config.run_dir, "selectit", keep=2)
    again = experiment.run(config, ["score"])["scores/selectit"]
    assert again["resumed"] and again["rows_scored"] == len(before) - kept and again["rows_out"] == len(before)
    after = pq.read_table(f"{config.run_dir}/scores/selectit").sort_by("id").to_pylist()
    for a, b in zip(before, after, strict=True):
        assert a["id"] == b["id"] and a["truncated"] == b["truncated"]
        assert (a["selectit"] is None) == (b["selectit"] is None)
        if a["selectit"] is not None:  # other batch neighbours: float noise only
            assert a["selectit"] == pytest.approx(b["selectit"], abs=1e-5)
            assert sum(a["token_scores"], []) == pytest.approx(sum(b["token_scores"], []), abs=1e-5)
