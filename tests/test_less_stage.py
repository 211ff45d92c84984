"""The LESS scorer in the score stage on a real local Ray: a LoRA warm-up trained by the models
stage on the train stage's Ray Train loop (one TorchTrainer run, ~30 s to start), every epoch's
checkpoint kept with its Adam state, pool rows scored in an actor pool, and the scores
recomputed here from autograd gradients for a sample of rows; then a SQL selection by
`less.less`, a skipped second run, a resumed killed run, a grown pool, and a score stage that
refuses a warm-up built from other settings instead of training one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from test_less import SETTINGS, direct_feature
from test_selectit_stage import leave_as_killed

from pipelines import config as config_module
from pipelines import experiment, runs
from pipelines.ingest.settings import FileSource
from pipelines.models import less_checkpoints
from pipelines.select.columns import selectable
from pipelines.train import checkpoints

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]
GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "3 + 4 = 7\n#### 7"},
    {"question": "A box holds 6 eggs. How many eggs are in 5 boxes?", "answer": "6 * 5 = 30\n#### 30"},
    {"question": "Sara had 20 dollars and spent 8. How much is left?", "answer": "20 - 8 = 12\n#### 12"},
]
LESS_CONFIG = {
    "model": "tiny",
    "warmup": {
        "rows": 16,
        "epochs": 2,
        "global_batch": 4,
        "lr": 1e-3,
        "max_length": 128,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "torch_threads": 1,
    },
    "dim": SETTINGS["dim"],
    "seed": SETTINGS["seed"],
    "max_length": SETTINGS["max_length"],
    "batch_size": 8,
    "rows_per_call": 16,
    "rows_per_part": 16,  # several parts, so a killed run can leave some
    "num_cpus": 0.5,
    "threads": 1,
}


@pytest.fixture(scope="module")
def scored(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("less")
    benchmark = tmp / "gsm8k_test.jsonl"
    benchmark.write_text("".join(json.dumps(row) + "\n" for row in GSM8K_ROWS))
    targets = {"gsm": {"path": str(benchmark), "rows": 2}, "own": {"pool_source": "math", "rows": 3}}
    document = {
        "name": "less-test",
        "run_dir": str(tmp / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {"sources": [{"kind": "mathematics", "name": "math", "rows": 48, "seed": 7}]},
        "models": {"tiny": {"build": {"vocab_size": 400, "train_rows": 48}}},
        "score": {"less": {**LESS_CONFIG, "targets": targets}},
        "select": {"top_less": {"method": "top_k", "score": "less.less", "budget": 5}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    config = config_module.load(path)
    return config, experiment.run(config)


def test_every_epoch_checkpoint_is_kept_with_its_adam_state_and_mean_lr(scored):
    config, manifests = scored
    warm = runs.read_manifest(config.run_dir, "models/less_warmup")
    assert manifests["models/less_warmup"] == warm  # the models stage built it, before score
    assert [c["epoch"] for c in warm["checkpoints"]] == [0, 1] and warm["rows_out"] == 16
    assert [c["step"] for c in warm["checkpoints"]] == [4, 8]  # 16 rows / 4 a step: 4 steps an epoch
    last = Path(config.run_dir, "models", "less_warmup", warm["checkpoints"][-1]["name"])
    history = checkpoints.read_state(str(last))["history"]
    for checkpoint in warm["checkpoints"]:
        folder = Path(config.run_dir, "models", "less_warmup", checkpoint["name"])
        assert (folder / "adapter_config.json").is_file()
        state = checkpoints.read_optimizer(str(folder))["optimizer"]["state"]
        assert all({"exp_avg", "exp_avg_sq"} <= set(moments) for moments in state.values())
        lrs = [row["lr"] for row in history if row["epoch"] == checkpoint["epoch"]]
        assert checkpoint["lr"] == pytest.approx(np.mean(lrs))


def test_scores_equal_the_lr_weighted_mean_cosine_of_autograd_features(scored):
    config, manifests = scored
    pool = {r["id"]: r for r in pq.read_table(f"{config.run_dir}/pool").to_pylist()}
    rows = pq.read_table(f"{config.run_dir}/scores/less").to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(pool) and manifests["scores/less"]["rows_out"] == len(pool)
    assert all((r["less"] is None) == (r["n_loss_tokens"] == 0) for r in rows)  # an answer cut away: no gradient
    assert sum(r["less"] is not None and len(r["less_by_target"]) == 2 for r in rows) > 40
    warm = runs.read_manifest(config.run_dir, "models/less_warmup")
    base = f"{config.run_dir}/models/tiny"
    folders = [f"{config.run_dir}/models/less_warmup/{c['name']}" for c in warm["checkpoints"]]
    lrs = [c["lr"] for c in warm["checkpoints"]]
    target_rows = {
        "gsm": [[("user", r["question"]), ("assistant", r["answer"])] for r in GSM8K_ROWS[:2]],
        "own": _pool_target_rows(config, 3),
    }
    means = {
        name: [np.mean([direct_feature(base, f, row, adam=False) for row in turns], axis=0) for f in folders]
        for name, turns in target_rows.items()
    }
    for row in [r for r in rows if r["less"] is not None][:3]:
        turns = [(m["role"], m["content"]) for m in pool[row["id"]]["messages"]]
        features = [direct_feature(base, f, turns, adam=True) for f in folders]
        by_target = [sum(lr * features[c] @ means[name][c] for c, lr in enumerate(lrs)) for name in ("gsm", "own")]
        assert row["less_by_target"] == pytest.approx(by_target, abs=1e-4)
        assert row["less"] == pytest.approx(max(by_target), abs=1e-4)


def _pool_target_rows(config, n: int):
    from pipelines import views

    connection = views.connect(config.run_dir)
    query = (
        "SELECT messages FROM pool WHERE source = 'math' AND messages[-1].role = 'assistant' "
        "ORDER BY md5('0:' || id) LIMIT $n"
    )
    return [[(m["role"], m["content"]) for m in r[0]] for r in connection.execute(query, {"n": n}).fetchall()]


def test_the_sql_selector_ranks_by_less(scored):
    config, _ = scored
    assert {"less.less", "less.n_loss_tokens", "less.truncated"} <= set(selectable())
    scores = pq.read_table(f"{config.run_dir}/scores/less").to_pylist()
    expected = [r["id"] for r in sorted((r for r in scores if r["less"] is not None), key=lambda r: -r["less"])][:5]
    selected = pq.read_table(f"{config.run_dir}/selections/top_less").sort_by("rank")["id"].to_pylist()
    assert selected == expected


def test_a_second_run_is_skipped_warm_up_included(scored):
    config, manifests = scored
    finished = runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"]
    again = experiment.run(config, ["score"])
    assert again["scores/less"] == manifests["scores/less"]
    assert runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"] == finished


def test_a_killed_run_resumes_from_its_parts_to_the_same_scores(scored):
    config, _ = scored
    finished = runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"]
    before = pq.read_table(f"{config.run_dir}/scores/less").sort_by("id").to_pylist()
    kept = leave_as_killed(config.run_dir, "less", keep=2)
    again = experiment.run(config, ["score"])["scores/less"]
    assert again["resumed"] and again["rows_scored"] == len(before) - kept and again["rows_out"] == len(before)
    assert runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"] == finished
    after = pq.read_table(f"{config.run_dir}/scores/less").sort_by("id").to_pylist()
    for a, b in zip(before, after, strict=True):
        assert a["id"] == b["id"] and a["n_loss_tokens"] == b["n_loss_tokens"]
        assert (a["less"] is None) == (b["less"] is None)
        if a["less"] is not None:
            assert a["less_by_target"] == pytest.approx(b["less_by_target"], abs=1e-6)


def test_a_grown_pool_keeps_the_warm_up_and_scores_only_its_new_rows(scored):
    config, manifests = scored
    finished = runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"]
    new_rows = Path(config.run_dir).parent / "new.jsonl"
    new_rows.write_text(
        "".join(
            json.dumps({"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"}) + "\n"
            for i in range(4)
        )
    )
    sources = [*config.ingest.sources, FileSource(kind="files", name="new", paths=[str(new_rows)])]
    grown = config.model_copy(update={"ingest": config.ingest.model_copy(update={"sources": sources})})
    again = experiment.run(grown, ["ingest", "score"])
    assert again["scores/less"]["rows_scored"] == 4
    assert again["scores/less"]["rows_out"] == manifests["scores/less"]["rows_out"] + 4
    assert runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"] == finished


def test_the_score_stage_refuses_a_warm_up_built_from_other_settings(scored):
    config, _ = scored
    less = config.score.less
    changed = less.model_copy(update={"warmup": less.warmup.model_copy(update={"seed": 1})})
    other = config.model_copy(update={"score": config.score.model_copy(update={"less": changed})})
    finished = runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"]
    with pytest.raises(less_checkpoints.WarmupNotBuilt, match=r"built from other score\.less\.warmup settings"):
        experiment.run(other, ["score"])  # score alone reads the warm-up; it never trains one
    assert runs.read_manifest(config.run_dir, "models/less_warmup")["finished_at"] == finished
