"""Shared fixtures: real files, a real local Ray, real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the public data sets live beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One embedded local Ray for the tests that call stages in-process."""
    import ray

    from pipelines.config import RayConfig
    from pipelines.ray_runtime import ensure_ray

    ensure_ray(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


def write_config(path: Path, run_dir: Path, sources: list[dict], **ingest) -> Path:
    document = {"name": "test", "run_dir": str(run_dir), "ingest": {"sources": sources, **ingest}}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def rows_config(tmp_path: Path, name: str, rows: list[dict], **sections):
    """A loaded config for an in-process run on the embedded 2-CPU Ray: `rows` written to
    tmp_path/rows.jsonl as the one source, the run in tmp_path/run, `sections` (score,
    select, ...) added."""
    from pipelines import config as config_module

    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    document = {
        "name": name,
        "run_dir": str(tmp_path / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {"sources": [{"kind": "files", "name": "rows", "paths": [str(tmp_path / "rows.jsonl")]}]},
        **sections,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    return config_module.load(tmp_path / "config.yaml")


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for a `winnow` subprocess: this venv first on PATH (Ray's workers need it)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def winnow(*args: str) -> subprocess.CompletedProcess:
    """`winnow ARGS` to completion, which must succeed; its output captured."""
    done = subprocess.run([str(BIN / "winnow"), *args], env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def winnow_killed_when(ready, *args: str, what: str = "it could be killed", timeout: float = 300) -> None:
    """Start `winnow ARGS` in a session of its own and SIGKILL the whole session (driver,
    Ray, workers) as soon as `ready()` holds; fails when the command ends first."""
    process = subprocess.Popen(
        [str(BIN / "winnow"), *args],
        env=cli_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, f"winnow {args[0]} ended before {what}"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# A model actor on one CPU thread in fp32, with the tokenizer's chat template when it has one
CPU_ACTOR = {"device": "cpu", "num_gpus": 0, "num_cpus": 1, "threads": 1, "dtype": "float32", "template": "auto"}


def cpu_model_loss_settings(**changes) -> dict:
    """ModelLossActor settings for a tiny model on one CPU thread; `changes` override."""
    settings = {
        **CPU_ACTOR,
        "response_marker": "Assistant: ",
        "response_tokens": "overlap",
        "max_length": 128,
        "batch_size": 4,
        "max_batch_tokens": 512,
        "sample_fraction": 1.0,
        "sample_seed": 0,
    }
    return {**settings, **changes}
