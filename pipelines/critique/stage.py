"""The critique stage: questions -> candidate answers -> teacher critiques -> CFT examples.

Tables: `candidates`, `critiques`, `cft` (its `_SUCCESS.json` is the stage manifest),
`rejects/critique`, and `exports/cft/` (JSON Lines, Alpaca, ShareGPT, dataset_info.json).
The engines' results are kept in `generations/critique-student` and
`generations/critique-teacher` across runs, so the stage resumes at row level: a killed run
asks only for what is missing, and a finished run that had failed rows is not skipped:
the next run retries only those rows (not prompts too long for an engine's context: the
same settings would fail them again).
"""

from __future__ import annotations

from pipelines import export, runs, storage
from pipelines.critique import candidates, cft, critiques, prompts, questions
from pipelines.critique.grading import Grader
from pipelines.critique.settings import CritiqueConfig
from pipelines.generate import engine as engines
from pipelines.generate.settings import VllmEngineConfig, output_settings
from pipelines.progress import note

STAGE_VERSION = 1
CACHE = {"student": "generations/critique-student", "teacher": "generations/critique-teacher"}


def run(config) -> dict[str, dict]:
    section: CritiqueConfig | None = getattr(config, "critique", None)
    if section is None:
        return {}
    pool = runs.read_manifest(config.run_dir, "pool")
    if pool is None:
        raise RuntimeError(f"critique: the pool is not finished in {config.run_dir}; run ingest first")
    loaded = _prompts(section)
    settings = _settings(config, section, loaded)
    identity = runs.stage_identity("critique", settings, {"pool": pool["identity"]}, STAGE_VERSION)
    stage = runs.StageRun(config.run_dir, "critique", "cft", identity)
    if (manifest := stage.finished()) is not None and not manifest.get("failed_rows"):
        note("critique: up to date; skipped")
        return {"cft": manifest}
    stage.open_work()
    work = {name: storage.join(stage.work_dir, name) for name in ("candidates", "critiques", "cft", "rejects")}
    questions_file = storage.join(stage.work_dir, "questions.parquet")
    read, question_rejects = questions.select(config.run_dir, section.questions, questions_file)
    note(f"critique: {read - len(question_rejects):,} questions ({len(question_rejects)} rejected)")
    candidates_file = storage.join(work["candidates"], "part-00000.parquet")
    student, found, candidate_rejects = _candidates(
        config, section, loaded, stage.work_dir, questions_file, candidates_file
    )
    teacher = _critique(config, section, loaded, stage.work_dir, questions_file, candidates_file, work)
    files = {"candidates": candidates_file, "questions": questions_file, "critiques": teacher["file"]}
    cft_file = storage.join(work["cft"], "part-00000.parquet")
    examples, cft_rejects = cft.write(files, section.filters, section.drop_disagreeing, cft_file)
    _check_counts(found, teacher["counts"], examples, candidate_rejects, cft_rejects)
    rejects = question_rejects + candidate_rejects + cft_rejects
    storage.write_parquet_atomic(_rejects_table(rejects), storage.join(work["rejects"], "part-00000.parquet"))
    exports_dir = storage.join(stage.work_dir, "exports")
    export.write([cft_file], exports_dir, "cft", section.export)
    manifest = {
        "rows_in": read,
        "rows_out": examples["rows"],
        "rows_rejected": len(rejects),
        "failed_rows": _retried_failures(found, teacher["counts"]),
        "questions": {"read": read, "kept": read - len(question_rejects), "rejected": len(question_rejects)},
        "candidates": {**found, "model": settings["student"]["model"], "generation": student},
        "critiques": {**teacher["counts"], "generation": teacher["summary"]},
        "cft": examples,
        "rejects_by_reason": _by_reason(rejects),
        "teacher": settings["teacher"],
        "student": settings["student"],
        "prompts": {name: prompt.record() for name, prompt in loaded.items() if prompt is not None},
        "cpu_seconds": round(stage.driver_cpu_seconds(), 3),
    }
    outputs = {
        "candidates": work["candidates"],
        "critiques": work["critiques"],
        "cft": work["cft"],
        "rejects/critique": work["rejects"],
        "exports/cft": exports_dir,
    }
    note(f"critique: {examples['rows']:,} CFT examples; labels {examples['labels']}")
    return {"cft": stage.commit(outputs, manifest)}


def _prompts(section: CritiqueConfig) -> dict[str, prompts.Prompt | None]:
    student = section.candidates if section.candidates != "pool" else None
    system = student.system_prompt if student is not None else None
    return {
        "student_system": prompts.load(system) if system else None,
        "teacher_system": prompts.load(section.teacher.system_prompt),
        "teacher_user": prompts.load(section.teacher.user_prompt, needs=("question", "solution")),
    }


def _engine_record(engine, sampling, config) -> dict:
    record = {"kind": engine.kind, "model": engine.model, "settings": output_settings(engine)}
    if isinstance(engine, VllmEngineConfig):
        record["weights"] = engines.model_ref(engine, config).fingerprint()
    return {**record, "sampling": sampling.model_dump(mode="json")}


def _settings(config, section: CritiqueConfig, loaded: dict) -> dict:
    """Everything the stage's tables depend on (not how fast they are made)."""
    student = section.candidates
    teacher = section.teacher
    return {
        "questions": section.questions.model_dump(mode="json"),
        "student": {"model": "pool"} if student == "pool" else _engine_record(student.engine, student.sampling, config),
        "teacher": {**_engine_record(teacher.engine, _teacher_sampling(section), config)},
        "prompts": {name: prompt.sha256 for name, prompt in loaded.items() if prompt is not None},
        "filters": section.filters.model_dump(mode="json"),
        "drop_disagreeing": section.drop_disagreeing,
        "grading_timeout_s": section.grading_timeout_s,
        "export": section.export,
    }


def _teacher_sampling(section: CritiqueConfig):
    sampling, chars = section.teacher.sampling, section.teacher.force_conclusion_chars
    if chars is None:
        return sampling
    return sampling.model_copy(update={"regex": critiques.forced_conclusion_regex(chars)})


def _candidates(config, section, loaded, work_dir, questions_file, destination):
    if section.candidates == "pool":
        found, rejects = candidates.from_pool(questions_file, destination)
        return None, found, rejects
    student = section.candidates
    requests_file = storage.join(work_dir, "student_requests.parquet")
    candidates.write_student_requests(questions_file, loaded["student_system"], requests_file)
    out_dir = storage.join(config.run_dir, CACHE["student"])
    summary = engines.generate(student.engine, [requests_file], student.sampling, out_dir, config, "critique: student")
    sampling = student.sampling.model_dump_json()
    found, rejects = candidates.from_student(
        out_dir, requests_file, questions_file, student.sampling.n, student.engine.model, sampling, destination
    )
    return summary, found, rejects


def _critique(config, section, loaded, work_dir, questions_file, candidates_file, work) -> dict:
    teacher = section.teacher
    requests_file = storage.join(work_dir, "teacher_requests.parquet")
    critiques.write_teacher_requests(
        candidates_file, questions_file, loaded["teacher_system"], loaded["teacher_user"], requests_file
    )
    out_dir = storage.join(config.run_dir, CACHE["teacher"])
    summary = engines.generate(
        teacher.engine, [requests_file], _teacher_sampling(section), out_dir, config, "critique: teacher"
    )
    destination = storage.join(work["critiques"], "part-00000.parquet")
    name = f"{teacher.engine.kind}:{teacher.engine.model}"
    with Grader(section.grading_timeout_s, section.grading_workers) as grader:
        counts = critiques.write_critiques(
            out_dir, requests_file, candidates_file, questions_file, name, grader, destination
        )
    return {"file": destination, "counts": counts, "summary": summary}


def _check_counts(found: dict, critiqued: dict, examples: dict, candidate_rejects: list, cft_rejects: list) -> None:
    """Nothing lost: every candidate asked for is an example or a reject with its reason."""
    if (
        found["kept"] + len(candidate_rejects) != found["asked"]
        or critiqued["rows"] != found["kept"]
        or examples["rows"] + len(cft_rejects) != found["kept"]
    ):
        raise RuntimeError(
            f"critique: counts do not add up: candidates {found}, {len(candidate_rejects)} rejected; "
            f"{critiqued['rows']} critiques; {examples['rows']} examples + {len(cft_rejects)} rejected"
        )


def _retried_failures(found: dict, critiqued: dict) -> int:
    """Failed answers and critiques that a re-run asks again (not prompts too long for the
    engine's context: the same settings would fail them again)."""
    student = found["failed"] - found["too_long"]
    return student + critiqued.get("status_failed", 0) - critiqued.get("too_long", 0)


def _rejects_table(rejects: list[dict]):
    import pyarrow as pa

    import schemas

    return pa.Table.from_pylist(rejects, schema=schemas.SCHEMAS["rejects"])


def _by_reason(rejects: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rejects:
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return dict(sorted(counts.items()))
