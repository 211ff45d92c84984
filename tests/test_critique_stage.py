"""The critique stage end to end on a real pool and the tiny model: a student answering over
HTTP (`vllm serve` on 127.0.0.1) and a teacher in a Ray actor pool (vLLM, CPU build); and
pool candidates critiqued over HTTP through a proxy that fails some requests, resumed by a
re-run. One server for the module; each test copies a prepared run folder."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import schemas
import schemas.critique
from pipelines.config import ExperimentConfig
from pipelines.critique import conclusion
from pipelines.critique import stage as critique_stage
from pipelines.critique.examples import parse_cft
from pipelines.generate.local_server import LocalServer
from pipelines.generate.results import TOO_LONG
from tests.test_generate_openai import FaultProxy

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

EXTRA_ROWS = [
    {"messages": [{"role": "user", "content": "FAILME: what is 6 * 7?"}, {"role": "assistant", "content": "42"}]},
    {"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]},
    {"messages": [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "A1"},
                  {"role": "user", "content": "And Q2?"}, {"role": "assistant", "content": "A2"}]},
    {"messages": [{"role": "user", "content": "An open question with no answer yet?"}]},
    {"messages": [{"role": "user", "content": "Add these up: " + "7 " * 600},
                  {"role": "assistant", "content": "4200"}]},  # over the served context with the prompt
]  # fmt: skip
TINY_VLLM = {"kind": "vllm", "model": "tiny", "dtype": "float32", "max_model_len": 512, "cpu_kv_cache_gib": 1}


def make_config(run_dir: Path, critique: dict) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "critique-test",
            "run_dir": str(run_dir),
            "ray": {"num_cpus": 2},
            "ingest": {"sources": [
                {"kind": "mathematics", "name": "mathematics", "rows": 40, "seed": 0},
                {"kind": "files", "name": "extra", "paths": [str(run_dir.parent / "extra.jsonl")]},
            ]},
            "models": {"tiny": {"build": {"vocab_size": 400, "train_rows": 40}}},
            "critique": critique,
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_local) -> Path:
    """A run folder with its pool and tiny model built; each test copies it."""
    from pipelines.ingest import stage as ingest_stage
    from pipelines.models import stage as models_stage

    root = tmp_path_factory.mktemp("prepared")
    (root / "extra.jsonl").write_text("".join(json.dumps(row) + "\n" for row in EXTRA_ROWS), encoding="utf-8")
    config = make_config(root / "run", {"candidates": "pool", "teacher": {"engine": TINY_VLLM}})
    ingest_stage.run(config)
    models_stage.run(config)
    return root


@pytest.fixture(scope="module")
def served(prepared):
    model = prepared / "run" / "models" / "tiny"
    with LocalServer(model, served_name="tiny", max_model_len=512, log_path=prepared / "server.log") as server:
        yield server


def copy_run(prepared: Path, tmp_path: Path) -> Path:
    shutil.copy(prepared / "extra.jsonl", tmp_path / "extra.jsonl")
    shutil.copytree(prepared / "run", tmp_path / "run")
    return tmp_path / "run"


def read(run_dir: Path, table: str):
    found = pq.read_table(run_dir / table)
    schemas.check(table, found, getattr(schemas.critique, table.upper()))
    return found.to_pylist()


def test_student_over_http_teacher_in_ray_then_new_filters_reuse_every_generation(prepared, served, tmp_path):
    run_dir = copy_run(prepared, tmp_path)
    student = {"kind": "openai", "base_url": served.base_url, "model": "tiny", "api_key_env": served.api_key_env}
    critique = {
        "questions": {"sources": ["mathematics"], "limit": 12, "seed": 3, "require_reference": True},
        "candidates": {"engine": student, "sampling": {"max_tokens": 24, "n": 2}},
        "teacher": {"engine": TINY_VLLM, "sampling": {"max_tokens": 200}, "force_conclusion_chars": 40},
    }
    manifest = critique_stage.run(make_config(run_dir, critique))["cft"]
    assert manifest["questions"] == {"read": 12, "kept": 12, "rejected": 0}
    candidates, critiques, cft = read(run_dir, "candidates"), read(run_dir, "critiques"), read(run_dir, "cft")
    assert manifest["candidates"]["asked"] == 24 and len(candidates) == manifest["candidates"]["kept"]
    assert len(candidates) + manifest["candidates"]["empty"] == 24
    assert Counter(c["question_id"] for c in candidates).most_common(1)[0][1] <= 2
    assert {c["id"] for c in critiques} == {c["id"] for c in candidates}
    assert all(c["status"] == "ok" and c["conclusion"] in ("right", "wrong") for c in critiques)
    assert all(c["verdict"] == "wrong" for c in critiques)  # a random model does not answer school math
    assert all(c["agrees"] == (c["conclusion"] == "wrong") for c in critiques)
    assert all(conclusion.parse(c["critique"]) == c["conclusion"] for c in critiques)
    assert len(cft) == len(critiques) == manifest["rows_out"]
    labels = Counter(row["label"] for row in cft)
    assert {k: v["rows"] for k, v in manifest["cft"]["labels"].items()} == {"right": labels["right"],
                                                                          "wrong": labels["wrong"]}  # fmt: skip
    by_id = {c["id"]: c for c in candidates}
    for row in cft:
        question, solution, critique_text = parse_cft(row["messages"])
        assert solution == by_id[row["id"]]["solution"] and critique_text.endswith(f"Conclusion: {row['label']}")
    exported = (run_dir / "exports" / "cft" / "cft.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(exported) == len(cft)
    alpaca = json.loads((run_dir / "exports" / "cft" / "cft_alpaca.json").read_text(encoding="utf-8"))
    assert alpaca[0]["output"].startswith("Critique:\n") and "Question:\n" in alpaca[0]["instruction"]
    counted = manifest["critiques"]  # counts by status, conclusion, verdict and agreement
    assert counted["rows"] == counted["status_ok"] == len(critiques) == counted["verdict_wrong"]
    assert [counted.get(f"conclusion_{label}", 0) for label in ("right", "wrong")] == [labels["right"], labels["wrong"]]
    assert [counted.get(f"agrees_{agrees}", 0) for agrees in ("true", "false")] == [labels["wrong"], labels["right"]]
    balance = manifest["cft"]["labels"]
    assert abs(balance["right"]["fraction"] + balance["wrong"]["fraction"] - 1) < 1e-3
    teacher = manifest["teacher"]
    assert (teacher["kind"], teacher["model"]) == ("vllm", "tiny") and len(teacher["weights"]["files_sha256"]) == 64
    assert teacher["sampling"]["temperature"] == 0.3 and teacher["sampling"]["top_p"] == 0.95
    assert teacher["sampling"]["regex"].endswith(r"\nConclusion: (right|wrong) \[END\]")
    assert manifest["student"]["sampling"]["n"] == 2 and manifest["student"]["kind"] == "openai"
    assert "base_url" not in manifest["student"]["settings"]  # an address is not a setting
    for name in ("teacher_system", "teacher_user", "student_system"):
        prompt = manifest["prompts"][name]
        assert prompt["source"] == f"builtin:{name}" and len(prompt["sha256"]) == 64 and prompt["text"]
    assert manifest["candidates"]["generation"]["ok"] == 24
    assert manifest["critiques"]["generation"]["asked"] == len(candidates)

    again = critique_stage.run(make_config(run_dir, critique))["cft"]
    assert again == manifest  # up to date: skipped

    critique["filters"] = {"drop_shortest_critiques": 0.25}
    refiltered = critique_stage.run(make_config(run_dir, critique))["cft"]
    assert refiltered["candidates"]["generation"]["asked"] == 0  # every answer and critique reused
    assert refiltered["critiques"]["generation"]["asked"] == 0
    dropped = int(0.25 * len(critiques))
    assert refiltered["rows_out"] == len(critiques) - dropped
    assert refiltered["rejects_by_reason"].get("among the shortest critiques") == dropped
    shortest = sorted(len(c["critique"]) for c in critiques)
    kept_lengths = [len(parse_cft(r["messages"])[2]) for r in read(run_dir, "cft")]
    assert min(kept_lengths) >= shortest[dropped - 1]


def test_pool_candidates_openai_teacher_failures_are_retried_by_a_rerun(prepared, served, tmp_path):
    run_dir = copy_run(prepared, tmp_path)
    failing = lambda body, attempt: "500" if "FAILME" in body["messages"][-1]["content"] else None  # noqa: E731
    with FaultProxy(served, failing) as proxy:
        teacher = {"kind": "openai", "base_url": proxy.base_url, "model": "tiny", "api_key_env": None,
                   "max_retries": 1, "backoff_base_s": 0.05, "max_in_flight": 4}  # fmt: skip
        critique = {
            "questions": {"sources": ["mathematics", "extra"]},  # every row
            "candidates": "pool",
            "teacher": {"engine": teacher, "sampling": {"max_tokens": 200}, "force_conclusion_chars": 40},
            "drop_disagreeing": True,
        }
        config = make_config(run_dir, critique)
        first = critique_stage.run(config)["cft"]
    reasons = first["rejects_by_reason"]
    assert first["questions"]["read"] == 45
    assert first["failed_rows"] == 1 and reasons["critique failed"] == 1  # a prompt too long is not retried
    assert reasons["question and solution too long for the teacher"] == 1 and first["critiques"]["too_long"] == 1
    assert reasons.get("multi-turn conversation") == 1 and reasons.get("no response to critique") == 1
    critiques = {c["id"]: c for c in read(run_dir, "critiques")}
    failed = [c for c in critiques.values() if c["status"] == "failed"]
    (too_long,) = [c for c in failed if c["error"].startswith(TOO_LONG)]
    (server_error,) = [c for c in failed if c is not too_long]
    assert "400" in too_long["error"] and too_long["attempts"] == 1
    assert "500" in server_error["error"] and server_error["attempts"] == 2
    right = [c for c in critiques.values() if c["verdict"] is not None]
    assert right and all(c["verdict"] == "right" for c in right)  # the pool's own answers are the references
    disagreeing = sum(c["agrees"] is False for c in critiques.values())
    assert reasons.get("teacher disagrees with the reference", 0) == disagreeing
    rejects = pq.read_table(run_dir / "rejects" / "critique")
    schemas.check("rejects", rejects)
    assert rejects.num_rows == first["rows_rejected"]

    with FaultProxy(served, lambda body, attempt: None) as healed:
        critique["teacher"]["engine"] = {**teacher, "base_url": healed.base_url}  # an address is not a setting
        config = make_config(run_dir, critique)
        second = critique_stage.run(config)["cft"]
        assert len(healed.actions) == 1  # only the failed critique was asked again
        third = critique_stage.run(config)["cft"]
    assert second["failed_rows"] == 0 and "critique failed" not in second["rejects_by_reason"]
    assert second["rejects_by_reason"]["question and solution too long for the teacher"] == 1
    assert second["critiques"]["generation"]["asked"] == 1 and second["rows_out"] >= first["rows_out"]
    assert third == second  # finished without failures: skipped
