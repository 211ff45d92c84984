"""A hand-made run folder for the report and compare tests: real Parquet tables and stage
manifests as the stages write them, and per-question results chosen so every statistic can
be worked out by hand (tests/test_report.py and tests/test_compare.py do so).

Two benchmarks of 20 questions. Which questions each run gets right (q00 ... q19):
  gsm8k:    base-tiny q0-1 | sft_random@s0 q0-3, @s1 q0-5 | sft_top q0-15 | cft q0-4
  math-500: base-tiny none | sft_random@s0 q0-1, @s1 q2-3 | sft_top q0-2  | cft none
sft_random trains on the `random` selection, so it is the baseline (with two seeds).
`make_run(folder, right=RIGHT_SEEDED)` gives sft_top a second seed (gsm8k q0-11, math-500
q0-2), so two arms have two seeds each.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
import schemas.evaluate
from pipelines.evaluate import results as evaluate_results
from pipelines.evaluate.settings import EvaluateConfig

QUESTIONS = 20
RIGHT = {  # run -> benchmark -> indices answered right
    "base-tiny": {"gsm8k": range(2), "math-500": range(0)},
    "sft_random@s0": {"gsm8k": range(4), "math-500": range(2)},
    "sft_random@s1": {"gsm8k": range(6), "math-500": range(2, 4)},
    "sft_top": {"gsm8k": range(16), "math-500": range(3)},
    "cft": {"gsm8k": range(5), "math-500": range(0)},
}
RIGHT_SEEDED = {
    **{run: benchmarks for run, benchmarks in RIGHT.items() if run != "sft_top"},
    "sft_top@s0": RIGHT["sft_top"],
    "sft_top@s1": {"gsm8k": range(12), "math-500": range(3)},
}
TRAINED = {  # run -> (data, wall seconds, cpu seconds)
    "sft_random@s0": ("selection:random", 100.0, 360.0),
    "sft_random@s1": ("selection:random", 120.0, 720.0),
    "sft_top": ("selection:top_ifd", 100.0, 360.0),
    "cft": ("cft", 100.0, 360.0),
}


def table(folder, name: str, data: dict, schema: pa.Schema, manifest: dict | None = None) -> None:
    (folder / name).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data, schema=schema), folder / name / "part-00000.parquet")
    if manifest is not None:
        document = {"identity": {"config_hash": name}, "rows_in": 0, "rows_out": 0, "rows_rejected": 0, **manifest}
        (folder / name / "_SUCCESS.json").write_text(json.dumps(document))


def correct(run: str, benchmark: str, right: dict = RIGHT) -> list[bool]:
    return [index in right[run][benchmark] for index in range(QUESTIONS)]


def make_run(folder, baseline: str | None = None, right: dict = RIGHT) -> None:
    """Write the run into `folder`; `baseline` is what the evaluate stage recorded (None: its
    default); `right`: which questions each run gets right (RIGHT or RIGHT_SEEDED)."""
    rng = np.random.default_rng(0)
    ids = [f"r{i:03d}" for i in range(200)]
    messages = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]] * 200
    pool = {"id": ids, "source": ["s"] * 200, "messages": messages, "reference": [None] * 200, "meta": [None] * 200}
    table(folder, "pool", pool, schemas.SCHEMAS["pool"], {"wall_seconds": 5.0})
    compression = {"id": ids, "n_bytes": [100] * 200, "n_bytes_compressed": [60] * 200,
                   "compression_ratio": rng.normal(1.7, 0.2, 200)}  # fmt: skip
    table(folder, "scores/compression", compression, schemas.SCHEMAS["scores/compression"], {"wall_seconds": 2.0})
    loss = {"id": ids, "n_prompt_tokens": [10] * 200, "n_response_tokens": rng.integers(5, 90, 200).astype(np.int32),
            "loss_given_prompt": rng.normal(3, 0.3, 200), "loss_alone": rng.normal(3.2, 0.3, 200),
            "ifd": [None] * 10 + list(rng.normal(0.9, 0.05, 190)), "truncated": [False] * 200}  # fmt: skip
    table(folder, "scores/model_loss", loss, schemas.SCHEMAS["scores/model_loss"],
          {"wall_seconds": 30.0, "cpu_seconds": 50.0})  # fmt: skip
    for name, chosen, inputs in (
        ("random", ids[:50], {"pool": "x"}),
        ("top_ifd", ids[25:75], {"pool": "x", "scores/model_loss": "y"}),
    ):
        table(folder, f"selections/{name}", {"id": chosen, "rank": list(range(1, 51))}, schemas.SCHEMAS["selections"],
              {"wall_seconds": 1.0, "cpu_seconds": 36.0, "inputs": inputs, "method": name})  # fmt: skip
    trained = {run: TRAINED.get(run) or TRAINED[run.split("@")[0]] for run in right if run != "base-tiny"}
    for run, (data, wall, cpu) in trained.items():
        steps = np.arange(1, 11, dtype=np.int32)
        metrics = {"step": steps, "epoch": np.zeros(10, np.int32), "loss": 3 - 0.1 * steps, "lr": [1e-5] * 10,
                   "tokens": [1000] * 10, "loss_tokens": [500] * 10, "seconds": [1.0] * 10,
                   "start_step": np.zeros(10, np.int32)}  # fmt: skip
        table(folder, f"train_metrics/{run}", metrics, schemas.SCHEMAS["train_metrics"])
        (folder / "models" / run).mkdir(parents=True)
        manifest = {"identity": {"config_hash": run}, "data": data, "wall_seconds": wall, "cpu_seconds": cpu}
        (folder / "models" / run / "_SUCCESS.json").write_text(json.dumps(manifest))
    table(
        folder, "cft", {"id": ["c"], "messages": [messages[0]]}, schemas.SCHEMAS["train_data"], {"wall_seconds": 40.0}
    )
    _evaluation(folder, baseline, right)


def _evaluation(folder, baseline: str | None, right: dict) -> None:
    """eval/<RUN>/<BENCH> tables, and eval_summary as the evaluate stage writes it."""
    section = EvaluateConfig.model_validate(
        {"benchmarks": [{"kind": "mathematics", "rows": QUESTIONS}], "engine": {"kind": "vllm"}, "baseline": baseline}
    )
    summary, answers = [], {}
    for run, benchmarks in right.items():
        for benchmark in benchmarks:
            graded = correct(run, benchmark, right)
            question_ids = [f"q{i:02d}" for i in range(QUESTIONS)]
            rows = {"question_id": question_ids, "prompt": ["[]"] * QUESTIONS, "output": ["\\boxed{1}"] * QUESTIONS,
                    "extracted": ["1"] * QUESTIONS, "gold": ["1" if ok else "2" for ok in graded], "correct": graded,
                    "rule": ["exact"] * QUESTIONS, "status": ["ok"] * QUESTIONS, "error": [None] * QUESTIONS,
                    "finish_reason": ["stop"] * QUESTIONS, "output_tokens": [10] * QUESTIONS}  # fmt: skip
            unit = pa.table(rows, schema=schemas.evaluate.EVAL_RESULTS)
            table(folder, f"eval/{run}/{benchmark}", rows, schemas.evaluate.EVAL_RESULTS)
            summary.append(evaluate_results.summary_row(run, "m", benchmark, unit, 1.0, 0.1))
            answers.setdefault(run, {})[benchmark] = dict(zip(question_ids, graded, strict=True))
    chosen = baseline or "sft_random"
    summary = evaluate_results.with_comparisons(summary, answers, chosen, section)
    recorded = {"baseline": chosen, "alpha": section.alpha, "resamples": section.resamples, "seed": section.seed}
    table(folder, "eval_summary", pa.Table.from_pylist(summary, schema=schemas.evaluate.EVAL_SUMMARY).to_pydict(),
          schemas.evaluate.EVAL_SUMMARY, {"wall_seconds": 60.0, "comparison": recorded})  # fmt: skip
