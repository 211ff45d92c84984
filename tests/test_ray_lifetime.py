"""Which Ray a run uses, and that none of an embedded Ray's processes outlives its run:
real `winnow` drivers killed with SIGKILL and SIGINT, real processes recorded and ended."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipelines import ray_processes, ray_runtime
from pipelines.config import RayConfig
from tests.conftest import BIN, cli_env, write_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _config(tmp_path):
    source = {"kind": "mathematics", "rows": 20_000}
    path = write_config(tmp_path / "c.yaml", tmp_path / "run", [source], rows_per_unit=500)
    document = path.read_text() + "ray:\n  num_cpus: 1\n"
    path.write_text(document)
    return path


def _start(config) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "winnow"), "ingest", str(config)],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for_line(process: subprocess.Popen, text: str, seen: list[str]) -> None:
    for line in process.stderr:
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"the run ended before printing {text!r}: {''.join(seen)}")


def _record(run_dir) -> dict:
    (path,) = (run_dir / "logs").glob("ray-*.json")
    return json.loads(path.read_text())


def _survivors(record: dict) -> list[str]:
    alive = []
    for identity in record["processes"]:
        try:
            process = psutil.Process(identity["pid"])
            same = abs(process.create_time() - identity["create_time"]) < 0.01
            if same and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{identity['name']} ({identity['pid']})")
        except psutil.NoSuchProcess:
            continue
    return alive


def _described(record: dict, console: list[str]) -> str:
    """Why a recorded process outlived the next run's clean-up, for a failure that only a loaded
    machine shows: each one recorded against now (start time, command line, state) and whether
    ray_processes still takes it for the process recorded, then the next run's console."""
    lines = []
    for identity in record["processes"]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(identity["pid"])
            lines.append(
                f"{identity['pid']}: recorded {identity['create_time']:.2f} {identity['cmdline'][:1]}; "
                f"now {process.create_time():.2f} {process.cmdline()[:1]} {process.status()}; "
                f"taken for it: {ray_processes._alive(identity) is not None}"
            )
    return "\n".join([*lines, *console])


def _gone_within(record: dict, seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while (alive := _survivors(record)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def test_a_sigkilled_driver_leaves_no_ray_process_behind(tmp_path):
    driver, seen = _start(_config(tmp_path)), []
    _wait_for_line(driver, "units read", seen)
    assert any("ray: an embedded Ray of this run's own" in line for line in seen)
    record = _record(tmp_path / "run")
    assert {"gcs_server", "raylet"} <= {p["name"] for p in record["processes"]}
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    assert _gone_within(record, 15) == []  # the watchdog ended them, agents included


def test_the_next_run_ends_what_a_killed_run_and_its_watchdog_left(tmp_path):
    config = _config(tmp_path)
    driver, seen = _start(config), []
    _wait_for_line(driver, "units read", seen)
    record = _record(tmp_path / "run")
    os.kill(record["watchdog"], signal.SIGKILL)  # as if both went down together (OOM killer, node reboot)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    time.sleep(2)  # the GCS and raylet die with the driver; the agents do not
    left = _survivors(record)
    assert left, "nothing outlived the driver: this test would prove nothing"

    following, seen_next = _start(config), []
    _wait_for_line(following, "ray: ended", seen_next)
    assert f"left by a killed run of this folder (driver pid {driver.pid})" in seen_next[-1]
    assert _survivors(record) == [], _described(record, seen_next)  # before the next run's own Ray starts
    _wait_for_line(following, "units read", seen_next)
    following.send_signal(signal.SIGINT)  # Ctrl-C: one line, status 130, its own Ray ended too
    _, rest = following.communicate(timeout=120)
    assert following.returncode == 130
    assert rest.strip().splitlines()[-1] == "interrupted in ingest; run the same command to resume"
    assert "Traceback" not in rest
    assert list((tmp_path / "run" / "logs").glob("ray-*.json")) == []


def _sleeping_driver(record_path: str) -> subprocess.Popen:
    """A stand-in driver: a process with a child that records itself as Winnow's driver does."""
    code = (
        "import subprocess, sys, time\n"
        "from pipelines import ray_processes\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"ray_processes.record({record_path!r})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=cli_env())


def _ended(process: psutil.Process, seconds: float = 10) -> bool:
    """Gone, or a zombie nobody reaps (its parent died; the container's init may not reap)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_only_recorded_processes_of_a_dead_driver_are_ended(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = str(logs / "ray-1.json")
    driver = _sleeping_driver(path)
    child = psutil.Process(int(driver.stdout.readline()))
    try:
        assert ray_processes.end_left_behind(str(logs)) == []  # its driver lives: not ours to end
        assert not _ended(child, seconds=1)
        document = json.loads((logs / "ray-1.json").read_text())
        recorded = dict(document)
        document["processes"] = [{**p, "create_time": p["create_time"] - 100} for p in document["processes"]]
        with open(path, "w") as handle:
            json.dump(document, handle)  # the same pid, started at another time: a reused pid
        driver.kill()
        driver.wait()
        assert ray_processes.end_left_behind(str(logs)) == []
        assert not _ended(child, seconds=1) and not os.path.exists(path)
        with open(path, "w") as handle:
            json.dump(recorded, handle)
        assert ray_processes.end_left_behind(str(logs)) == [(1, 1)]
        assert _ended(child) and not os.path.exists(path)
    finally:
        driver.kill()
        with contextlib.suppress(psutil.NoSuchProcess):  # ended by the test, as it should be
            child.kill()


def test_the_ray_a_run_uses(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_runtime.chosen_address(RayConfig()) == (None, "embedded")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_runtime.chosen_address(RayConfig()) == ("10.0.0.1:6379", "RAY_ADDRESS")
    assert ray_runtime.chosen_address(RayConfig(address="auto")) == ("auto", "the config's ray.address")
    ray_runtime.configure("/tmp/unused-run", "head:6379")
    try:
        assert ray_runtime.chosen_address(RayConfig(address="auto")) == ("head:6379", "--address")
    finally:
        ray_runtime.shutdown()
    assert ray_runtime.chosen_address(RayConfig()) == ("10.0.0.1:6379", "RAY_ADDRESS")
