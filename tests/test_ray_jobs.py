"""The `ray job submit` entry points in ray_jobs/ and their runtime environment file."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import zipfile

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import experiment
from ray_jobs import run
from tests.conftest import REPO, write_config

STAGE_MODULES = ["ingest", "models", "score", "select", "critique", "train", "evaluate", "report"]
RUNTIME_ENV = REPO / "ray_jobs" / "runtime_env.yaml"


@pytest.mark.parametrize("module", ["run", *STAGE_MODULES])
def test_every_entry_point_answers_help(module):
    done = subprocess.run(
        [sys.executable, "-m", f"ray_jobs.{module}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"usage: python -m ray_jobs.{module}" in done.stdout
    assert "--config" in done.stdout and "--run-dir" in done.stdout
    assert ("--stage" in done.stdout) == (module == "run")  # a stage module runs its own stage only


def test_every_stage_module_exists_and_every_registered_stage_has_one():
    modules = {path.stem for path in (REPO / "ray_jobs").glob("[!_]*.py")} - {"run"}
    assert modules == set(STAGE_MODULES)
    assert set(experiment.STAGES) <= modules, "a stage registered in pipelines/experiment.py has no ray_jobs module"


def test_a_stage_not_registered_yet_is_a_clear_error(capsys):
    pending = [stage for stage in STAGE_MODULES if stage not in experiment.STAGES] or ["no-such-stage"]
    for stage in pending:
        assert run.main(["--config", str(REPO / "configs" / "demo.yaml")], stages=[stage]) == 2
        error = capsys.readouterr().err
        assert f"stage {stage} is not available in this version of Winnow" in error
        assert "stages: ingest" in error


def test_run_rejects_an_unknown_stage_flag_before_doing_anything(capsys, tmp_path):
    assert run.main(["--config", str(REPO / "configs" / "demo.yaml"), "--stage", "nope"]) == 2
    assert "stage nope is not available" in capsys.readouterr().err


def test_a_bad_config_is_reported_without_a_traceback(capsys, tmp_path):
    assert run.main(["--config", str(tmp_path / "missing.yaml")], stages=["ingest"]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_running_a_module_by_file_path_is_refused_with_the_right_command():
    # ray_jobs/select.py run by path would shadow the standard library's `select` module.
    done = subprocess.run(
        [sys.executable, "ray_jobs/select.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "python -m ray_jobs.select" in done.stderr


@pytest.mark.ray
def test_the_ingest_module_runs_its_stage_on_the_local_ray(ray_local, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    source = {"kind": "mathematics", "name": "mathematics", "rows": 300, "seed": 1}
    config = write_config(tmp_path / "c.yaml", run_dir, [source])
    monkeypatch.setattr(sys, "argv", ["ray_jobs.ingest", "--config", str(config)])

    with pytest.raises(SystemExit) as exited:
        runpy.run_module("ray_jobs.ingest", run_name="__main__", alter_sys=True)

    assert exited.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["run_dir"] == str(run_dir)
    assert list(summary["stages"]) == ["pool"]  # ingest only: no models, no scores
    manifest = json.loads((run_dir / "pool" / "_SUCCESS.json").read_text())
    assert summary["stages"]["pool"]["rows_out"] == manifest["rows_out"] == pq.read_table(run_dir / "pool").num_rows
    assert manifest["sources"]["mathematics"]["rows_in"] == 300
    assert not (run_dir / "scores").exists()


def test_the_runtime_env_file_is_valid_for_ray_and_carries_no_secrets():
    from ray.runtime_env import RuntimeEnv

    document = yaml.safe_load(RUNTIME_ENV.read_text())
    RuntimeEnv(**document, working_dir=str(REPO))  # Ray's own validation of every field
    assert "working_dir" not in document  # `--working-dir .` says where the code is
    for name in document.get("env_vars", {}):
        assert not any(word in name.upper() for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")), name


def test_the_runtime_env_uploads_the_code_and_nothing_heavy(tmp_path):
    """Package the checkout exactly as `ray job submit` does, ignoring .gitignore (a copy of
    the project need not have one), and look inside the upload."""
    from ray._private.runtime_env.packaging import create_package

    excludes = yaml.safe_load(RUNTIME_ENV.read_text())["excludes"]
    package = tmp_path / "package.zip"
    create_package(str(REPO), package, include_gitignore=False, excludes=excludes)
    names = zipfile.ZipFile(package).namelist()

    assert {"ray_jobs/run.py", "ray_jobs/runtime_env.yaml", "configs/demo.yaml", "pyproject.toml"} <= set(names)
    assert any(name.startswith("sql/") for name in names) and any(name.startswith("schemas/") for name in names)
    heavy = (".venv/", ".git/", "runs/", "bench/results/")
    assert not [name for name in names if name.startswith(heavy) or "__pycache__" in name]
    assert package.stat().st_size < 20 * 2**20
