"""The LESS warm-up, built by the models stage: a LoRA fine-tune on a sample of the pool,
every epoch's checkpoint kept.

It is a training job, so it runs where models are built (pipelines/models/stage.py, after the
`models:` entries, one of which may be its base) and not inside the score stage: the LESS
scorer only reads the checkpoints by path (pipelines/models/less_checkpoints.py). It is
configured by the `score.less.warmup` block, the recipe LESS's scores depend on, and built
only when `score.less` is configured.

It trains with the train stage's own Ray Train loop (pipelines/train: trainer.fit, the same
data checks, masking and resume) with a checkpoint at the end of every epoch, and keeps all of
them with their optimizer state (train_state/optimizer.pt: Adam's m and v), which LESS needs
and an arm's export drops. The table `models/less_warmup/` holds one folder a checkpoint,
`step-<N>/` (the LoRA adapter, tokenizer, train_state/), and a manifest listing each with its
step, epoch and `lr`: the mean learning rate of the steps since the previous checkpoint.

Its identity is its settings and the base model, not the pool: a pool that grows keeps the
warm-up model (5% of the pool as it was) and LESS scores only the new rows. Delete the table,
or change the seed, to train it again. A killed warm-up resumes from its last checkpoint.
"""

from __future__ import annotations

import math

from pipelines import runs, storage
from pipelines.models import less_checkpoints
from pipelines.progress import note
from pipelines.ray_runtime import ensure_ray
from pipelines.train import data, trainer, warmup
from pipelines.train.settings import TrainRun, WarmupConfig, resolve

TABLE = less_checkpoints.TABLE


def build(config, settings) -> dict:
    """The warm-up's manifest for `settings` (score.less), training it first unless it is up to date."""
    warm = settings.warmup
    base = less_checkpoints.base_model(config, settings)
    identity = less_checkpoints.identity(config, settings)
    stage = runs.StageRun(config.run_dir, less_checkpoints.STAGE, TABLE, identity)
    if (manifest := stage.finished()) is not None:
        note("less warm-up: up to date; skipped")
        return manifest
    pool = runs.read_manifest(config.run_dir, "pool")
    if pool is None:
        raise RuntimeError(f"less warm-up: the pool is not finished in {config.run_dir}; run ingest first")
    resumed = stage.open_work()
    n_rows = warm.rows or max(1, math.ceil(warm.fraction * pool["rows_out"]))
    prepared = _prepared(config.run_dir, stage, warm, n_rows)
    run_settings = train_settings(warm, base.location, prepared)
    ensure_ray(config.ray)  # the loop runs on Ray Train; a skipped warm-up starts no Ray
    trainer.check_resources(run_settings)
    how = "resuming" if resumed else "training"
    note(f"less warm-up: {how} a LoRA on {sum(prepared.shard_rows):,} pool rows for {warm.epochs} epochs")
    result = trainer.fit(run_settings, prepared, base.location, base.trust_remote_code, stage.work_dir)
    export_dir = storage.join(stage.work_dir, "export")
    storage.remove(export_dir, within=config.run_dir)
    kept = _export(result, export_dir)
    manifest = {
        "rows_in": prepared.rows_read,
        "rows_out": sum(prepared.shard_rows),
        "rows_rejected": prepared.rows_rejected,
        "base_model": base.location,
        "pool": pool["identity"],  # the pool the sample was drawn from
        "settings": run_settings,
        "checkpoints": kept,
        "cpu_seconds": round(stage.driver_cpu_seconds(), 3),
    }
    return stage.commit({TABLE: export_dir}, manifest)


def train_settings(warm, base: str, prepared: data.Prepared) -> dict:
    """The train loop's flat settings: the warm-up's recipe, a checkpoint at every epoch's end."""
    rows_per_step = warm.global_batch // warm.num_workers
    steps_per_epoch = max(math.ceil(rows / rows_per_step) for rows in prepared.shard_rows)
    keys = ("lr", "epochs", "global_batch", "micro_batch", "max_length", "warmup_ratio", "weight_decay", "lora")
    keys += ("template", "precision", "gradient_checkpointing", "num_workers", "cpus_per_worker", "torch_threads")
    keys += ("use_gpu", "seed")
    run = TrainRun(
        model=base,
        **{key: getattr(warm, key) for key in keys},
        checkpoint_every_steps=steps_per_epoch,
        keep_checkpoints=warm.epochs,
    )
    return resolve(run)


def _prepared(run_dir: str, stage: runs.StageRun, warm, n_rows: int) -> data.Prepared:
    """The sampled rows, checked and sharded (reused by a resumed attempt)."""
    marker = storage.join(stage.work_dir, "prepared.json")
    if storage.exists(marker):
        return data.Prepared(**storage.read_json(marker))
    sample = WarmupConfig(model="-", rows=n_rows, sample="random", seed=warm.seed)
    records = warmup.sample(run_dir, sample)
    reference = f"sample:random:{n_rows}"
    prepared = data.prepare(run_dir, reference, stage.work_dir, stage.stage, warm.num_workers, 0, warm.seed, records)
    storage.write_json_atomic(prepared.to_json(), marker)
    return prepared


def _export(result, export_dir: str) -> list[dict]:
    """Copy every kept checkpoint (adapter + optimizer state) into the table; their lr weights."""
    import pyarrow.fs as pafs

    from pipelines.train import checkpoints

    found = []
    for checkpoint, _ in result.best_checkpoints:
        with checkpoint.as_directory() as folder:
            state = checkpoints.read_state(folder)
            name = f"step-{state['step']:07d}"
            filesystem, path = storage.resolve(storage.join(export_dir, name))
            pafs.copy_files(folder, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=filesystem)
            found.append((state["step"], name, state["history"]))
    found.sort()
    kept, previous = [], 0
    for step, name, history in found:
        covered = [row for row in history if previous < row["step"] <= step]
        lr = sum(row["lr"] for row in covered) / len(covered)
        kept.append({"name": name, "step": step, "epoch": covered[-1]["epoch"], "lr": lr})
        previous = step
    return kept
