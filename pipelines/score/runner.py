"""Run one scorer on the rows that lack its score: incremental, resumable, committed whole.

A scorer's identity is its settings, its model's fingerprint and the code version, plus the
input table's identity. Same identity as the finished table: skipped. Same scorer, grown
input: only the new ids are scored and added as new parts. Killed: the parts written so far
stay in `_work/score-<name>/parts` and the next attempt scores only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines import fault_tolerance, runs, storage
from pipelines.progress import StageProgress, note
from pipelines.score import parts

STAGE_VERSION = 1


@dataclass
class Scorer:
    name: str  # the table is scores/<name>
    settings: dict  # everything that changes the scores: parameters, model fingerprint
    input_table: str  # "pool", or "scores/embedding" for clusters
    columns: list[str]  # input columns the scorer reads
    score: Callable[[list[str], str, StageProgress], float]  # (input files, parts folder) -> CPU seconds

    @property
    def table(self) -> str:
        return f"scores/{self.name}"


def run(run_dir: str, scorer: Scorer) -> dict:
    input_manifest = runs.read_manifest(run_dir, scorer.input_table)
    if input_manifest is None:
        raise RuntimeError(
            f"score {scorer.name}: {scorer.input_table} is not finished in {run_dir}; run its stage first"
        )
    identity = runs.stage_identity(
        f"score-{scorer.name}", scorer.settings, {"input": input_manifest["identity"]}, STAGE_VERSION
    )
    stage = runs.StageRun(run_dir, f"score-{scorer.name}", scorer.table, identity)
    if (manifest := stage.finished()) is not None:
        note(f"score {scorer.name}: up to date; skipped")
        return manifest
    committed = _reusable_parts(stage, identity)
    resumed = stage.open_work()
    parts_dir = storage.join(stage.work_dir, "parts")
    if committed:  # the finished table's files join this run's parts; they move back at commit
        storage.remove(stage.manifest_location, within=run_dir)
        for location in committed:
            storage.move(location, storage.join(parts_dir, location.rsplit("/", 1)[-1]), within=run_dir)
    input_files = parts.parquet_files(stage.table_location(scorer.input_table))
    done = parts.parquet_files(parts_dir)
    pending = parts.write_pending(input_files, done, scorer.columns, storage.join(stage.work_dir, "pending.parquet"))
    n_pending, worker_cpu = parts.count_rows(pending), 0.0
    if n_pending:
        progress = StageProgress(f"score {scorer.name}", n_pending, "rows")
        with progress, fault_tolerance.capacity_guard(f"score {scorer.name}", progress):
            worker_cpu = scorer.score(pending, parts_dir, progress)
    return _commit(stage, scorer, parts_dir, n_pending, resumed, input_manifest, worker_cpu)


def _reusable_parts(stage: runs.StageRun, identity: dict) -> list[str]:
    """Files of a finished table made by this same scorer (same settings, same code)."""
    previous = runs.read_manifest(stage.run_dir, stage.primary_table)
    same = ("config_hash", "code_version")
    if previous is None or any(previous["identity"][k] != identity[k] for k in same):
        return []
    files = storage.list_files(stage.table_location(stage.primary_table))
    return [f for f in files if not f.endswith(runs.MANIFEST)]


def _commit(stage, scorer, parts_dir, n_scored, resumed, input_manifest, worker_cpu) -> dict:
    if not parts.parquet_files(parts_dir):
        storage.make_dirs(parts_dir)
    total = parts.count_rows(parts.parquet_files(parts_dir))
    storage.remove(storage.join(stage.work_dir, "pending.parquet"), within=stage.run_dir)
    manifest = {
        "rows_in": input_manifest["rows_out"],
        "rows_out": total,
        "rows_rejected": 0,
        "rows_scored": n_scored,  # this run; the rest were scored before under the same identity
        "resumed": resumed,
        "settings": scorer.settings,
        "cpu_seconds": round(stage.driver_cpu_seconds() + worker_cpu, 3),
    }
    return stage.commit({scorer.table: parts_dir}, manifest)
