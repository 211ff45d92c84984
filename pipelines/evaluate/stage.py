"""The evaluate stage: every arm on every benchmark, graded, and an accuracy table.

For each arm (a model reference) one engine answers every benchmark's prompts (zero-shot
chain of thought, greedy, `max_tokens`); each output is graded and written to
`eval/<ARM>/<BENCH>`; `eval_summary` holds accuracy per arm and benchmark, and its
`_SUCCESS.json` marks the stage finished.

What is reused, and when:
- the engine's out_dir (`_work/evaluate/generate/<arm>-<generation id>`) keeps every
  finished request, so a killed evaluation asks only for the missing samples;
- a finished `eval/<ARM>/<BENCH>` keeps an `_unit.json` with its generation and grading
  ids: a unit whose ids match is kept as is (adding an arm does not re-run the others),
  and one whose generation matches but grading changed is re-graded from its outputs.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

import schemas
import schemas.evaluate
from pipelines import fences, storage
from pipelines.evaluate import benchmarks, prompts, results
from pipelines.evaluate.settings import EvaluateConfig, FileBenchmark
from pipelines.models.loading import resolve
from pipelines.progress import note
from pipelines.runs import StageRun, stable_hash, stage_identity

STAGE_VERSION = 2  # 2: comparisons count each question once (issue 25); stored answers are reused
GRADER_VERSION = 2  # bump when grading rules change: outputs are re-graded, not re-generated (2: exact numbers)
UNIT_FILE = "_unit.json"
PART = "part-00000.parquet"


def run(config, arms: dict[str, str]) -> dict[str, dict]:
    """Evaluate {arm name: model reference} on the config's benchmarks; {table: manifest}."""
    section: EvaluateConfig | None = getattr(config, "evaluate", None)
    if section is None:
        return {}
    _check_arms(arms)
    questions = {spec.name: _load(spec, section.limit) for spec in section.benchmarks if _present(spec)}
    if not questions:
        raise ValueError("evaluate: every benchmark is optional and absent; nothing to evaluate")
    plan = _plan(config, section, arms, questions)
    identity = stage_identity(
        "evaluate",
        {"evaluate": section.model_dump(mode="json"), "arms": arms},
        {key: unit["grading_id"] for key, unit in plan.items()},
        STAGE_VERSION,
    )
    stage = StageRun(config.run_dir, "evaluate", "eval_summary", identity)
    finished = stage.finished()
    if finished is not None and not finished.get("retryable_failures"):
        return {"eval_summary": finished}  # a run with failed samples runs again, asking only for those
    outputs, generation = {}, {}
    for arm in arms:
        written, generation[arm] = _evaluate_arm(config, section, stage, arm, plan, questions)
        outputs.update(written)
    summary = [_summary_of(stage, plan[key], outputs.get(f"eval/{key}")) for key in plan]
    baseline = _baseline(config, section, arms)
    answers = _answers(stage, plan, outputs)
    summary = results.with_comparisons(summary, answers, baseline, section)
    comparison = {"baseline": baseline, "alpha": section.alpha, "resamples": section.resamples, "seed": section.seed}
    return {"eval_summary": _commit(stage, outputs, summary, questions, plan, generation, comparison)}


def _baseline(config, section: EvaluateConfig, arms: dict[str, str]) -> str | None:
    """The arm every other is compared with: `evaluate.baseline`, else the default."""
    from pipelines.report.comparisons import default_baseline, group_runs
    from pipelines.runs import read_manifest

    groups = group_runs(arms)
    if section.baseline is not None and section.baseline not in groups:
        raise ValueError(f"evaluate.baseline: {section.baseline!r} is not an evaluated arm; arms: {', '.join(groups)}")
    return section.baseline or default_baseline(groups, lambda table: read_manifest(config.run_dir, table))


def _answers(stage: StageRun, plan: dict, outputs: dict) -> dict:
    """run -> benchmark -> {question_id: correct}, from every unit's table."""
    answers: dict = {}
    for key, unit in plan.items():
        table = _read_parts(outputs.get(f"eval/{key}") or stage.table_location(f"eval/{key}"))
        graded = dict(zip(table.column("question_id").to_pylist(), table.column("correct").to_pylist(), strict=True))
        answers.setdefault(unit["arm"], {})[unit["benchmark"]] = graded
    return answers


def _check_arms(arms: dict[str, str]) -> None:
    if not arms:
        raise ValueError("evaluate: no arms given ({arm name: model reference})")
    bad = [name for name in arms if not fences.is_run_name(name)]
    if bad:
        raise ValueError(f"evaluate: arm names must be {fences.NAME_RULE}, with @s<seed> for a seed's run; got {bad}")


def _present(spec) -> bool:
    if isinstance(spec, FileBenchmark) and spec.optional and not storage.exists(spec.path):
        note(f"evaluate: skipping optional benchmark {spec.name!r}: {spec.path} is absent")
        return False
    return True


def _load(spec, section_limit: int | None) -> benchmarks.Loaded:
    limit = spec.limit or section_limit
    if isinstance(spec, FileBenchmark):
        return benchmarks.load_file(spec.name, spec.path, spec.format, limit)
    settings = spec.model_dump(include={"seed", "modules", "difficulty", "heldout_fraction"})
    return benchmarks.load_mathematics_heldout(spec.name, min(spec.rows, limit or spec.rows), **settings)


def _sampling(section: EvaluateConfig):
    from pipelines.generate.settings import Sampling

    return Sampling(temperature=0.0, top_p=1.0, max_tokens=section.max_tokens, n=1, seed=section.seed)


def _plan(config, section: EvaluateConfig, arms: dict[str, str], questions: dict) -> dict[str, dict]:
    """Unit key "<arm>/<benchmark>" -> the unit's ids: what its outputs and grades depend on."""
    from pipelines.generate.settings import output_settings

    engine = {k: v for k, v in output_settings(section.engine).items() if k != "model"}
    sampling = _sampling(section).model_dump(mode="json")
    prompted = {name: ["question_id", "question", "kind", "choices"] for name in questions}
    contents = {name: stable_hash(q.table.select(prompted[name]).to_pylist()) for name, q in questions.items()}
    golds = {name: stable_hash(q.table.column("gold").to_pylist()) for name, q in questions.items()}
    plan = {}
    for arm, reference in arms.items():
        model = resolve(reference, config.models, config.run_dir).fingerprint()
        generation_of_arm = stable_hash([model, engine, sampling, prompts.PROMPT_VERSION])
        for name in questions:
            generation_id = stable_hash([generation_of_arm, contents[name]])
            grading_id = stable_hash([generation_id, golds[name], GRADER_VERSION, section.grading_timeout_s])
            plan[f"{arm}/{name}"] = {
                "arm": arm,
                "model": reference,
                "benchmark": name,
                "arm_generation_id": generation_of_arm,
                "generation_id": generation_id,
                "grading_id": grading_id,
            }
    return plan


def _unit_record(stage: StageRun, key: str) -> dict | None:
    location = storage.join(stage.table_location(f"eval/{key}"), UNIT_FILE)
    return storage.read_json(location) if storage.exists(location) else None


def _evaluate_arm(config, section, stage: StageRun, arm: str, plan: dict, questions: dict) -> tuple[dict, dict]:
    """Generate what is missing for one arm, grade, and write its units into _work;
    ({table: work location}, the engine's summary or None when nothing was generated).

    A unit generated before with the same generation id keeps its outputs: only its failed
    samples are asked again, and it is re-graded when its grading id changed."""
    keys = [key for key, unit in plan.items() if unit["arm"] == arm]
    built = {key: results.build_requests(questions[plan[key]["benchmark"]].table) for key in keys}
    outputs, ask, seconds, todo = {}, {}, {}, []
    for key in keys:
        record = _unit_record(stage, key)
        ask[key] = [question["request_id"] for question in built[key][1]]
        seconds[key] = 0.0
        if record is not None and record["generation_id"] == plan[key]["generation_id"]:
            stored = _outputs_from_table(stage, key, built[key][1])
            outputs.update(stored)
            ask[key] = [i for i in ask[key] if i not in stored or results.retryable(stored[i])]
            seconds[key] = record["generation_seconds"]
            if not ask[key] and record["grading_id"] == plan[key]["grading_id"]:
                continue  # finished and graded the same way: kept as it is
        todo.append(key)
    generation = None
    if any(ask[key] for key in todo):
        fresh, shares, generation = _generate(config, section, stage, plan[todo[0]], arm, ask, built)
        outputs.update(fresh)
        for key, share in shares.items():
            seconds[key] += share
    written = {}
    for key in todo:
        table, grading_s = results.timed(
            results.grade_outputs, built[key][1], outputs, section.grading_timeout_s, section.grading_workers
        )
        record = {**plan[key], "generation_seconds": seconds[key], "grading_seconds": grading_s}
        written[f"eval/{key}"] = _write_unit(stage, key, table, record)
    return written, generation


def _generate(config, section, stage, unit: dict, arm: str, ask: dict, built: dict) -> tuple[dict, dict, dict]:
    """One engine call for all of an arm's missing samples (one model load); its seconds
    are shared out among the benchmarks by their output tokens."""
    import pyarrow.compute as pc

    from pipelines.generate import engine as engines

    wanted = {key: ids for key, ids in ask.items() if ids}
    requests = pa.concat_tables(
        [built[key][0].filter(pc.is_in(built[key][0]["request_id"], pa.array(ids))) for key, ids in wanted.items()]
    )
    out_dir = storage.join(stage.work_dir, "generate", f"{arm}-{unit['arm_generation_id'][:16]}")
    engine = section.engine.model_copy(update={"model": unit["model"]})
    summary = engines.generate(engine, requests, _sampling(section), out_dir, config, label=f"evaluate {arm}")
    generated = engines.read_results(out_dir, requests).to_pylist()
    outputs = {row["request_id"]: row for row in generated if row["completion_index"] == 0}
    tokens = {key: sum((outputs.get(i) or {}).get("output_tokens") or 0 for i in ids) for key, ids in wanted.items()}
    total = sum(tokens.values()) or 1
    return outputs, {key: summary["seconds"] * tokens[key] / total for key in wanted}, summary


def _read_parts(folder: str) -> pa.Table:
    files = storage.list_files(folder, ".parquet", recursive=True)
    tables = []
    for location in files:
        with storage.open_random_access(location) as handle:
            tables.append(pq.read_table(handle))
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({"request_id": []})


def _outputs_from_table(stage: StageRun, key: str, questions: list[dict]) -> dict[str, dict]:
    """Earlier outputs of a unit, keyed by this run's request ids (same generation id)."""
    earlier = _read_parts(stage.table_location(f"eval/{key}")).to_pylist()
    by_question = {row["question_id"]: row for row in earlier}
    outputs = {}
    for question in questions:
        row = by_question.get(question["question_id"])
        if row is not None:
            outputs[question["request_id"]] = {**row, "completion_index": 0}
    return outputs


def _write_unit(stage: StageRun, key: str, table: pa.Table, record: dict) -> str:
    schemas.check(f"eval/{key}", table, schemas.evaluate.EVAL_RESULTS)
    folder = storage.join(stage.work_dir, "out", *key.split("/"))
    storage.remove(folder, within=stage.run_dir)
    storage.write_parquet_atomic(table, storage.join(folder, PART))
    storage.write_json_atomic({**record, "rows": table.num_rows}, storage.join(folder, UNIT_FILE))
    return folder


def _summary_of(stage: StageRun, unit: dict, written: str | None) -> dict:
    key = f"{unit['arm']}/{unit['benchmark']}"
    folder = written or stage.table_location(f"eval/{key}")
    table = _read_parts(folder)
    record = storage.read_json(storage.join(folder, UNIT_FILE))
    return results.summary_row(
        unit["arm"], unit["model"], unit["benchmark"], table, record["generation_seconds"], record["grading_seconds"]
    )


def _retryable_failures(stage: StageRun, outputs: dict, plan: dict) -> int:
    folders = [outputs.get(f"eval/{key}") or stage.table_location(f"eval/{key}") for key in plan]
    return sum(sum(results.retryable(row) for row in _read_parts(folder).to_pylist()) for folder in folders)


def _commit(
    stage: StageRun, outputs: dict, summary: list[dict], questions: dict, plan: dict, generation, comparison: dict
) -> dict:
    table = pa.Table.from_pylist(summary, schema=schemas.evaluate.EVAL_SUMMARY)
    schemas.check("eval_summary", table, schemas.evaluate.EVAL_SUMMARY)
    summary_dir = storage.join(stage.work_dir, "summary")
    storage.write_parquet_atomic(table, storage.join(summary_dir, PART))
    tables = {**outputs, "eval_summary": summary_dir}
    rejects = [reject for loaded in questions.values() for reject in loaded.rejects]
    if rejects:
        rejects_dir = storage.join(stage.work_dir, "rejects")
        rejects_table = pa.Table.from_pylist(rejects, schema=schemas.SCHEMAS["rejects"])
        storage.write_parquet_atomic(rejects_table, storage.join(rejects_dir, PART))
        tables["rejects/evaluate"] = rejects_dir
    manifest = {
        "rows_in": sum(loaded.rows_read for loaded in questions.values()),  # questions read
        "rows_rejected": len(rejects),  # questions that could not be mapped
        "questions": sum(loaded.table.num_rows for loaded in questions.values()),
        "rows_out": int(sum(row["n"] for row in summary)),  # graded samples: questions x arms
        "retryable_failures": _retryable_failures(stage, outputs, plan),
        "units": sorted(plan),
        "units_run": sorted(key.removeprefix("eval/") for key in outputs),
        "generation": generation,  # per arm: the engine's counts for this run (None: nothing generated)
        "accuracy": {f"{row['arm']}/{row['benchmark']}": round(row["accuracy"], 4) for row in summary},
        "comparison": comparison,  # the report's comparisons use these settings too
        "cpu_seconds": round(stage.driver_cpu_seconds(), 3),
    }
    return stage.commit(tables, manifest)
