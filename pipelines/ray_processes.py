"""The processes of an embedded Ray, recorded so that none outlives the run that started it.

ray.init makes the GCS and the raylet die with the driver (Linux's parent-death signal), but
the raylet's agents (DashboardAgent, RuntimeEnvAgent) outlive a SIGKILLed driver for over a
minute, ignore SIGTERM and hold port 52365, so a later `ray start --head` cannot start its own
agent. So the driver records its Ray's processes (pid and start time) in
`<logs>/ray-<driver pid>.json`, and a watchdog in a session of its own (`python -m
pipelines.ray_processes RECORD`) waits on a pipe only the driver holds: however the driver
dies, the pipe closes and the watchdog ends what the record names. Should the watchdog be
killed too, the next run of the same run folder ends them at its start (`end_left_behind`).

Only a recorded process whose start time and command line still match is touched (an empty
command line, a process inside its exec or its teardown, goes by pid and start time), and only
once its driver is gone: a Ray the user started is never a child of a Winnow driver, so never
in a record. A record is read only when it is a plain file of the user's own that no one else
may write (never through a symbolic link): in a shared folder another local user could
otherwise plant one naming any of the user's processes. The records are written 0600.
This module imports nothing heavy: the watchdog runs it alone.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time

import psutil

RECORD_PREFIX = "ray-"
EXIT_SECONDS = 5  # how long a clean-up waits for what it killed to exit
RETITLED = re.compile(r"^[\w.-]+::")  # ray::IDLE, ray::DashboardAgent, VLLM::EngineCore
_RAY_CODE = os.path.dirname(importlib.util.find_spec("ray").origin) + os.sep  # found without importing Ray


def record_path(log_dir: str, driver_pid: int | None = None) -> str:
    return os.path.join(log_dir, f"{RECORD_PREFIX}{driver_pid or os.getpid()}.json")


def _identity(process: psutil.Process, parent_cmdline: list[str] | None = None) -> dict:
    return {
        "pid": process.pid,
        "create_time": process.create_time(),
        "name": process.name(),
        "cmdline": _cmdline(process, parent_cmdline),
    }


def _cmdline(process: psutil.Process, parent_cmdline: list[str] | None = None) -> list[str]:
    """The command line once the process has exec'd: caught in its exec it reads as [], and
    caught between fork and exec as its parent's (on a busy machine, for a second or more),
    which it stops matching once the exec lands: read again, for up to 2 s."""
    found: list[str] = []
    for _ in range(200):
        found = process.cmdline()
        if found and found != parent_cmdline:
            return found
        time.sleep(0.01)
    return found  # a fork that never execs keeps its parent's command line


def _command(cmdline: list[str]) -> list[str] | str:
    """What a recorded command line must still be. Ray (and vLLM) retitle their processes as
    they start and take work (python .../ray/dashboard/agent.py becomes ray::DashboardAgent,
    ray::IDLE becomes ray::Echo.echo): such a process matches any title of the same prefix."""
    if cmdline and (title := RETITLED.match(cmdline[0])):
        return title.group(0)
    if any(part.startswith(_RAY_CODE) for part in cmdline[:3]):
        return "ray::"  # one of Ray's processes before it retitles itself
    return cmdline


def record(path: str, watchdog_pid: int | None = None) -> int:
    """Write the driver's descendants (its Ray) to `path`, atomically; returns how many."""
    driver = psutil.Process()
    driver_cmdline = driver.cmdline()
    processes = []
    for child in driver.children(recursive=True):
        try:
            if child.pid != watchdog_pid:
                processes.append(_identity(child, driver_cmdline))
        except psutil.NoSuchProcess:
            continue
    document = {"driver": _identity(driver), "watchdog": watchdog_pid, "processes": processes}
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
    os.replace(temporary, path)
    return len(processes)


def _alive(identity: dict) -> psutil.Process | None:
    """The process when it is still the one recorded (same pid, start time and command line)
    and not a zombie (a killed driver stays one until its parent reaps it), else None."""
    try:
        process = psutil.Process(identity["pid"])
        if abs(process.create_time() - identity["create_time"]) > 0.01:
            return None  # the pid was reused
        if "cmdline" not in identity:
            return None  # a record of an older Winnow, without one
        # [] is a process inside its exec (when recorded) or in its teardown (now: its memory,
        # command line included, goes first): its pid and start time are its identity then
        if identity["cmdline"] and (now := process.cmdline()) and _command(now) != _command(identity["cmdline"]):
            return None  # not the process recorded
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _read_own_record(path: str) -> dict | None:
    """The record's document when it is a plain file of this user's that only this user may
    write, opened without following a symbolic link; else None."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # gone, unreadable, or a symbolic link
    with open(descriptor, encoding="utf-8") as handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o022:
            return None
        try:
            return json.load(handle)
        except ValueError:
            return None


def end_recorded(path: str) -> int:
    """SIGKILL what a record names when its driver is gone; removes the record. How many ended."""
    document = _read_own_record(path)
    if document is None:
        return 0
    if _alive(document["driver"]) is not None:
        return 0  # that run is still going: its Ray is its own
    ended = []
    for identity in document["processes"]:
        process = _alive(identity)
        if process is None:
            continue
        try:
            process.send_signal(signal.SIGKILL)  # the agents ignore SIGTERM
            ended.append(process)
        except psutil.NoSuchProcess:
            continue
    _wait_exited(ended, EXIT_SECONDS)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return len(ended)


def _wait_exited(processes: list[psutil.Process], seconds: float) -> None:
    """Until every process has exited (gone, or a zombie nobody reaps), at most `seconds`: a
    killed agent holds its ports until its teardown ends. Waited for as the processes signalled
    (psutil knows each by pid and start time), not found again through `_alive`: a process in
    its teardown reads an empty command line, and was once taken for another and not waited
    for. Not psutil.wait_procs either: it waits out the whole timeout on a zombie that is not
    its own child."""
    deadline = time.monotonic() + seconds
    while processes := [p for p in processes if _running_process(p)]:
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def end_left_behind(log_dir: str) -> list[tuple[int, int]]:
    """(driver pid, processes ended) for every killed run whose Ray is still around."""
    ended = []
    for path in sorted(glob.glob(os.path.join(log_dir, f"{RECORD_PREFIX}*.json"))):
        if count := end_recorded(path):
            ended.append((int(os.path.basename(path)[len(RECORD_PREFIX) : -len(".json")]), count))
    return ended


def start_watchdog(path: str, log_file: str) -> subprocess.Popen:
    """A process that ends the recorded Ray once this driver is gone, however it goes."""
    descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with open(descriptor, "ab") as log:
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
    while _running(driver_pid):
        time.sleep(0.05)  # its files close before it is gone: wait until it is
    count = end_recorded(path)
    if count:
        print(f"ended {count} Ray processes of driver {os.path.basename(path)} after it died", flush=True)


def _running(pid: int) -> bool:
    try:
        return _running_process(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _running_process(process: psutil.Process) -> bool:
    """Not gone and not a zombie (a process whose parent died stays one if init does not reap)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


if __name__ == "__main__":
    _watch(sys.argv[1], int(sys.argv[2]))
