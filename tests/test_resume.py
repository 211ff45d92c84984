"""A real kill: SIGKILL to a running `winnow ingest` (and its embedded Ray), then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN, cli_env, write_config
from tests.test_ingest_stage import make_inputs, sources

pytestmark = [pytest.mark.ray, pytest.mark.slow]
KILL_AFTER_UNITS = 8


def _start(config_path):
    return subprocess.Popen(
        [str(BIN / "winnow"), "ingest", str(config_path)],
        env=cli_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(config_path):
    done = subprocess.run(
        [str(BIN / "winnow"), "ingest", str(config_path)], env=cli_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _kill_midway(process, done_dir, total_units):
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        finished = len(list(done_dir.glob("u-*.json"))) if done_dir.exists() else 0
        if finished >= KILL_AFTER_UNITS:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return finished
        time.sleep(0.05)
    raise AssertionError(
        f"ingest ended or stalled before {KILL_AFTER_UNITS}/{total_units} units: {process.communicate()[0]}"
    )


def test_a_killed_ingest_resumes_and_equals_a_clean_run(tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    make_inputs(root)
    settings = dict(max_text_chars=200, rows_per_unit=200)
    killed_config = write_config(tmp_path / "killed.yaml", tmp_path / "killed", sources(root, 8_000), **settings)
    clean_config = write_config(tmp_path / "clean.yaml", tmp_path / "clean", sources(root, 8_000), **settings)
    total_units = 7 + 40

    finished_at_kill = _kill_midway(
        _start(killed_config), tmp_path / "killed" / "_work" / "ingest" / "done", total_units
    )
    assert finished_at_kill < total_units
    assert not (tmp_path / "killed" / "pool" / "_SUCCESS.json").exists()

    _finish(killed_config)
    _finish(clean_config)
    manifest = json.loads((tmp_path / "killed" / "pool" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["units_reused"] >= finished_at_kill  # not redone

    for table in ("pool", "rejects/ingest"):
        killed = pq.read_table(tmp_path / "killed" / table)
        clean = pq.read_table(tmp_path / "clean" / table)
        key = "id" if table == "pool" else "row"
        sort = [(key, "ascending"), ("file", "ascending")] if table != "pool" else [("id", "ascending")]
        assert killed.num_rows == clean.num_rows > 0
        assert killed.sort_by(sort).equals(clean.sort_by(sort)), table
