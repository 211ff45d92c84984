"""Ray Train wiring for one run: datasets, TorchTrainer, configs from the settings, the choice.

- Data: each worker gets its own Ray Data dataset, `shard-<rank>` (its shard file, read and
  tokenized by Ray Data tasks), through `get_dataset_shard`; none is split by Ray, because
  streaming_split hands blocks to whichever worker asks first, and a restarted worker must
  get the same rows back (see data.py and plan.py).
- ScalingConfig from num_workers / use_gpu / cpus_per_worker; RunConfig with storage inside
  the stage's work folder (a local path, or the run_dir URI on a cluster), a fixed name so a
  re-run finds the checkpoints of a killed one; FailureConfig (pipelines/fault_tolerance.py); CheckpointConfig
  keeping the best `keep` by the selection metric, or the latest `keep_checkpoints`.
- Validation: Ray Train's ValidationConfig runs the configured function on every checkpoint
  in its own task while training goes on; fit() returns after the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import storage
from pipelines.train import data, loop, masking, validate

DATA_CPUS = 0  # read-and-tokenize tasks run while the workers wait for their shards, on their CPUs
ROWS_PER_READ = 2048  # rows a read task (whole row groups of 1,024)


@dataclass
class Outcome:
    chosen: object  # the ray.train.Checkpoint that becomes models/<ARM>
    latest: object  # the last checkpoint: it holds the whole metrics history
    checkpoints: list[dict]  # metrics of every kept checkpoint


def registered_step(work_dir: str) -> int | None:
    """The step of the latest checkpoint Ray Train has registered (what a resumed run starts
    from), from the snapshot it keeps in storage; None before the first one."""
    snapshot = storage.join(work_dir, "ray", "checkpoint_manager_snapshot.json")
    if not storage.exists(snapshot):
        return None
    latest = storage.read_json(snapshot).get("latest_checkpoint_result")
    return int(latest["checkpoint_dir_name"].removeprefix("step-")) if latest else None


def check_resources(settings: dict) -> None:
    """Fail fast, naming the keys, where the run could never be scheduled (it would hang)."""
    import ray

    available = ray.cluster_resources()
    need = settings["num_workers"] * settings["cpus_per_worker"]
    if need > available.get("CPU", 0):
        raise ValueError(
            f"num_workers x cpus_per_worker = {settings['num_workers']} x {settings['cpus_per_worker']} "
            f"> the cluster's {available.get('CPU', 0)} CPUs; lower cpus_per_worker or num_workers"
        )
    if settings["use_gpu"] and available.get("GPU", 0) < settings["num_workers"]:
        gpus = available.get("GPU", 0)
        raise ValueError(f"use_gpu with {settings['num_workers']} workers, but the cluster has {gpus} GPUs")


def datasets(prepared: data.Prepared, model: str, trust_remote_code: bool, settings: dict) -> dict:
    """`shard-<rank>`: the worker's file, read by row groups and tokenized, by Ray Data tasks.

    The project's row-group source rather than read_parquet: the latter lists files in a task
    that needs a whole CPU, which the training workers may all hold (it then never runs)."""
    import ray.data

    from pipelines import fault_tolerance
    from pipelines.score.source import RowGroups

    retries = fault_tolerance.task_options()  # a restarted worker group reads its shard again
    tokenize = {
        "location": model,
        "trust_remote_code": trust_remote_code,
        "template": settings["template"],
        "max_length": settings["max_length"],
    }
    shards = {}
    for rank, location in enumerate(prepared.shards):
        source = RowGroups([location], ["id", "messages"], ROWS_PER_READ)
        dataset = ray.data.read_datasource(
            source, num_cpus=DATA_CPUS, override_num_blocks=source.num_tasks(), ray_remote_args=retries
        )
        shards[f"shard-{rank}"] = dataset.map_batches(
            masking.encode_batch,
            batch_format="pyarrow",
            batch_size=256,
            fn_kwargs=tokenize,
            num_cpus=DATA_CPUS,
            **retries,
        )
    return shards


def validation_config(settings: dict, prepared: data.Prepared, model: str, trust_remote_code: bool):
    from ray.train import ValidationConfig, ValidationTaskConfig

    select = settings["select_checkpoint"]
    if select is None:
        return None
    if select["validation"]:
        function, kwargs = validate.import_callable(select["validation"]), dict(select["validation_kwargs"])
    else:
        function = validate.held_out_loss
        kwargs = {
            "rows": prepared.validation,
            "base": model,
            "trust_remote_code": trust_remote_code,
            "template": settings["template"],
            "max_length": settings["max_length"],
            "threads": max(1, int(select["num_cpus"])),
        }
    return ValidationConfig(
        fn=function,
        task_config=ValidationTaskConfig(fn_kwargs=kwargs, timeout_s=select["timeout_s"]),
        ray_remote_kwargs={"num_cpus": select["num_cpus"], "num_gpus": select["num_gpus"]},
    )


def fit(settings: dict, prepared: data.Prepared, model: str, trust_remote_code: bool, work_dir: str, progress=None):
    """Train (or resume) on Ray Train; returns the Result. `progress`: a StageProgress counter
    that rank 0 adds each finished step to."""
    from ray.train import CheckpointConfig, DataConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipelines import fault_tolerance

    select = settings["select_checkpoint"]
    resources = {"CPU": settings["cpus_per_worker"], **({"GPU": 1} if settings["use_gpu"] else {})}
    checkpointing = CheckpointConfig(
        num_to_keep=select["keep"] if select else settings["keep_checkpoints"],
        checkpoint_score_attribute=select["metric"] if select else None,
        checkpoint_score_order=select["mode"] if select else "max",
    )
    validation = validation_config(settings, prepared, model, trust_remote_code)
    trainer = TorchTrainer(
        loop.train_loop,
        train_loop_config={
            "settings": settings,
            "model": model,
            "trust_remote_code": trust_remote_code,
            "workers_dir": storage.join(work_dir, "workers"),
            "validate": validation is not None,
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=settings["num_workers"], use_gpu=settings["use_gpu"], resources_per_worker=resources
        ),
        run_config=RunConfig(
            name="ray",
            storage_path=work_dir,
            failure_config=fault_tolerance.train_failure_config(settings["max_failures"]),
            checkpoint_config=checkpointing,
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
        datasets=datasets(prepared, model, trust_remote_code, settings),
        dataset_config=DataConfig(datasets_to_split=[]),
        validation_config=validation,
    )
    with fault_tolerance.capacity_guard("train"):  # a lost node's workers wait for a new one
        return trainer.fit()


def choose(result, settings: dict) -> Outcome:
    """The best checkpoint by the selection metric (those whose validation failed are out),
    else the latest."""
    kept = [metrics for _, metrics in result.best_checkpoints]
    select = settings["select_checkpoint"]
    if select is None:
        return Outcome(result.checkpoint, result.checkpoint, kept)
    scored = [(c, m) for c, m in result.best_checkpoints if isinstance(m.get(select["metric"]), int | float)]
    if not scored:
        raise RuntimeError(
            f"no checkpoint has the metric {select['metric']!r}; validation failed or returned other keys: {kept}"
        )
    best = (min if select["mode"] == "min" else max)(scored, key=lambda pair: pair[1][select["metric"]])
    return Outcome(best[0], result.checkpoint, kept)
