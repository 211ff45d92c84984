"""The evaluate stage end to end: real vLLM (CPU build) on a tiny Qwen2, real benchmark rows.

The config is a namespace with the fields the stage reads (run_dir, models, ray, evaluate)
until the lead adds `evaluate:` to ExperimentConfig; everything else is the real code path.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import RayConfig
from pipelines.evaluate import stage
from pipelines.evaluate.settings import EvaluateConfig
from pipelines.models import small
from schemas.evaluate import EVAL_RESULTS

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]
ENGINE = {
    "kind": "vllm",
    "max_model_len": 256,  # the GPQA questions do not fit: real "prompt too long" failures
    "dtype": "float32",
    "cpu_kv_cache_gib": 1,
    "num_cpus": 1,
    "threads": 1,
    "batch_size": 16,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, shared_data):
    rows = [json.loads(line) for line in (shared_data / "benchmarks/math-500/test.jsonl").open()][:200]
    texts = [row["problem"] + " " + row["solution"] for row in rows]
    return str(small.build(texts, tmp_path_factory.mktemp("tiny"), small.SmallModelSpec(vocab_size=600)))


def _config(run_dir, shared_data, **evaluate):
    benchmarks = [
        {"name": "math-500", "path": str(shared_data / "benchmarks/math-500/test.jsonl"), "limit": 3},
        {"name": "gsm8k", "path": str(shared_data / "benchmarks/gsm8k/test.jsonl"), "limit": 2},
        {"name": "gpqa", "path": str(shared_data / "benchmarks/gpqa_diamond/test.jsonl"), "limit": 2},
        {"kind": "mathematics", "name": "mathematics_heldout", "rows": 3},
    ]
    section = EvaluateConfig.model_validate(
        {"benchmarks": benchmarks, "engine": ENGINE, "max_tokens": 12, "grading_workers": 1, **evaluate}
    )
    return SimpleNamespace(run_dir=str(run_dir), models={}, ray=RayConfig(num_cpus=2), evaluate=section)


Z = 1.959963984540054  # the 97.5% normal quantile


def _eval_rows(run_dir, key: str) -> list[dict]:
    return pq.read_table(run_dir / "eval" / key / stage.PART).to_pylist()


def test_evaluate_writes_tables_retries_failures_reuses_units_and_regrades(ray_local, tmp_path, shared_data, tiny):
    run_dir = tmp_path / "run"
    config = _config(run_dir, shared_data)
    arms = {"base": tiny}

    manifest = stage.run(config, arms)["eval_summary"]
    assert manifest["generation"]["base"]["asked"] == 10
    summary = pq.read_table(run_dir / "eval_summary" / stage.PART).to_pylist()
    assert [(r["arm"], r["benchmark"], r["n"]) for r in summary] == [
        ("base", "math-500", 3),
        ("base", "gsm8k", 2),
        ("base", "gpqa", 2),
        ("base", "mathematics_heldout", 3),
    ]
    assert all(r["generation_seconds"] >= 0 and r["grading_seconds"] >= 0 for r in summary)
    math_rows = _eval_rows(run_dir, "base/math-500")
    assert all(r["status"] == "ok" and r["output"] is not None and r["output_tokens"] <= 12 for r in math_rows)
    assert json.loads(math_rows[0]["prompt"])[0]["content"].startswith("Please reason step by step")
    # GPQA's long prompts do not fit max_model_len: real failures, kept as wrong rows with their error.
    gpqa = _eval_rows(run_dir, "base/gpqa")
    assert [r["status"] for r in gpqa] == ["failed", "failed"] and not any(r["correct"] for r in gpqa)
    assert all(r["error"].startswith("prompt too long") and r["gold"] in "ABCD" for r in gpqa)
    assert summary[2]["failed"] == 2 and manifest["retryable_failures"] == 0
    assert not (run_dir / "_work").exists()

    # The same run again is skipped; a change that touches no unit re-runs the stage, not the units.
    assert stage.run(config, arms)["eval_summary"]["finished_at"] == manifest["finished_at"]
    reused = stage.run(_config(run_dir, shared_data, grading_workers=2), arms)["eval_summary"]
    assert reused["units_run"] == [] and reused["generation"] == {"base": None}
    assert reused["accuracy"] == manifest["accuracy"]

    # Every accuracy carries its Wilson interval; with one arm there is nothing to compare it with.
    summary = pq.read_table(run_dir / "eval_summary" / stage.PART).to_pylist()
    assert all(r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] for r in summary)
    assert summary[2]["accuracy_high"] == pytest.approx(Z**2 / (2 + Z**2))  # gpqa 0/2: the Wilson bound
    assert {r["verdict"] for r in summary} == {"no baseline arm to compare with"}
    assert manifest["comparison"] == {"baseline": None, "alpha": 0.05, "resamples": 10_000, "seed": 0}
    named = stage.run(_config(run_dir, shared_data, grading_workers=2, baseline="base"), arms)["eval_summary"]
    assert named["units_run"] == [] and named["comparison"]["baseline"] == "base"
    summary = pq.read_table(run_dir / "eval_summary" / stage.PART).to_pylist()
    assert {(r["baseline"], r["verdict"], r["p_value"]) for r in summary} == {("base", "the baseline", None)}
    with pytest.raises(ValueError, match="evaluate.baseline: 'other' is not an evaluated arm; arms: base"):
        stage.run(_config(run_dir, shared_data, baseline="other"), arms)

    # A sample whose generation failed for a passing reason is asked again, and only it.
    table = pq.read_table(run_dir / "eval/base/math-500" / stage.PART).to_pylist()
    lost = {**table[1], "output": None, "extracted": None, "status": "failed", "error": "engine died"}
    damaged = pa.Table.from_pylist([table[0], lost, table[2]], schema=EVAL_RESULTS)
    pq.write_table(damaged, run_dir / "eval/base/math-500" / stage.PART)
    retried = stage.run(_config(run_dir, shared_data, grading_workers=3), arms)["eval_summary"]
    assert retried["units_run"] == ["base/math-500"] and retried["generation"]["base"]["asked"] == 1
    assert _eval_rows(run_dir, "base/math-500") == math_rows  # greedy: the same output again

    # A grading change re-grades from the stored outputs, generating nothing.
    unit_file = run_dir / "eval" / "base" / "math-500" / stage.UNIT_FILE
    before = json.loads(unit_file.read_text())
    regraded = stage.run(_config(run_dir, shared_data, grading_timeout_s=3.0), arms)["eval_summary"]
    assert regraded["generation"] == {"base": None} and len(regraded["units_run"]) == 4
    assert [r["output"] for r in _eval_rows(run_dir, "base/math-500")] == [r["output"] for r in math_rows]
    after = json.loads(unit_file.read_text())
    assert after["generation_id"] == before["generation_id"] and after["grading_id"] != before["grading_id"]


def test_bad_arms_are_clear_errors(tmp_path, shared_data):
    config = _config(tmp_path, shared_data)
    with pytest.raises(ValueError, match="no arms"):
        stage.run(config, {})
    with pytest.raises(ValueError, match="arm names must be .* with @s<seed> for a seed.s run"):
        stage.run(config, {"bad name": "x"})
    assert stage.run(SimpleNamespace(run_dir=str(tmp_path), models={}), {"base": "x"}) == {}


def test_absent_optional_benchmarks_are_skipped(tmp_path):
    section = EvaluateConfig.model_validate(
        {"benchmarks": [{"name": "gone", "path": str(tmp_path / "gone.jsonl"), "optional": True}], "engine": ENGINE}
    )
    config = SimpleNamespace(run_dir=str(tmp_path), models={}, ray=RayConfig(num_cpus=2), evaluate=section)
    with pytest.raises(ValueError, match="every benchmark is optional and absent"):
        stage.run(config, {"base": "x"})
