"""The contamination scorer's benchmarks and its Scorer: the questions are read once, on the
driver, from the `evaluate:` section's benchmarks and `score.contamination.benchmarks`.

Every question of a benchmark is checked, whatever `limit` the evaluate section sets: a
later run may evaluate more of them, and the table should not change when it does. An
optional file benchmark that is absent is skipped with a note, as evaluate skips it.
"""

from __future__ import annotations

from pipelines import fault_tolerance, storage
from pipelines.evaluate import benchmarks as benchmark_files
from pipelines.evaluate.settings import FileBenchmark
from pipelines.progress import note
from pipelines.score import contamination, contamination_index, parts
from pipelines.score.runner import Scorer

POOL_COLUMNS = ["id", "messages"]


def specs(config, settings) -> list:
    """Every benchmark to check, the evaluate section's first; a name given twice is checked once."""
    evaluated = list(config.evaluate.benchmarks) if settings.evaluate_benchmarks and config.evaluate else []
    chosen: dict[str, object] = {}
    for spec in [*evaluated, *settings.benchmarks]:
        chosen.setdefault(spec.name, spec)
    return list(chosen.values())


def load_questions(spec) -> list[tuple[str, str, str]]:
    """(benchmark, question_id, question) of every question of one benchmark."""
    if isinstance(spec, FileBenchmark):
        loaded = benchmark_files.load_file(spec.name, spec.path, spec.format)
    else:
        options = spec.model_dump(include={"seed", "modules", "difficulty", "heldout_fraction"})
        loaded = benchmark_files.load_mathematics_heldout(spec.name, spec.rows, **options)
    table = loaded.table
    return list(
        zip(
            table["benchmark"].to_pylist(),
            table["question_id"].to_pylist(),
            table["question"].to_pylist(),
            strict=True,
        )
    )


def questions(config, settings) -> list[tuple[str, str, str]]:
    found = []
    for spec in specs(config, settings):
        if isinstance(spec, FileBenchmark) and spec.optional and not storage.exists(spec.path):
            note(f"score contamination: skipping optional benchmark {spec.name!r}: {spec.path} is absent")
            continue
        found += load_questions(spec)
    return found


def scorer(config, settings) -> Scorer:
    """The score stage's builder (pipelines/score/stage.py BUILDERS)."""
    checked = questions(config, settings)
    index = contamination_index.build(checked, settings.n, settings.min_n)
    thresholds = contamination.Thresholds(settings.min_matched_ngrams, settings.min_overlap)

    def score(files, parts_dir, progress):
        import ray

        shared = ray.put(index)  # once; every task reads the same copy from the object store

        def apply(dataset):
            return dataset.map_batches(
                contamination.score_batch,
                batch_format="pyarrow",
                batch_size=None,  # a whole read block, so read, match and write fuse into one task
                fn_kwargs={"index": shared, "thresholds": thresholds},
                **fault_tolerance.task_options(),
            )

        return parts.map_and_write(
            files, POOL_COLUMNS, apply, parts_dir, "scores/contamination", settings.rows_per_part, progress, io_cpus=1
        )

    fingerprint = {
        "scorer": "contamination",
        "n": settings.n,
        "min_n": settings.min_n,
        "min_matched_ngrams": settings.min_matched_ngrams,
        "min_overlap": settings.min_overlap,
        "benchmarks": sorted(index.n_by_benchmark),
        "questions": contamination_index.fingerprint(checked),  # a changed benchmark file re-scores
    }
    return Scorer("contamination", fingerprint, "pool", POOL_COLUMNS, score)
