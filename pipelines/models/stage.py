"""The models stage: build each `models:` entry that has `build:` or `gguf:` into
RUN/models/<name>, then the scorers' warm-up models when the run scores.

The warm-ups (pipelines/models/scorer_warmups.py: LESS's LoRA, a `train.warmup` model that
score.model_loss names) are training runs, so they are built here with the other models,
after them (their base may be one of them), and the score stage only reads them by path.
They are built only for the score stage: `run` is told which later stages it serves
(pipelines/experiment.py), so `winnow train` or `winnow critique` on a config with
`score.less` trains no warm-up; with no stage after it (`winnow run --stage models`, with
or without ingest) it builds everything.

A `gguf:` entry is converted to a float32 checkpoint folder; its identity is the file's
sha256, so a changed file rebuilds it. For `build:`, the tokenizer learns from the first
`train_rows` rows of the pool (in pool order, rendered as conversations); the model's
identity holds the ids of exactly those rows, so a pool that grows after them keeps its
model (and the scores made with it).
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow.parquet as pq

from pipelines import runs, storage
from pipelines.config import ExperimentConfig
from pipelines.models import gguf, scorer_warmups, small
from pipelines.progress import note
from pipelines.score import parts, render

STAGE_VERSION = 1


def run(config: ExperimentConfig, serves: Collection[str] | None = None) -> dict:
    """Build the `models:` entries, then the scorers' warm-ups when `serves` (the stages run
    after this one; None: every stage) holds the score stage. {table: manifest}."""
    manifests = {}
    for name, spec in config.models.items():
        if spec.build is not None:
            manifests[f"models/{name}"] = _build(config.run_dir, name, spec.build)
        elif spec.gguf is not None:
            manifests[f"models/{name}"] = _convert(config.run_dir, name, spec.gguf)
    if serves is None or "score" in serves:
        manifests.update(scorer_warmups.build(config))
    return manifests


def _convert(run_dir: str, name: str, source) -> dict:
    path = gguf.locate(source)
    sha256 = gguf.file_sha256(path)
    return _checkpoint(
        run_dir,
        name,
        identity=({"gguf": path.name}, {"gguf_sha256": sha256}),
        message=f"converting {path.name} to a float32 checkpoint",
        write=lambda folder: gguf.convert(path, folder, sha256),
        manifest={"rows_in": 0, "gguf": {"file": str(path), "sha256": sha256}},
    )


def _build(run_dir: str, name: str, build) -> dict:
    pool = runs.read_manifest(run_dir, "pool")
    if pool is None:
        raise RuntimeError(f"model {name}: the pool is not finished in {run_dir}; run ingest first")
    ids, texts = _training_rows(storage.join(run_dir, "pool"), build.train_rows)
    spec = small.SmallModelSpec(**build.model_dump(exclude={"train_rows"}))
    return _checkpoint(
        run_dir,
        name,
        identity=(build.model_dump(), {"rows": runs.stable_hash(ids)}),
        message=f"training a tokenizer on {len(texts):,} pool rows and building the model",
        write=lambda folder: small.build(texts, folder, spec),
        manifest={"rows_in": len(texts), "spec": build.model_dump()},
    )


def _checkpoint(run_dir: str, name: str, identity: tuple[dict, dict], message: str, write, manifest: dict) -> dict:
    """RUN/models/<name>: skipped when its identity (settings, inputs) is unchanged, else
    `write(folder)` makes the checkpoint folder, committed whole with its manifest."""
    settings, inputs = identity
    stage_id = runs.stage_identity(f"model-{name}", settings, inputs, STAGE_VERSION)
    stage = runs.StageRun(run_dir, f"model-{name}", f"models/{name}", stage_id)
    if (finished := stage.finished()) is not None:
        note(f"model {name}: up to date; skipped")
        return finished
    stage.open_work()
    folder = storage.join(stage.work_dir, "checkpoint")
    storage.remove(folder, within=run_dir)  # a killed build starts over: it takes seconds
    note(f"model {name}: {message}")
    write(folder)
    manifest = {**manifest, "rows_out": 0, "rows_rejected": 0, "cpu_seconds": round(stage.driver_cpu_seconds(), 3)}
    return stage.commit({f"models/{name}": folder}, manifest)


def _training_rows(pool_dir: str, limit: int) -> tuple[list[str], list[str]]:
    """Ids and conversation texts of the pool's first `limit` rows."""
    ids: list[str] = []
    texts: list[str] = []
    for location in parts.parquet_files(pool_dir):
        with storage.open_random_access(location) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=2048, columns=["id", "messages"]):
                batch = batch.slice(0, limit - len(ids))
                ids += batch.column("id").to_pylist()
                texts += render.render_column(batch.column("messages"), "conversation").to_pylist()
                if len(ids) == limit:
                    return ids, texts
    return ids, texts
