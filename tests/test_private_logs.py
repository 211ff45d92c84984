"""Logs and process records no other local user can read, redirect or plant: an object-store
run's logs in a private folder of the user's, log files never written through a symbolic link,
and a recorded process ended only when the record is the user's own and the process is the one
recorded (start time and command line). Real folders, files, links and processes."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time

import psutil
import pytest

from pipelines import ray_processes, run_logs

OTHER_USER = 65534  # nobody


@pytest.fixture
def state_home(tmp_path, monkeypatch):
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    yield home
    run_logs.stop()


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _needs_root_to_chown() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")


def test_an_object_store_run_logs_into_a_private_folder_of_the_users(state_home):
    folder = run_logs.start("s3://bucket/runs/one", ["winnow", "score", "c.yaml"])
    assert folder.startswith(str(state_home / "winnow" / "logs") + os.sep)
    for path in (state_home / "winnow", state_home / "winnow" / "logs", folder):
        assert _mode(path) == 0o700, path
        assert os.lstat(path).st_uid == os.getuid()
    run_logs.logger().info("a line")
    assert _mode(os.path.join(folder, "winnow.log")) == 0o600
    assert run_logs.log_dir("s3://bucket/runs/two") != folder  # one folder a run


@pytest.mark.parametrize("planted", ["open to others", "another user's", "a symbolic link"])
def test_a_log_folder_someone_else_could_use_is_refused(state_home, tmp_path, planted):
    run_logs.start("s3://bucket/runs/another", ["winnow", "score", "c.yaml"])  # the private parents
    run_logs.stop()
    folder = run_logs.log_dir("s3://bucket/runs/one")
    if planted == "open to others":
        os.mkdir(folder, 0o700)
        os.chmod(folder, 0o777)
    elif planted == "another user's":
        _needs_root_to_chown()
        os.mkdir(folder, 0o700)
        os.chown(folder, OTHER_USER, OTHER_USER)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        os.symlink(tmp_path / "elsewhere", folder)
    with pytest.raises(run_logs.UnsafeLogFolder, match=folder):
        run_logs.start("s3://bucket/runs/one", ["winnow", "score", "c.yaml"])
    assert run_logs.current_dir() is None
    assert not (tmp_path / "elsewhere" / "winnow.log").exists()


def test_a_log_file_is_never_written_through_a_symbolic_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own file\n")
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / "winnow.log").symlink_to(victim)
    try:
        with pytest.raises(run_logs.UnsafeLogFolder, match="winnow.log is a symbolic link"):
            run_logs.start(str(tmp_path / "run"), ["winnow", "score", "c.yaml"])
    finally:
        run_logs.stop()
    assert victim.read_text() == "the user's own file\n"


@pytest.fixture
def sleeper():
    """A live process of the user's that no Winnow run started."""
    process = subprocess.Popen(["sleep", "120"])
    found = psutil.Process(process.pid)
    while found.cmdline() != ["sleep", "120"]:  # until the exec: the fork shows pytest's own command line
        time.sleep(0.01)
    yield found
    process.kill()
    process.wait()


def _gone_driver() -> dict:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return {"pid": int(done.stdout), "create_time": 0.0, "name": "python", "cmdline": ["python"]}


def _plant(folder, identity: dict, name: str = "ray-1.json") -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"driver": _gone_driver(), "watchdog": None, "processes": [identity]}, handle)
    os.chmod(path, 0o600)
    return path


def _identity(process: psutil.Process) -> dict:
    return {
        "pid": process.pid,
        "create_time": process.create_time(),
        "name": process.name(),
        "cmdline": process.cmdline(),
    }


def _running(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.status() != psutil.STATUS_ZOMBIE
    return False


@pytest.mark.parametrize(
    "record",
    ["another start time", "another command line", "another user's record", "open to others", "a symbolic link"],
)
def test_a_record_that_does_not_match_leaves_the_process_alone(tmp_path, sleeper, record):
    identity = _identity(sleeper)
    if record == "another start time":
        identity["create_time"] -= 100
    elif record == "another command line":
        identity["cmdline"] = ["/usr/bin/sleep", "60"]  # the pid and start time are public: a planter knows them
    path = _plant(tmp_path, identity)
    if record == "another user's record":
        _needs_root_to_chown()
        os.chown(path, OTHER_USER, OTHER_USER)
    elif record == "open to others":
        os.chmod(path, 0o666)
    elif record == "a symbolic link":
        os.rename(path, tmp_path / "elsewhere.json")
        os.symlink(tmp_path / "elsewhere.json", path)
    assert ray_processes.end_left_behind(str(tmp_path)) == []
    assert _running(sleeper)


def test_a_matching_record_of_a_gone_driver_still_ends_its_process(tmp_path, sleeper):
    _plant(tmp_path, _identity(sleeper))
    assert ray_processes.end_left_behind(str(tmp_path)) == [(1, 1)]
    deadline = time.monotonic() + 30  # SIGKILL sent; on a loaded machine the exit can lag the wait
    while _running(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(sleeper)
    assert list(tmp_path.glob("ray-*.json")) == []


def test_a_ray_process_matches_its_record_after_ray_retitles_it():
    """Ray renames its processes (agent.py becomes ray::DashboardAgent, ray::IDLE becomes
    ray::Echo.echo): still the recorded process; another program is not."""
    agent = ["/venv/bin/python", f"{ray_processes._RAY_CODE}dashboard/agent.py", "--node-ip-address=127.0.0.1"]
    assert ray_processes._command(agent) == ray_processes._command(["ray::DashboardAgent", "", ""])
    assert ray_processes._command(["ray::IDLE"]) == ray_processes._command(["ray::Echo.echo"])
    assert ray_processes._command(["ray::IDLE"]) != ray_processes._command(["sleep", "60"])
    assert ray_processes._command(["sleep", "60"]) != ray_processes._command(["sleep", "61"])
