"""The select stage: build every named selection in the config, each its own table.

A selection's identity is its spec and the identities of the tables it reads (the pool,
the score tables its columns name, the embeddings for k-center, the selection k-center
starts from), so it is rebuilt exactly when one of them changes and skipped otherwise.
"""

from __future__ import annotations

import time

import pyarrow as pa

import schemas
from pipelines import runs, storage, views
from pipelines.config import ExperimentConfig
from pipelines.progress import note
from pipelines.select import clean, columns, greedy, ranked

STAGE_VERSION = 1


def run(config: ExperimentConfig) -> dict[str, dict]:
    """Build (or skip) each selection in `select:`; returns {selections/NAME: manifest}."""
    manifests = {}
    for name, spec in (config.select or {}).items():
        manifests[f"selections/{name}"] = build(config, name, spec)
    return manifests


def build(config: ExperimentConfig, name: str, spec) -> dict:
    pool = _finished(config.run_dir, "pool", name)
    budget = ranked.budget_rows(spec.budget, pool["rows_out"])
    skips = clean.present(config.run_dir, spec)  # their tables join the identity: a new one rebuilds
    tables = _input_tables(spec, budget, skips)
    inputs = {table: _finished(config.run_dir, table, name)["identity"] for table in sorted(tables)}
    identity = runs.stage_identity(f"select-{name}", spec.model_dump(mode="json"), inputs, STAGE_VERSION)
    stage = runs.StageRun(config.run_dir, f"select-{name}", f"selections/{name}", identity)
    if (manifest := stage.finished()) is not None:
        note(f"select {name}: up to date; skipped")
        return manifest
    resumed = stage.open_work()
    note(f"select {name}: {spec.method}, {budget:,} rows")
    connection = views.connect(config.run_dir)
    if spec.method in ("kcenter", "zip"):
        ids, details = _greedy(config, stage, connection, spec, budget, skips)
        table = pa.table({"id": ids, "rank": range(1, len(ids) + 1)}, schema=schemas.SCHEMAS["selections"])
    else:
        table, details = ranked.select(connection, spec, budget, skips), {}
    details["clean"] = _clean_summary(connection, spec, skips)
    schemas.check("selections", table)
    folder = storage.join(stage.work_dir, "selection")
    storage.write_parquet_atomic(table, storage.join(folder, "part-00000.parquet"))
    outputs = {f"selections/{name}": folder}
    if spec.export:
        folder = storage.join(stage.work_dir, "export")
        outputs[f"exports/{name}"] = _export(connection, table, name, spec.export, folder)
    manifest = {
        "rows_in": pool["rows_out"],
        "rows_out": table.num_rows,
        "rows_rejected": 0,
        "method": spec.method,
        "params": spec.model_dump(mode="json", exclude={"budget", "seed", "export"}),
        "budget": {"requested": spec.budget, "rows": budget},
        "seed": spec.seed,
        "inputs": {table: identity["config_hash"] for table, identity in inputs.items()},
        "resumed": resumed,
        **details,
        "cpu_seconds": round(stage.driver_cpu_seconds() + details.pop("task_cpu_seconds", 0.0), 3),
    }
    return stage.commit(outputs, manifest)


def _finished(run_dir: str, table: str, selection: str) -> dict:
    manifest = runs.read_manifest(run_dir, table)
    if manifest is None:
        raise RuntimeError(f"select {selection}: needs {table}, which is not finished in {run_dir}; run its stage")
    return manifest


def _clean_summary(connection, spec, skips: dict[str, str]) -> dict:
    """What `dedupe` and `decontaminate` removed from the candidates meeting `where`."""
    parameters: dict = {}
    score = getattr(spec, "score", None)
    candidates, _ = columns.candidates_sql(score, spec.where, False, parameters)
    return clean.summary(connection, spec, skips, candidates, parameters)


def _input_tables(spec, budget: int, skips: dict[str, str]) -> set[str]:
    """Run tables the selection reads (table paths, e.g. scores/model_loss)."""
    if spec.method in ("kcenter", "zip"):
        _, needed = columns.candidates_sql(None, spec.where, False, {}, skips)
        needed |= {"scores_embedding"} if spec.method == "kcenter" else set()
        extra = {f"selections/{spec.start_from}"} if getattr(spec, "start_from", None) else set()
    else:
        _, _, needed = ranked.query(spec, budget, skips)
        extra = set()
    return {view.replace("scores_", "scores/", 1) for view in needed} | extra


def _greedy(config, stage: runs.StageRun, connection, spec, budget: int, skips: dict) -> tuple[list[str], dict]:
    """Run k-center or ZIP as a Ray task over the candidate rows; (picked ids, details)."""
    import ray

    from pipelines.ray_runtime import ensure_ray

    parameters: dict = {}
    sql, _ = columns.candidates_sql(None, spec.where, False, parameters, skips)
    candidates = connection.sql(sql, params=parameters).to_arrow_table().select(["id"])
    candidates_file = storage.join(stage.work_dir, "candidates.parquet")
    storage.write_parquet_atomic(candidates, candidates_file)
    inputs = {"candidates": [candidates_file]}
    checkpoint = storage.join(stage.work_dir, "state.npz")
    ensure_ray(config.ray)
    if spec.method == "kcenter":
        inputs["embedding"] = views.table_files(config.run_dir)["scores_embedding"]
        seed_ids = _selection_ids(connection, spec.start_from) if spec.start_from else []
        task = ray.remote(num_cpus=spec.num_cpus, num_gpus=spec.num_gpus)(_timed(greedy.run_kcenter))
        details = ray.get(task.remote(inputs, spec.model_dump(), budget, seed_ids, checkpoint))
    else:
        inputs["pool"] = views.table_files(config.run_dir)["pool"]
        workers = spec.workers or max(1, int(spec.num_cpus))
        task = ray.remote(num_cpus=spec.num_cpus)(_timed(greedy.run_zip))
        details = ray.get(task.remote(inputs, spec.model_dump(), budget, checkpoint, workers))
    return details.pop("ids"), details


def _timed(function):
    """The function, reporting the CPU seconds its process spent on it."""

    def timed(*args):
        started = time.process_time()
        result = function(*args)
        return {**result, "task_cpu_seconds": time.process_time() - started}

    timed.__name__ = function.__name__
    return timed


def _selection_ids(connection, name: str) -> list[str]:
    view = f"selections_{name}"
    return [row_id for (row_id,) in connection.table(view).order("rank").select("id").fetchall()]


def _export(connection, selection: pa.Table, name: str, formats: list[str], folder: str) -> str:
    """Training files of the selected rows (their pool messages, in rank order)."""
    from pipelines import export

    connection.register("chosen", selection)
    rows = connection.sql("SELECT p.id, p.messages FROM chosen c JOIN pool p USING (id) ORDER BY c.rank")
    rows = rows.to_arrow_table()
    connection.unregister("chosen")
    export.write(rows, folder, name, formats)
    return folder
