"""The train stage on 2 CPU workers (gloo) with a tiny model: an SFT arm with checkpoint choice
by validation loss, then the same arm with a worker killed mid-run (a real SIGKILL).

Two TorchTrainer runs in all (about 30 s each to start here), shared by the tests below.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import runs, storage, views
from pipelines.config import ExperimentConfig
from pipelines.ingest import stage as ingest_stage
from pipelines.models import stage as models_stage
from pipelines.train import stage as train_stage
from pipelines.train import trainer
from pipelines.train.settings import TrainConfig
from tests.conftest import cpu_model_loss_settings

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

ARM = {
    "model": "tiny",
    "data": "selection:random",
    "lr": 1e-3,
    "epochs": 4,
    "global_batch": 8,
    "micro_batch": 2,
    "max_length": 128,
    "warmup_ratio": 0.1,
    "num_workers": 2,
    "cpus_per_worker": 0.5,
    "torch_threads": 1,
    "max_steps": 48,
    "validation_rows": 16,
}
SELECTED = {**ARM, "checkpoint_every_steps": 16, "select_checkpoint": {"keep": 2, "num_cpus": 0.25}}
KILLED = {**ARM, "checkpoint_every_steps": 4, "max_failures": 2}


def make_run(run_dir, pool_rows: int = 400) -> ExperimentConfig:
    """A run folder with a real ingested pool and the small-model kit's tiny model."""
    config = ExperimentConfig(
        name="train-test",
        run_dir=str(run_dir),
        ingest={"sources": [{"kind": "mathematics", "name": "math", "rows": pool_rows, "seed": 3}]},
        models={"tiny": {"build": {"vocab_size": 400, "hidden_size": 64, "intermediate_size": 128}}},
    )
    ingest_stage.run(config)
    models_stage.run(config)
    return config


def write_selection(run_dir, name: str, size: int) -> list[str]:
    """selections/<name> as the select stage writes it (id, rank; a manifest), first `size` ids."""
    ids = sorted(pq.read_table(f"{run_dir}/pool", columns=["id"])["id"].to_pylist())[:size]
    table = pa.table({"id": ids, "rank": pa.array(range(1, size + 1), pa.int32())})
    storage.write_parquet_atomic(table, f"{run_dir}/selections/{name}/part-00000.parquet")
    identity = runs.stage_identity(f"select-{name}", {"method": "test"}, {}, 1)
    storage.write_json_atomic({"identity": identity, "rows_out": size}, f"{run_dir}/selections/{name}/_SUCCESS.json")
    return ids


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local):
    config = make_run(tmp_path_factory.mktemp("train") / "run")
    write_selection(config.run_dir, "random", 160)
    return config


@pytest.fixture(scope="module")
def selected(run):
    started = time.perf_counter()
    manifest = train_stage.run(run, TrainConfig(arms={"sft": SELECTED}))["models/sft"]
    return manifest, time.perf_counter() - started


@pytest.fixture(scope="module")
def killed(run, selected):
    """The same arm, but worker rank 1 is SIGKILLed once Ray Train has registered a checkpoint
    of step 8 or later; Ray Train restarts the workers and the loop resumes from it."""
    work = f"{run.run_dir}/_work/train-sft_killed"
    seen: dict = {}

    def kill_when_checkpointed():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            step = trainer.registered_step(work) if os.path.isdir(f"{work}/ray") else None
            if step is not None and step >= 8:
                worker = storage.read_json(f"{work}/workers/rank-1.json")
                os.kill(worker["pid"], signal.SIGKILL)
                seen.update(worker, registered_step=step)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_when_checkpointed, daemon=True)
    thread.start()
    manifest = train_stage.run(run, TrainConfig(arms={"sft_killed": KILLED}))["models/sft_killed"]
    thread.join(timeout=1)
    return manifest, seen


def metrics(run, arm: str) -> list[dict]:
    return pq.read_table(f"{run.run_dir}/train_metrics/{arm}").to_pylist()


def test_loss_falls_and_every_step_has_a_metrics_row(run, selected):
    manifest, _ = selected
    rows = metrics(run, "sft")
    assert [r["step"] for r in rows] == list(range(1, 49)) and manifest["steps"] == 48
    assert sum(r["loss"] for r in rows[-4:]) / 4 < 0.8 * rows[0]["loss"]
    assert all(r["tokens"] > r["loss_tokens"] > 0 and r["seconds"] > 0 and r["start_step"] == 0 for r in rows)
    assert rows[0]["lr"] < rows[4]["lr"] and rows[-1]["lr"] < rows[10]["lr"]  # warm-up, then cosine decay
    assert manifest["tokens_trained"] == sum(r["tokens"] for r in rows)
    assert manifest["rows_in"] == 160 and manifest["rows_out"] == 144 and manifest["rows_validation"] == 16
    assert manifest["examples"]["examples"] == 144 and manifest["cpu_seconds"] > 0 and manifest["gpu_seconds"] == 0
    assert "train_metrics_sft" in views.views(views.connect(run.run_dir))


def test_the_checkpoint_with_the_lowest_validation_loss_becomes_the_model(selected):
    manifest, _ = selected
    validated = [c for c in manifest["checkpoints"] if "val_loss" in c]
    assert len(validated) >= 2 and len(manifest["checkpoints"]) <= 3  # keep 2 best (+ the latest)
    best = min(validated, key=lambda c: c["val_loss"])
    assert manifest["checkpoint_step"] == best["step"]


def test_the_model_is_a_plain_hf_folder_the_model_loss_scorer_loads(run, selected):
    from transformers import AutoModelForCausalLM

    from pipelines.score.model_loss import ModelLossActor

    folder = f"{run.run_dir}/models/sft"
    assert not os.path.exists(f"{folder}/train_state") and os.path.exists(f"{folder}/_SUCCESS.json")
    AutoModelForCausalLM.from_pretrained(folder)
    settings = cpu_model_loss_settings()
    pool = pq.read_table(f"{run.run_dir}/pool", columns=["id", "messages"]).slice(0, 4)
    scored = ModelLossActor(folder, False, settings).score(pool["messages"].to_pylist(), pool["id"].to_pylist())
    assert all(row["loss_given_prompt"] > 0 for row in scored)


def test_a_finished_arm_is_skipped(run, selected):
    manifest, _ = selected
    started = time.perf_counter()
    again = train_stage.run(run, TrainConfig(arms={"sft": SELECTED}))["models/sft"]
    assert again["finished_at"] == manifest["finished_at"] and time.perf_counter() - started < 10


def test_a_killed_worker_resumes_from_the_last_checkpoint_and_trains_the_same_steps(run, selected, killed):
    manifest, seen = killed
    assert seen, "the run finished before a checkpoint was registered: nothing was killed"
    rows = metrics(run, "sft_killed")
    assert [r["step"] for r in rows] == list(range(1, 49)) and manifest["steps"] == 48
    resumed_from = max(r["start_step"] for r in rows)
    assert {r["start_step"] for r in rows} == {0, resumed_from} and manifest["attempts"] == 2
    assert seen["registered_step"] <= resumed_from < 48 and resumed_from % 4 == 0
    assert all(r["start_step"] == (0 if r["step"] <= resumed_from else resumed_from) for r in rows)
    # The resumed run computes exactly what the uninterrupted one did, step by step.
    uninterrupted = metrics(run, "sft")
    for mine, theirs in zip(rows, uninterrupted, strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
        assert mine["tokens"] == theirs["tokens"]
