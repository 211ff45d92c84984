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


def test_a_process_in_its_teardown_is_still_the_one_recorded_and_is_waited_for(tmp_path, monkeypatch):
    """A SIGKILLed Ray agent's command line reads empty while its teardown ends (its memory goes
    first); taken then for another process, it was neither ended nor waited for, and a run that
    came next met it still running (the CI flake of test_the_next_run_ends_what_a_killed_run)."""
    import psutil

    pid = os.fork()
    if pid == 0:
        os.execvp("sleep", ["sleep", "30"])
    try:
        path = str(tmp_path / "ray-1.json")
        ray_processes.record(path)
        with open(path, encoding="utf-8") as handle:
            identity = {p["pid"]: p for p in json.load(handle)["processes"]}[pid]
        process = psutil.Process(pid)
        monkeypatch.setattr(psutil.Process, "cmdline", lambda self: [])  # as in its teardown
        assert ray_processes._alive(identity) is not None
        monkeypatch.undo()
        process.send_signal(signal.SIGKILL)
        ray_processes._wait_exited([process], seconds=5)
        assert not ray_processes._running_process(process)  # exited: a zombie until reaped below
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
