"""A process caught between its fork and its exec when the driver records its Ray shows the
driver's own command line; recorded so, it would never match again and a killed run's process
would be left running. The record waits for the exec (issue 26)."""

from __future__ import annotations

import json
import os
import signal
import time

from pipelines import ray_processes


def test_a_child_recorded_mid_fork_is_recorded_as_what_it_execs(tmp_path):
    pid = os.fork()
    if pid == 0:  # the child: as a Ray process starting on a busy machine, slow to exec
        time.sleep(0.5)
        os.execvp("sleep", ["sleep", "30"])
    try:
        path = str(tmp_path / "ray-1.json")
        ray_processes.record(path)
        with open(path, encoding="utf-8") as handle:
            recorded = {p["pid"]: p for p in json.load(handle)["processes"]}
        assert recorded[pid]["cmdline"] == ["sleep", "30"]
        assert ray_processes._alive(recorded[pid]) is not None  # it still matches: a later run can end it
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
