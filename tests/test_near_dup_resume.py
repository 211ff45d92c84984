"""SIGKILL `winnow score` while near_dup signs (no clustering result yet) and again while it
writes its parts (result saved), resume each time, and compare with a clean run's table."""

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

ROWS = 6000
WORK = ("_work", "score-near_dup")


def _config(tmp_path, name):
    document = {
        "name": name,
        "run_dir": str(tmp_path / name),
        "ingest": {"sources": [{"kind": "mathematics", "rows": ROWS, "seed": 4}]},
        "score": {"near_dup": {"rows_per_part": 150, "threshold": 0.7}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _winnow(*args):
    done = subprocess.run([str(BIN / "winnow"), *args], env=cli_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _kill_when(config_path, ready, what: str) -> None:
    """Start `winnow score`, SIGKILL its process group as soon as `ready()` holds."""
    process = subprocess.Popen(
        [str(BIN / "winnow"), "score", str(config_path)],
        env=cli_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, f"near_dup ended before {what}"
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _table(run_dir):
    return pq.read_table(run_dir / "scores" / "near_dup").sort_by("id").to_pylist()


def test_near_dup_killed_twice_resumes_to_the_clean_table(tmp_path):
    clean, killed = _config(tmp_path, "clean"), _config(tmp_path, "killed")
    for config in (clean, killed):
        _winnow("ingest", str(config))
    _winnow("score", str(clean))
    work = tmp_path.joinpath("killed", *WORK)

    _kill_when(killed, lambda: len(list((work / "bands").glob("*.parquet"))) >= 3, "signing")
    assert not (work / "near_dup_result.parquet").exists(), "killed too late: the result was already saved"

    parts = work / "parts"
    _kill_when(killed, lambda: len(list(parts.glob("part-*.parquet"))) >= 2, "writing parts")
    assert (work / "near_dup_result.parquet").exists()
    assert not (tmp_path / "killed" / "scores" / "near_dup" / "_SUCCESS.json").exists()
    written = len(list(parts.glob("part-*.parquet")))

    _winnow("score", str(killed))
    manifest = yaml.safe_load((tmp_path / "killed" / "scores" / "near_dup" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["rows_scored"] < manifest["rows_out"], (manifest, written)
    ours, theirs = _table(tmp_path / "killed"), _table(tmp_path / "clean")
    assert ours == theirs and len(ours) == manifest["rows_out"]
    assert sum(not row["keep"] for row in ours) > 0  # the generated pool has near-duplicates to find
