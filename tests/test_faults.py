"""Stages on a 3-node Ray cluster (tests/cluster.py) with a worker node SIGKILLed mid-stage.

Per stage, once: a clean run, then the same run with the node that holds the stage's work
killed at a random point (set WINNOW_FAULT_SEED to replay one; the drawn one is printed)
and a replacement node added; the tables must equal the clean run's. Last, every worker is
lost and none comes back: the stage fails within ray.capacity_wait_s, naming the node.
Each test prints a `fault report` line: the kill point, the node, what was redone.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml

from tests.cluster import LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

ROWS = 600
PART_ROWS = 40  # 15 model-loss parts: room for a kill between them
TINY_VLLM = {"kind": "vllm", "model": "tiny", "dtype": "float32", "max_model_len": 1024, "cpu_kv_cache_gib": 1}
TEACHER = {**TINY_VLLM, "concurrency": 2, "batch_size": 4, "rows_per_part": 4, "threads": 1}
ARM = {
    "model": "tiny",
    "lr": 1e-3,
    "epochs": 1,
    "global_batch": 8,
    "micro_batch": 2,
    "max_length": 96,
    "num_workers": 2,
    "cpus_per_worker": 1,
    "torch_threads": 1,
    "max_steps": 16,
    "checkpoint_every_steps": 4,
    "max_failures": 2,
}


def _document(run_dir, pool_dir, capacity_wait_s=None) -> dict:
    return {
        "name": "faults",
        "run_dir": str(run_dir),
        "ray": {"capacity_wait_s": capacity_wait_s} if capacity_wait_s else {},
        "ingest": {"sources": [{"kind": "mathematics", "name": "mathematics", "rows": ROWS, "seed": 5}]},
        "models": {"tiny": {"build": {"vocab_size": 400, "train_rows": 400}}},
        "score": {
            "compression": {"rows_per_part": PART_ROWS},
            "model_loss": {
                "model": "tiny",
                "max_length": 64,
                "rows_per_call": PART_ROWS,
                "rows_per_part": PART_ROWS,
                "batch_size": 8,
                "concurrency": 2,
                "threads": 1,
            },
        },  # fmt: skip
        "critique": {
            "questions": {"sources": ["mathematics"], "require_reference": True, "limit": 24},
            "candidates": "pool",
            "teacher": {"engine": TEACHER, "sampling": {"temperature": 0, "max_tokens": 24}},
        },
        "train": {"arms": {"sft": {**ARM, "data": f"{pool_dir}/*.parquet"}}},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    cluster.add_worker("worker-1")
    cluster.add_worker("worker-2")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def base(cluster, tmp_path_factory):
    """A run folder with the pool and the tiny model, made by a job on the cluster."""
    folder = tmp_path_factory.mktemp("base")
    code, output = _job(cluster, _write(folder, "base", _document(folder / "run", folder / "run" / "pool")), "ingest")
    assert code == 0, output[-4000:]
    code, output = _job(cluster, folder / "base.yaml", "models")
    assert code == 0, output[-4000:]
    return folder / "run"


def _write(folder, name, document):
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _job(cluster, config, stage, kill=None, timeout=400):
    """Run one stage as a job; `kill(process)` runs beside it (it kills and adds a node)."""
    log = config.with_suffix(f".{stage}.log")
    process = cluster.submit(config, [stage], log)
    try:
        outcome = kill(process) if kill else None
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            cluster.end_job(process)
    return (process.returncode, log.read_text(), outcome) if kill else (process.returncode, log.read_text())


def _copy(base, tmp_path, name, capacity_wait_s=None):
    """A run folder of its own with the base's pool and model (finished: skipped)."""
    shutil.copytree(base, tmp_path / name)
    return _write(tmp_path, name, _document(tmp_path / name, base / "pool", capacity_wait_s)), tmp_path / name


def _seeded(what: str) -> random.Random:
    seed = int(os.environ.get("WINNOW_FAULT_SEED", random.randrange(10**6)))
    print(f"{what}: fault seed {seed}")
    return random.Random(seed)


def _wait_until(process, condition, what):
    while not condition():
        assert process.poll() is None, f"the stage ended before {what}"
        time.sleep(0.05)


def _replace(cluster, victim):
    cluster.kill(victim)
    return cluster.add_worker(f"{victim.name}-new")


def _files(folder, pattern="part-*.parquet"):
    return sorted(folder.glob(pattern)) if folder.exists() else []


def _redone(output: str, what: str) -> int:
    """Units the stage did again after the loss, as its progress line says (0: none said)."""
    said = re.findall(rf"([\d,]+) {what} redone after a lost worker or node", output)
    return sum(int(count.replace(",", "")) for count in said)


def _same_rows(ours, clean, floats_abs=1e-5):
    assert len(ours) == len(clean) and len({r["id"] for r in ours}) == len(ours)
    for a, b in zip(ours, clean, strict=True):
        for key, value in a.items():
            if isinstance(value, float):  # other batch groupings: float noise only
                assert value == pytest.approx(b[key], abs=floats_abs), key
            else:
                assert value == b[key], key


def test_score_survives_a_lost_node(cluster, base, tmp_path):
    draw = _seeded("score")
    scorer, parts = draw.choice([("compression", draw.randint(1, 8)), ("model_loss", draw.randint(1, 8))])
    clean_config, clean_dir = _copy(base, tmp_path, "clean")
    assert _job(cluster, clean_config, "score")[0] == 0
    config, run_dir = _copy(base, tmp_path, "faulted")
    parts_dir = run_dir / "_work" / f"score-{scorer}" / "parts"

    def kill(process):
        _wait_until(process, lambda: len(_files(parts_dir)) >= parts, f"{parts} {scorer} parts")
        hosts = cluster.nodes_running("ModelLossActor") if scorer == "model_loss" else []
        victim = hosts[0] if hosts else draw.choice(cluster.workers())
        before = {p.name: p.stat().st_mtime_ns for p in _files(parts_dir)}
        return victim.name, before, _replace(cluster, victim).name

    code, output, (victim, before, replacement) = _job(cluster, config, "score", kill)
    assert code == 0, output[-4000:]
    rewritten = [p for p in _files(parts_dir) if p.stat().st_mtime_ns != before.get(p.name, p.stat().st_mtime_ns)]
    report = {"kill_after_parts": [scorer, parts], "node": victim, "replacement": replacement}
    report.update(parts_before_kill=len(before), parts_rewritten=len(rewritten), seen=f"lost node {victim}" in output)
    report["rows_redone"] = _redone(output, "rows")
    print("fault report score", json.dumps(report))
    for name in ("compression", "model_loss"):
        assert json.loads((run_dir / "scores" / name / "_SUCCESS.json").read_text())["rows_out"] == ROWS
        ours = pq.read_table(run_dir / "scores" / name).sort_by("id").to_pylist()
        _same_rows(ours, pq.read_table(clean_dir / "scores" / name).sort_by("id").to_pylist())


def test_critique_loses_no_prompt_and_answers_none_twice(cluster, base, tmp_path):
    draw = _seeded("critique")
    parts = draw.randint(1, 3)  # of 6 teacher parts (24 candidates, 4 a part)
    clean_config, clean_dir = _copy(base, tmp_path, "clean")
    assert _job(cluster, clean_config, "critique")[0] == 0
    config, run_dir = _copy(base, tmp_path, "faulted")
    generations = run_dir / "generations" / "critique-teacher"

    def kill(process):
        _wait_until(process, lambda: len(_files(generations, "attempt-*/part-*.parquet")) >= parts, "teacher parts")
        victim = cluster.nodes_running("VllmGenerator")[0]
        return victim.name, _replace(cluster, victim).name

    code, output, (victim, replacement) = _job(cluster, config, "critique", kill)
    assert code == 0, output[-4000:]
    # One attempt folder (no compaction): every completion written exactly once in it.
    written = pq.read_table(_files(generations, "attempt-*/part-*.parquet")).to_pylist()
    counts = Counter((row["request_id"], row["completion_index"]) for row in written)
    report = {"kill_after_parts": parts, "node": victim, "replacement": replacement}
    print("fault report critique", json.dumps({**report, "completions_redone": _redone(output, "completions")}))
    assert set(counts.values()) == {1} and len(counts) == 24
    assert all(row["status"] == "ok" and row["attempts"] == 1 for row in written)
    for table in ("candidates", "critiques"):
        ours = pq.read_table(run_dir / table).sort_by("id").to_pylist()
        _same_rows(ours, pq.read_table(clean_dir / table).sort_by("id").to_pylist())


def test_training_resumes_from_the_last_checkpoint_on_a_new_node(cluster, base, tmp_path):
    from pipelines.train import trainer

    draw = _seeded("train")
    after_step = draw.choice([4, 8])
    clean_config, clean_dir = _copy(base, tmp_path, "clean")
    assert _job(cluster, clean_config, "train")[0] == 0
    config, run_dir = _copy(base, tmp_path, "faulted")
    work = str(run_dir / "_work" / "train-sft")

    def kill(process):
        def checkpointed():
            return os.path.isdir(f"{work}/ray") and (trainer.registered_step(work) or 0) >= after_step

        _wait_until(process, checkpointed, f"a checkpoint of step {after_step}")
        rank = json.loads((run_dir / "_work" / "train-sft" / "workers" / "rank-1.json").read_text())
        victim = cluster.node_of(rank["pid"])
        return victim.name, trainer.registered_step(work), _replace(cluster, victim).name

    code, output, (victim, registered, replacement) = _job(cluster, config, "train", kill)
    assert code == 0, output[-4000:]
    rows = pq.read_table(run_dir / "train_metrics" / "sft").to_pylist()
    clean = pq.read_table(clean_dir / "train_metrics" / "sft").to_pylist()
    resumed_from = max(r["start_step"] for r in rows)
    report = {"kill_after_checkpoint": registered, "node": victim, "replacement": replacement}
    report.update(resumed_from=resumed_from, steps_redone=_redone(output, "steps"))
    print("fault report train", json.dumps(report))
    assert [r["step"] for r in rows] == [r["step"] for r in clean] == list(range(1, 17))
    assert registered <= resumed_from < 16 and resumed_from % 4 == 0
    assert all(r["start_step"] == (0 if r["step"] <= resumed_from else resumed_from) for r in rows)
    for mine, theirs in zip(rows, clean, strict=True):  # the same data order, step for step
        assert (mine["tokens"], mine["loss_tokens"]) == (theirs["tokens"], theirs["loss_tokens"])
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-6)


def test_no_capacity_back_fails_naming_the_lost_node(cluster, base, tmp_path):
    """Every worker is lost and none comes back: the job fails after capacity_wait_s."""
    for index in range(2 - len(cluster.workers())):  # the workers the other tests left
        cluster.add_worker(f"worker-{index + 3}")
    config, run_dir = _copy(base, tmp_path, "stranded", capacity_wait_s=5)
    parts_dir = run_dir / "_work" / "score-model_loss" / "parts"

    def kill(process):
        _wait_until(process, lambda: len(_files(parts_dir)) >= 1, "a model-loss part")
        for node in cluster.workers():
            cluster.kill(node)

    code, output, _ = _job(cluster, config, "score", kill, timeout=180)
    assert code != 0
    assert "CapacityLost" in output and "capacity_wait_s" in output
    assert "score model_loss: lost node worker-" in output
