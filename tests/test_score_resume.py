"""SIGKILL a `winnow run` while it scores, resume it, and compare with a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import BIN, cli_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 4000  # enough parts that the batched scorer is still running when it is killed


def _config(tmp_path, name):
    document = {
        "name": name,
        "run_dir": str(tmp_path / name),
        "ingest": {"sources": [{"kind": "mathematics", "rows": ROWS, "seed": 9}]},
        "models": {"tiny": {"build": {"vocab_size": 500, "train_rows": 500}}},
        "score": {
            "compression": {"rows_per_part": 100},
            "model_loss": {
                "model": "tiny",
                "max_length": 64,
                "rows_per_call": 60,
                "rows_per_part": 60,
                "batch_size": 8,
                "threads": 1,
            },
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _run(config_path):
    done = subprocess.run([str(BIN / "winnow"), "run", str(config_path)], env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_killed_scoring_resumes_to_the_clean_result(tmp_path):
    killed = _config(tmp_path, "killed")
    parts_dir = tmp_path / "killed" / "_work" / "score-model_loss" / "parts"
    process = subprocess.Popen(
        [str(BIN / "winnow"), "run", str(killed)],
        env=cli_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(list(parts_dir.glob("part-*.parquet"))) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "scoring ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    written = len(list(parts_dir.glob("part-*.parquet")))
    assert not (tmp_path / "killed" / "scores" / "model_loss" / "_SUCCESS.json").exists()

    resumed = _run(killed)
    assert "score compression: up to date" in resumed.stderr  # finished before the kill
    _run(_config(tmp_path, "clean"))

    manifest = yaml.safe_load((tmp_path / "killed" / "scores" / "model_loss" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["rows_scored"] <= ROWS - written * 60
    for name in ("compression", "model_loss"):
        ours = pq.read_table(tmp_path / "killed" / "scores" / name).sort_by("id").to_pylist()
        clean = pq.read_table(tmp_path / "clean" / "scores" / name).sort_by("id").to_pylist()
        assert len(ours) == len(clean) > ROWS * 0.9
        for a, b in zip(ours, clean, strict=True):
            for key, value in a.items():
                if isinstance(value, float):  # batches differ after a resume: float noise only
                    assert value == pytest.approx(b[key], abs=1e-5), key
                else:
                    assert value == b[key], key
