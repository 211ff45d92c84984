"""The train stage: each arm (and warm-up model) into models/<NAME> and train_metrics/<NAME>.

One run a name, under the stage contract (pipelines/runs.py): its identity is the data's
fingerprint, the resolved settings and the base model's fingerprint, so a finished run is
skipped; a killed run keeps `_work/train-<NAME>/` (prepared data, Ray Train's checkpoints)
and the next attempt resumes from its last checkpoint. Commit moves the chosen checkpoint
(a plain HF folder), the metrics table and the rejects into place, `_SUCCESS.json` last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyarrow as pa

import schemas
from pipelines import runs, storage
from pipelines.models import loading, scorer_models
from pipelines.progress import StageProgress, note
from pipelines.ray_runtime import ensure_ray
from pipelines.train import checkpoints, data, trainer
from pipelines.train.settings import TrainConfig, TrainRun, resolve
from schemas.train import TRAIN_METRICS

STAGE_VERSION = 1


def run(config, train: TrainConfig | None = None) -> dict[str, dict]:
    """Train every arm of `train:` (the config's unless given); returns {models/<ARM>: manifest}."""
    train = train if train is not None else getattr(config, "train", None)
    if train is None:
        return {}
    manifests = {}
    for name, arm in train.arms.items():
        source = Source(arm.data, lambda arm=arm: data.fingerprint(config.run_dir, arm.data), None)
        manifests[f"models/{name}"] = run_one(config, train, f"train-{name}", name, arm, source)
    return manifests


class Source:
    """Where a run's rows come from: a data reference, its fingerprint, and (for samples) the rows."""

    def __init__(self, reference: str, fingerprint: Callable[[], dict], records: Callable[[], Iterator] | None):
        self.reference, self.fingerprint, self.records = reference, fingerprint, records


def model_ref(config, name: str, train: TrainConfig | None = None) -> loading.ModelRef:
    """A base model by name: a `models:` entry, an arm or warm-up model of this run, or a path."""
    if scorer_models.run_model(config, name, train) is not None:  # the scorers read a name by the same rule
        if runs.read_manifest(config.run_dir, f"models/{name}") is None:
            raise RuntimeError(f"model {name!r} is not trained yet in {config.run_dir}")
        return loading.ModelRef(storage.join(config.run_dir, "models", name))
    return loading.resolve(name, config.models, config.run_dir)


def run_one(config, train: TrainConfig, stage_name: str, name: str, run: TrainRun, source: Source) -> dict:
    if name in config.models:
        raise ValueError(f"train: {name!r} is also a `models:` entry; both would write models/{name}")
    settings = resolve(run)
    ref = model_ref(config, run.model, train)
    inputs = {"data": source.fingerprint(), "model": ref.fingerprint()}
    identity = runs.stage_identity(stage_name, {"data": source.reference, **settings}, inputs, STAGE_VERSION)
    stage = runs.StageRun(config.run_dir, stage_name, f"models/{name}", identity)
    if (manifest := stage.finished()) is not None:
        note(f"{stage_name}: up to date; skipped")
        return manifest
    resumed = stage.open_work()
    prepared = _prepared(config.run_dir, stage, source, settings)
    ensure_ray(config.ray)
    trainer.check_resources(settings)
    resume_step = trainer.registered_step(stage.work_dir) if resumed else None
    note(
        f"{stage_name}: {sum(prepared.shard_rows):,} examples on {settings['num_workers']} workers, "
        + (f"resuming at step {resume_step}" if resume_step else "starting")
        + f"; checkpoints in {stage.work_dir}"
    )
    with StageProgress(stage_name, settings["max_steps"], "steps") as progress:
        result = trainer.fit(
            settings, prepared, ref.location, ref.trust_remote_code, stage.work_dir, progress.counter()
        )
    outcome = trainer.choose(result, settings)
    export_dir = storage.join(stage.work_dir, "export")
    storage.remove(export_dir, within=stage.run_dir)
    with outcome.latest.as_directory() as folder:
        state = checkpoints.read_state(folder)
    with outcome.chosen.as_directory() as folder:
        chosen_step = checkpoints.read_state(folder)["step"]
        checkpoints.export(folder, export_dir, ref.location, ref.trust_remote_code)
    metrics_dir = storage.join(stage.work_dir, "metrics")
    history = _write_metrics(state["history"], metrics_dir)
    manifest = {
        "rows_in": prepared.rows_read,
        "rows_out": sum(prepared.shard_rows),
        "rows_rejected": prepared.rows_rejected,
        "rows_validation": prepared.rows_validation,
        "data": source.reference,
        "base_model": ref.location,
        "settings": settings,
        "steps": state["step"],
        "attempts": len({row["start_step"] for row in state["history"]}),
        "tokens_trained": int(sum(row["tokens"] for row in state["history"])),
        "loss_tokens_trained": int(sum(row["loss_tokens"] for row in state["history"])),
        "examples": state["data"],
        "final_loss": history[-1]["loss"] if history else None,
        "checkpoint_step": chosen_step,
        "checkpoints": outcome.checkpoints,
        "cpu_seconds": round(stage.driver_cpu_seconds() + state["cpu_seconds"], 3),
        "gpu_seconds": round(state["gpu_seconds"], 3),
    }
    outputs = {
        f"models/{name}": export_dir,
        f"train_metrics/{name}": metrics_dir,
        f"rejects/{stage_name}": data.rejects_dir(stage.work_dir),
    }
    committed = stage.commit(outputs, manifest)
    note(f"{stage_name}: {state['step']} steps, final loss {manifest['final_loss']:.4f}; models/{name} written")
    return committed


def _prepared(run_dir: str, stage: runs.StageRun, source: Source, settings: dict) -> data.Prepared:
    """The checked, sharded data; reused from an earlier attempt of the same identity."""
    marker = storage.join(stage.work_dir, "prepared.json")
    if storage.exists(marker):
        return data.Prepared(**storage.read_json(marker))
    prepared = data.prepare(
        run_dir,
        source.reference,
        stage.work_dir,
        stage.stage,
        settings["num_workers"],
        settings["validation_rows"],
        settings["seed"],
        records=source.records() if source.records else None,
    )
    storage.write_json_atomic(prepared.to_json(), marker)
    return prepared


def _write_metrics(history: list[dict], metrics_dir: str) -> list[dict]:
    rows = sorted(history, key=lambda row: row["step"])
    table = pa.Table.from_pylist(rows, schema=TRAIN_METRICS)
    schemas.check("train_metrics", table, TRAIN_METRICS)
    storage.write_parquet_atomic(table, storage.join(metrics_dir, "part-00000.parquet"))
    return rows
