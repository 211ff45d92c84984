"""Other ways to train, each one TorchTrainer run on 2 CPU workers with a tiny model:
the CFT arm with packing under FSDP2, and a LoRA warm-up model that the model_loss scorer uses
(the models stage builds it for a run that scores: test_scorer_warmups.py)."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_train_stage import make_run

from pipelines import runs, storage
from pipelines.critique.examples import cft_turns
from pipelines.train import stage as train_stage
from pipelines.train import warmup
from pipelines.train.settings import TrainConfig
from tests.conftest import cpu_model_loss_settings

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

SMALL = {
    "lr": 1e-3,
    "global_batch": 8,
    "micro_batch": 2,
    "num_workers": 2,
    "cpus_per_worker": 0.5,
    "torch_threads": 1,
}
CFT = {**SMALL, "model": "tiny", "data": "cft", "preset": "cft", "max_length": 512, "packing": True, "fsdp": True}
CFT.update(epochs=3, max_steps=12, checkpoint_every_steps=6)
WARM = {**SMALL, "model": "tiny", "rows": 64, "sample": "random", "max_steps": 8, "max_length": 128}
WARM["lora"] = {"r": 8, "alpha": 16, "dropout": 0.1, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
TRAIN = TrainConfig(arms={"cft": CFT}, warmup={"warm": WARM})


def write_cft(run_dir, rows: int = 120) -> None:
    """The cft table as the critique stage writes it: id, messages, label, question_id."""
    pool = pq.read_table(f"{run_dir}/pool", columns=["id", "messages"]).slice(0, rows).to_pylist()
    table = {"id": [], "messages": [], "label": [], "question_id": []}
    for index, row in enumerate(pool):
        question, answer = row["messages"][0]["content"], row["messages"][-1]["content"]
        right = index % 2 == 0
        solution = answer if right else answer + "0"
        critique = (
            f"The final answer {'matches' if right else 'does not match'}. Conclusion: {'right' if right else 'wrong'}"
        )
        turns = cft_turns(question, solution, critique)
        table["id"].append(f"cft-{index:04d}")
        table["messages"].append([{"role": r, "content": c} for r, c in turns])
        table["label"].append("right" if right else "wrong")
        table["question_id"].append(row["id"])
    storage.write_parquet_atomic(pa.Table.from_pydict(table), f"{run_dir}/cft/part-00000.parquet")
    identity = runs.stage_identity("critique", {"test": True}, {}, 1)
    storage.write_json_atomic({"identity": identity, "rows_out": rows}, f"{run_dir}/cft/_SUCCESS.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local):
    config = make_run(tmp_path_factory.mktemp("variants") / "run")
    write_cft(config.run_dir)
    return config


@pytest.fixture(scope="module")
def cft(run):
    return train_stage.run(run, TRAIN)["models/cft"]


@pytest.fixture(scope="module")
def warm(run):
    return warmup.run(run, TRAIN)["models/warm"]


def test_cft_with_packing_under_fsdp_trains_on_several_examples_a_sequence(run, cft):
    rows = pq.read_table(f"{run.run_dir}/train_metrics/cft").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert sum(r["loss"] for r in rows[-3:]) / 3 < 0.9 * rows[0]["loss"]
    mean_example = cft["examples"]["tokens"] / cft["examples"]["examples"]
    assert min(r["tokens"] for r in rows[:-1]) > 1.5 * 8 * mean_example  # 8 sequences a step, packed
    assert cft["settings"]["fsdp"] and cft["settings"]["global_batch"] == 8 and cft["settings"]["lr"] == 1e-3
    assert cft["settings"]["warmup_ratio"] == 0.1  # from the cft preset
    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(f"{run.run_dir}/models/cft")
    base = AutoModelForCausalLM.from_pretrained(f"{run.run_dir}/models/tiny")
    for (name, mine), (_, theirs) in zip(trained.state_dict().items(), base.state_dict().items(), strict=True):
        assert mine.shape == theirs.shape, name  # whole tensors, gathered from the shards
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters(), strict=True))


def test_a_lora_warmup_model_is_merged_and_scores_ifd(run, warm):
    from pipelines.score.model_loss import ModelLossActor

    folder = f"{run.run_dir}/models/warm"
    assert not os.path.exists(f"{folder}/adapter_config.json") and os.path.exists(f"{folder}/model.safetensors")
    assert warm["rows_in"] == 64 and warm["data"] == "sample:random:64" and warm["steps"] == 8
    assert train_stage.model_ref(run, "warm", TRAIN).location == folder
    settings = cpu_model_loss_settings()
    pool = pq.read_table(f"{run.run_dir}/pool", columns=["id", "messages"]).slice(0, 6)
    scored = ModelLossActor(folder, False, settings).score(pool["messages"].to_pylist(), pool["id"].to_pylist())
    assert all(row["ifd"] is not None and row["ifd"] > 0 for row in scored)
    base = ModelLossActor(f"{run.run_dir}/models/tiny", False, settings).score(
        pool["messages"].to_pylist(), pool["id"].to_pylist()
    )
    assert [r["loss_given_prompt"] for r in scored] != [r["loss_given_prompt"] for r in base]
    assert warmup.ensure(run, "warm", TRAIN)["finished_at"] == warm["finished_at"]  # up to date: skipped


def test_a_scorer_names_a_warmup_model_and_gets_the_trained_one(run, warm):
    """The score stage reads it by path; the models stage built it (here: the fixture did)."""
    from pipelines.models import scorer_models

    config = run.model_copy(update={"train": TRAIN})
    resolved = scorer_models.resolve(config, "warm", "score.model_loss.model")
    assert resolved.location == f"{run.run_dir}/models/warm"
    assert resolved.fingerprint() == train_stage.model_ref(run, "warm", TRAIN).fingerprint()
    assert scorer_models.resolve(config, "tiny", "score.model_loss.model").location == f"{run.run_dir}/models/tiny"
