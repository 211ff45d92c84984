"""The ingest stage: plan, map units, reduce buckets, reconcile counts, commit."""

from __future__ import annotations

import json
from collections import Counter

import schemas
from pipelines import run_logs, runs, storage
from pipelines.config import ExperimentConfig
from pipelines.ingest import dedupe, units
from pipelines.ingest.plan import Plan, Unit, make_plan
from pipelines.progress import StageProgress
from pipelines.ray_runtime import ensure_ray

STAGE_VERSION = 3  # bump when a change alters what ingest writes for the same input
MAX_PROBLEM_LINES = 20  # files named on the console; the rejects table has every one


class ReconcileError(RuntimeError):
    pass


def run(config: ExperimentConfig) -> dict:
    """Run (or skip, or resume) ingest for `config`; returns the stage manifest."""
    plan = make_plan(config.ingest)
    for name in plan.missing_sources:
        run_logs.say(f"ingest: optional source {name!r} matched no files; skipped")
    identity = runs.stage_identity(
        "ingest", config.ingest.model_dump(mode="json"), {"files": plan.inputs}, STAGE_VERSION
    )
    stage = runs.StageRun(config.run_dir, "ingest", "pool", identity)
    if (manifest := stage.finished()) is not None:
        run_logs.say(f"ingest: up to date in {stage.table_location('pool')}; skipped")
        return manifest
    resumed = stage.open_work()
    ensure_ray(config.ray)
    unit_stats = _run_work(
        stage,
        {unit.key: {"unit": unit.to_json()} for unit in plan.units},
        _map_batch,
        {
            "work_dir": stage.work_dir,
            "buckets": plan.buckets,
            "max_chars": config.ingest.max_text_chars,
            "max_line_bytes": config.ingest.max_line_bytes,
        },
        "units read",
        lambda stats: f"{sum(s['rows_read'] for s in stats):,} rows",
    )
    _say_file_problems(unit_stats)
    bucket_stats = _run_work(
        stage,
        {dedupe.bucket_key(b): {"bucket": b} for b in range(plan.buckets)},
        _reduce_batch,
        {"work_dir": stage.work_dir},
        "buckets deduplicated",
    )
    return _commit(stage, plan, unit_stats, bucket_stats, resumed)


def _run_work(stage: runs.StageRun, work: dict[str, dict], function, settings: dict, what: str, detail=None):
    """Run `function` on each work item an earlier attempt did not finish; stats of all items."""
    finished = {key: stage.unit_done(key) for key in work}
    stats = [{**done, "reused": True} for done in finished.values() if done is not None]
    pending = [item for key, item in work.items() if finished[key] is None]
    with StageProgress("ingest", len(work), what) as progress:
        progress.advance(len(stats), "(resumed)" if stats else "")
        for result in _ray_map(pending, function, settings):
            stats.append(result)
            progress.advance(1, detail(stats) if detail else "")
    return stats


def _say_file_problems(unit_stats: list[dict]) -> None:
    """One line a file that was empty, cut short or broken midway: its rows are not all there."""
    problems = [problem for stats in unit_stats for problem in stats.get("file_problems", [])]
    for problem in problems[:MAX_PROBLEM_LINES]:
        run_logs.say(f"ingest: {problem}")
    if len(problems) > MAX_PROBLEM_LINES:
        more = len(problems) - MAX_PROBLEM_LINES
        run_logs.say(f"ingest: ... and {more} more files like these (rejects/ingest has them all)")


def _ray_map(items: list[dict], function, settings: dict):
    """Run `function` on each item as its own Ray Data task; yield results as they finish."""
    if not items:
        return
    import ray.data

    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    dataset = dataset.map_batches(function, batch_size=1, fn_kwargs=settings, num_cpus=1)
    for row in dataset.iter_rows():
        yield json.loads(row["stats"])


def _map_batch(batch: dict, work_dir: str, buckets: int, max_chars: int, max_line_bytes: int) -> dict:
    results = [
        units.process(Unit.from_json(text), work_dir, buckets, max_chars, max_line_bytes) for text in batch["unit"]
    ]
    return {"stats": [json.dumps(r) for r in results]}


def _reduce_batch(batch: dict, work_dir: str) -> dict:
    return {"stats": [json.dumps(dedupe.process(int(bucket), work_dir)) for bucket in batch["bucket"]]}


def _commit(stage: runs.StageRun, plan: Plan, unit_stats: list[dict], bucket_stats: list[dict], resumed: bool) -> dict:
    read = sum(s["rows_read"] for s in unit_stats)
    rejected = sum(s["rows_rejected"] for s in unit_stats)
    staged = sum(s["rows_staged"] for s in unit_stats)
    kept = sum(s["rows_out"] for s in bucket_stats)
    if sum(s["rows_in"] for s in bucket_stats) != staged or read != staged + rejected:
        raise ReconcileError(f"ingest: staged rows do not add up (read {read}, staged {staged}, rejected {rejected})")
    pool_dir = storage.join(stage.work_dir, "pool")
    if not storage.list_files(pool_dir, ".parquet"):
        storage.write_parquet_atomic(schemas.empty("pool"), storage.join(pool_dir, "part-00000.parquet"))
    rejects_dir = storage.join(stage.work_dir, "rejects")
    if not storage.list_files(rejects_dir, ".parquet"):
        storage.write_parquet_atomic(schemas.empty("rejects"), storage.join(rejects_dir, "none.parquet"))
    counts = _per_source(unit_stats, bucket_stats)
    manifest = {
        "rows_in": read,
        "rows_out": kept,
        "rows_rejected": rejected,
        "duplicates": staged - kept,
        "rejects_by_reason": dict(sum((Counter(s["rejects_by_reason"]) for s in unit_stats), Counter())),
        "sources": counts,
        "units": len(plan.units),
        "buckets": plan.buckets,
        "resumed": resumed,
        "units_reused": sum(1 for s in unit_stats + bucket_stats if s.get("reused")),
        "cpu_seconds": round(stage.driver_cpu_seconds() + sum(s["cpu_seconds"] for s in unit_stats + bucket_stats), 3),
    }
    return stage.commit({"rejects/ingest": rejects_dir, "pool": pool_dir}, manifest)


def _per_source(unit_stats: list[dict], bucket_stats: list[dict]) -> dict[str, dict]:
    per_source: dict[str, Counter] = {}
    for s in unit_stats:
        per_source.setdefault(s["source"], Counter()).update(
            {"rows_in": s["rows_read"], "rows_rejected": s["rows_rejected"], "rows_out": s["rows_staged"]}
        )
    for s in bucket_stats:
        for source, duplicates in s["duplicates_by_source"].items():
            per_source[source].update({"duplicates": duplicates, "rows_out": -duplicates})
    return {source: {"duplicates": 0, **dict(c)} for source, c in per_source.items()}
