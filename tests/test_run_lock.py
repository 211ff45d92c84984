"""One run at a time in a run folder (issue 26, item 9): RUN/_lock.json names its holder."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from pipelines import config, experiment, run_lock, storage
from tests.conftest import BIN, REPO, cli_env

HOLD = """
import sys, time
from pipelines import run_lock
with run_lock.held(sys.argv[1], ["holder-of-the-test"]):
    print("held", flush=True)
    time.sleep(300)
"""


def _config(tmp_path, run_dir) -> str:
    document = {"name": "t", "run_dir": str(run_dir), "ingest": {"sources": [{"kind": "mathematics", "rows": 10}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def _lock_document(**fields) -> dict:
    document = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_started": psutil.Process().create_time(),
        "command": "winnow run old.yaml",
        "started_at": "2025-01-01T00:00:00+0000",
        "token": "t0",
    }
    return {**document, **fields}


def _write_lock(run_dir, document) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / run_lock.LOCK_FILE).write_text(json.dumps(document))


def _read_lock(run_dir) -> dict:
    return json.loads((run_dir / run_lock.LOCK_FILE).read_text())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not psutil.pid_exists(child.pid)
    return child.pid


@pytest.fixture
def holder(tmp_path):
    """A real second process holding the lock of tmp_path/run."""
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    yield run_dir, process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_command_on_a_held_folder_exits_2_naming_the_holder(tmp_path, holder):
    run_dir, process = holder
    config_path = _config(tmp_path, run_dir)
    named = f"host {socket.gethostname()}, pid {process.pid}"
    for command in (
        [str(BIN / "winnow"), "ingest", config_path],
        [sys.executable, "-m", "ray_jobs.run", "--config", config_path, "--stage", "ingest"],
        [str(BIN / "winnow"), "report", str(run_dir)],
    ):
        done = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (command, done.stdout + done.stderr)
        assert named in done.stderr and "holder-of-the-test" in done.stderr, done.stderr
        assert "is in use by another run" in done.stderr
    assert _read_lock(run_dir)["pid"] == process.pid  # the holder's lock is left as it was
    assert not (run_dir / "pool").exists()


def test_the_lock_of_a_killed_holder_is_taken_over_with_a_line(tmp_path, holder, capsys):
    run_dir, process = holder
    process.send_signal(signal.SIGKILL)  # no `finally` runs: the lock file stays behind
    process.wait()
    assert _read_lock(run_dir)["pid"] == process.pid
    with run_lock.held(str(run_dir), ["second"]):
        assert _read_lock(run_dir)["pid"] == os.getpid()
    said = capsys.readouterr().err
    assert "lock: took over" in said and f"pid {process.pid} is not running" in said, said
    assert not (run_dir / run_lock.LOCK_FILE).exists()


def test_a_stale_lock_with_a_dead_pid_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    dead = _dead_pid()
    _write_lock(run_dir, _lock_document(pid=dead, process_started=1.0))
    lock = run_lock.acquire(str(run_dir), ["winnow", "run", "c.yaml"])
    assert _read_lock(run_dir) == lock and lock["command"] == "winnow run c.yaml"
    assert f"pid {dead} is not running" in capsys.readouterr().err
    run_lock.release(str(run_dir), lock)
    assert not (run_dir / run_lock.LOCK_FILE).exists()


def test_a_reused_pid_is_not_the_holder(tmp_path, capsys):
    """The pid runs, but a process that started at another time: the holder is gone."""
    run_dir = tmp_path / "run"
    _write_lock(run_dir, _lock_document(process_started=psutil.Process().create_time() - 1000))
    with run_lock.held(str(run_dir)):
        pass
    assert f"pid {os.getpid()} is now another process" in capsys.readouterr().err


def test_an_empty_lock_file_left_by_a_killed_holder_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / run_lock.LOCK_FILE).write_text("")
    with run_lock.held(str(run_dir)):
        assert _read_lock(run_dir)["pid"] == os.getpid()
    assert "left empty or unreadable" in capsys.readouterr().err


def test_another_hosts_lock_is_never_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    theirs = _lock_document(host="node-7", pid=_dead_pid())
    _write_lock(run_dir, theirs)
    with pytest.raises(run_lock.RunLockedError, match=f"host node-7, pid {theirs['pid']}"):
        run_lock.acquire(str(run_dir))
    assert _read_lock(run_dir) == theirs


def test_experiment_run_takes_the_lock_and_releases_it(tmp_path):
    run_dir = tmp_path / "run"
    loaded = config.load(_config(tmp_path, run_dir))
    assert experiment.run(loaded, ["models"]) == {}  # no models: nothing to do, no Ray
    assert not (run_dir / run_lock.LOCK_FILE).exists()
    _write_lock(run_dir, _lock_document(host="node-7"))
    with pytest.raises(run_lock.RunLockedError, match="node-7"):
        experiment.run(loaded, ["models"])


@pytest.mark.parametrize("ending", [ValueError("a stage failed"), KeyboardInterrupt()])
def test_the_lock_is_released_on_an_error_and_on_ctrl_c(tmp_path, ending):
    run_dir = tmp_path / "run"
    with pytest.raises(type(ending)), run_lock.held(str(run_dir)):
        with run_lock.held(str(run_dir) + "/"):  # nested, another spelling: the same hold
            assert (run_dir / run_lock.LOCK_FILE).exists()
        assert (run_dir / run_lock.LOCK_FILE).exists()
        raise ending
    assert not (run_dir / run_lock.LOCK_FILE).exists()


def _race(run_dir: str, start, results) -> None:
    start.wait()
    try:
        run_lock.acquire(run_dir)
        results.put("won")
        time.sleep(2)  # alive while the others look
    except run_lock.RunLockedError:
        results.put("refused")


def test_of_processes_starting_at_once_exactly_one_gets_the_lock(tmp_path):
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    racers = [context.Process(target=_race, args=(str(tmp_path / "run"), start, results)) for _ in range(4)]
    for racer in racers:
        racer.start()
    start.set()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join()
    assert outcomes == ["refused", "refused", "refused", "won"]


def test_object_store_lock_refuses_a_live_holder_and_releases_its_own():
    """memory:// is fsspec's in-process store: the code path s3:// and gs:// take (best effort)."""
    run_dir = "memory://bucket/lock-run"
    storage.write_json_atomic(_lock_document(host="node-7"), storage.join(run_dir, run_lock.LOCK_FILE))
    with pytest.raises(run_lock.RunLockedError, match="node-7"):
        run_lock.acquire(run_dir)
    storage.remove(storage.join(run_dir, run_lock.LOCK_FILE))
    with run_lock.held(run_dir) as lock:
        assert storage.read_json(storage.join(run_dir, run_lock.LOCK_FILE))["token"] == lock["token"]
    assert not storage.exists(storage.join(run_dir, run_lock.LOCK_FILE))
