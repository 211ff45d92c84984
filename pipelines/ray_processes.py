"""The processes of an embedded Ray, recorded so that none outlives the run that started it.

ray.init makes the GCS and the raylet die with the driver (Linux's parent-death signal), but
the raylet's agents (DashboardAgent, RuntimeEnvAgent) outlive a SIGKILLed driver for over a
minute, ignore SIGTERM and hold port 52365, so a later `ray start --head` cannot start its own
agent. So the driver records its Ray's processes (pid and start time) in
`<logs>/ray-<driver pid>.json`, and a watchdog in a session of its own (`python -m
pipelines.ray_processes RECORD`) waits on a pipe only the driver holds: however the driver
dies, the pipe closes and the watchdog ends what the record names. Should the watchdog be
killed too, the next run of the same run folder ends them at its start (`end_left_behind`).

Only a recorded process whose start time still matches is touched, and only once its driver
is gone: a Ray the user started is never a child of a Winnow driver, so never in a record.
This module imports nothing heavy: the watchdog runs it alone.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import time

import psutil

RECORD_PREFIX = "ray-"


def record_path(log_dir: str, driver_pid: int | None = None) -> str:
    return os.path.join(log_dir, f"{RECORD_PREFIX}{driver_pid or os.getpid()}.json")


def _identity(process: psutil.Process) -> dict:
    return {"pid": process.pid, "create_time": process.create_time(), "name": process.name()}


def record(path: str, watchdog_pid: int | None = None) -> int:
    """Write the driver's descendants (its Ray) to `path`, atomically; returns how many."""
    driver = psutil.Process()
    processes = []
    for child in driver.children(recursive=True):
        try:
            if child.pid != watchdog_pid:
                processes.append(_identity(child))
        except psutil.NoSuchProcess:
            continue
    document = {"driver": _identity(driver), "watchdog": watchdog_pid, "processes": processes}
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)
    return len(processes)


def _alive(identity: dict) -> psutil.Process | None:
    """The process when it is still the one recorded (same pid and start time) and not a
    zombie (a killed driver stays one until its parent reaps it), else None."""
    try:
        process = psutil.Process(identity["pid"])
        if abs(process.create_time() - identity["create_time"]) > 0.01:
            return None  # the pid was reused
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def end_recorded(path: str) -> int:
    """SIGKILL what a record names when its driver is gone; removes the record. How many ended."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return 0
    if _alive(document["driver"]) is not None:
        return 0  # that run is still going: its Ray is its own
    ended = 0
    for identity in document["processes"]:
        process = _alive(identity)
        if process is None:
            continue
        try:
            process.send_signal(signal.SIGKILL)  # the agents ignore SIGTERM
            ended += 1
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs([p for p in map(_alive, document["processes"]) if p is not None], timeout=5)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return ended


def end_left_behind(log_dir: str) -> list[tuple[int, int]]:
    """(driver pid, processes ended) for every killed run whose Ray is still around."""
    ended = []
    for path in sorted(glob.glob(os.path.join(log_dir, f"{RECORD_PREFIX}*.json"))):
        if count := end_recorded(path):
            ended.append((int(os.path.basename(path)[len(RECORD_PREFIX) : -len(".json")]), count))
    return ended


def start_watchdog(path: str, log_file: str) -> subprocess.Popen:
    """A process that ends the recorded Ray once this driver is gone, however it goes."""
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.ray_processes", path, str(os.getpid())],
            stdin=subprocess.PIPE,  # the driver holds the only write end: EOF means it is gone
            stdout=log,
            stderr=log,
            start_new_session=True,  # a Ctrl-C or a kill of the driver's process group spares it
            close_fds=True,
        )


def _watch(path: str, driver_pid: int) -> None:
    sys.stdin.buffer.read()  # returns when the driver closes the pipe: it is exiting or killed
    if not os.path.exists(path):
        return  # a clean shutdown: the driver ended its Ray and dropped the record first
    while _alive({"pid": driver_pid, "create_time": _start_time(driver_pid)}) is not None:
        time.sleep(0.05)  # its files close before it is gone: wait until it is
    count = end_recorded(path)
    if count:
        print(f"ended {count} Ray processes of driver {os.path.basename(path)} after it died", flush=True)


def _start_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return 0.0


if __name__ == "__main__":
    _watch(sys.argv[1], int(sys.argv[2]))
