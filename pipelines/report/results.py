"""The results table: one row per arm and benchmark, with the accuracy's interval, the paired
comparison with the baseline arm (pipelines/report/comparisons.py), and what the arm's data
and training cost, from the run's per-question results and its stage manifests.

An arm's data cost is what was computed to build its training data: for `selection:NAME`
the selection and every table it read (the score tables; the pool's ingest is shared by
every arm and left out), for `cft` the critique stage. Seconds are wall seconds from the
manifests, CPU- and GPU-hours their cpu_seconds and gpu_seconds; an arm evaluated without
training (a base model) costs nothing. An arm trained with several seeds costs its data
once plus the mean of its runs' training (the cost of one model, as its accuracy is the
mean of one model's).
"""

from __future__ import annotations

import json
from statistics import mean

import pyarrow as pa

import schemas
from pipelines import views
from pipelines.report import comparisons
from pipelines.report.comparisons import Answers, Settings

SHARED_INPUTS = ("pool",)  # tables every arm uses alike: not counted against any one arm
CRITIQUE_TABLES = ("candidates", "critiques", "cft")


def manifests_by_table(connection) -> dict[str, dict]:
    rows = connection.execute('SELECT "table", manifest FROM manifests').fetchall()
    return {table: json.loads(manifest) for table, manifest in rows}


def load_answers(connection) -> Answers:
    """run -> benchmark -> {question_id: correct}, from the run's `evals` view."""
    if "evals" not in views.views(connection):
        return {}
    answers: Answers = {}
    query = "SELECT run, benchmark, question_id, correct FROM evals"
    for run, benchmark, question_id, correct in connection.execute(query).fetchall():
        answers.setdefault(run, {}).setdefault(benchmark, {})[question_id] = bool(correct)
    return answers


def settings_of(manifests: dict[str, dict]) -> Settings:
    """The comparison settings the evaluate stage recorded (the defaults for older runs)."""
    recorded = manifests.get("eval_summary", {}).get("comparison") or {}
    defaults = Settings(baseline=None)
    return Settings(
        baseline=recorded.get("baseline"),
        alpha=recorded.get("alpha", defaults.alpha),
        resamples=recorded.get("resamples", defaults.resamples),
        seed=recorded.get("seed", defaults.seed),
    )


def baseline_of(arms: dict[str, list[str]], settings: Settings, manifests: dict[str, dict]) -> str | None:
    if settings.baseline in arms:
        return settings.baseline
    return comparisons.default_baseline(arms, manifests.get)


def data_cost(reference: str | None, manifests: dict[str, dict], key: str = "wall_seconds") -> float:
    """Seconds (`key`: wall_seconds, cpu_seconds or gpu_seconds) spent making the training
    data an arm's reference names."""
    if reference is None:
        return 0.0
    if reference.startswith("selection:"):
        table = f"selections/{reference.removeprefix('selection:')}"
        inputs = [t for t in manifests.get(table, {}).get("inputs", {}) if t not in SHARED_INPUTS]
        return sum(manifests.get(t, {}).get(key) or 0.0 for t in [table, *inputs])
    if reference == "cft":
        return sum(m.get(key) or 0.0 for t, m in manifests.items() if t in CRITIQUE_TABLES)
    return 0.0  # a file given by path: made outside this run


def arm_info(runs: list[str], manifests: dict[str, dict]) -> dict:
    trained = [manifests[f"models/{run}"] for run in runs if f"models/{run}" in manifests]
    reference = trained[0].get("data") if trained else None
    method = "base" if not trained else ("CFT" if reference == "cft" else "SFT")
    selection = reference.removeprefix("selection:") if reference and reference.startswith("selection:") else None

    def train_cost(key: str) -> float:
        return mean(manifest.get(key) or 0.0 for manifest in trained) if trained else 0.0

    data_seconds, train_seconds = data_cost(reference, manifests), train_cost("wall_seconds")
    return {
        "method": method,
        "selection": selection,
        "data": reference,
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "compute_seconds": data_seconds + train_seconds,
        "cpu_hours": (data_cost(reference, manifests, "cpu_seconds") + train_cost("cpu_seconds")) / 3600,
        "gpu_hours": (data_cost(reference, manifests, "gpu_seconds") + train_cost("gpu_seconds")) / 3600,
    }


def results(connection) -> pa.Table:
    """One row per arm and benchmark (empty when nothing was evaluated)."""
    answers = load_answers(connection)
    if not answers:
        return schemas.SCHEMAS["results"].empty_table()
    manifests = manifests_by_table(connection)
    settings = settings_of(manifests)
    arms = comparisons.group_runs(answers)
    rows = comparisons.compare(answers, arms, baseline_of(arms, settings, manifests), settings)
    info = {arm: arm_info(runs, manifests) for arm, runs in arms.items()}
    return pa.Table.from_pylist([{**row, **info[row["arm"]]} for row in rows], schema=schemas.SCHEMAS["results"])


def best_arms(connection, settings: Settings) -> dict[str, str | None]:
    """Benchmark -> the arm significantly best on it (comparisons.significantly_best), or None."""
    answers = load_answers(connection)
    arms = comparisons.group_runs(answers)
    benchmarks = sorted({benchmark for per_run in answers.values() for benchmark in per_run})
    return {benchmark: comparisons.significantly_best(answers, arms, benchmark, settings) for benchmark in benchmarks}
