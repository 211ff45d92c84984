"""One run at a time in a run folder: RUN/_lock.json names the process that holds it.

A command that writes into a run folder (every stage, `winnow run`, `winnow report`, the
ray_jobs entrypoints) holds the lock while it runs and deletes it on the way out, on an error
or Ctrl-C too. A second command on a held folder fails with RunLockedError naming the
holder's host, pid, start time and command (the `winnow` command exits 2).

A lock left by a process that is gone is taken over, with a line saying so: on the same host,
when its pid is not running, or runs a process that started at another time (the pid was
reused). A lock from another host is never taken over: this host cannot tell whether that
process lives, and the error says to delete the file when it is known to be gone.

Local folders: the lock file is created with O_CREAT | O_EXCL, so of two commands starting
at once exactly one gets it; a take-over happens under flock on the run folder, and only if
the lock file still holds the dead holder. Object stores have no exclusive create through
pyarrow: there the lock is best effort, written and then read back after a pause; two runs
starting within that pause can both go on.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from pipelines import run_logs, storage

LOCK_FILE = "_lock.json"
START_TIME_SLACK_S = 1.0  # psutil's process start times are exact to well under this
UNREADABLE_WAIT_S = 2.0  # a holder writes its lock file right after creating it
OBJECT_STORE_SETTLE_S = 0.5  # before reading back an object-store lock we wrote
_held: dict[str, dict] = {}  # run folder -> {"lock": its document, "depth": nested holds}


class RunLockedError(PermissionError):  # a PermissionError: failures.py reports it as a user's error (exit 2)
    """Another live process holds the run folder."""


@contextmanager
def held(run_dir: str, command: list[str] | None = None) -> Iterator[dict]:
    """Hold RUN/_lock.json while inside; re-entrant within one process."""
    key = _key(run_dir)
    if key in _held:
        _held[key]["depth"] += 1
        try:
            yield _held[key]["lock"]
        finally:
            _held[key]["depth"] -= 1
        return
    lock = acquire(run_dir, command)
    _held[key] = {"lock": lock, "depth": 1}
    try:
        yield lock
    finally:
        del _held[key]
        release(run_dir, lock)


def _key(run_dir: str) -> str:
    """One key for the spellings of one folder (relative, absolute, a trailing slash)."""
    return run_dir.rstrip("/") if storage.is_uri(run_dir) else os.path.realpath(os.path.expanduser(run_dir))


def acquire(run_dir: str, command: list[str] | None = None) -> dict:
    """Take the run folder's lock; returns its document. RunLockedError when a live run holds it."""
    lock = _describe(command)
    if storage.is_uri(run_dir) and not run_dir.startswith("file://"):
        _acquire_object_store(run_dir, lock)
    else:
        _acquire_local(run_dir, lock)
    return lock


def release(run_dir: str, lock: dict) -> None:
    """Delete the lock file if it is still this one's (a take-over may have replaced it)."""
    location = storage.join(run_dir, LOCK_FILE)
    current = _read_remote(location) if storage.is_uri(run_dir) else _read_local(storage.resolve(location)[1])
    if current is not None and current.get("token") == lock["token"]:
        storage.remove(location)


def _describe(command: list[str] | None) -> dict:
    me = psutil.Process()
    return {
        "host": socket.gethostname(),
        "pid": me.pid,
        "process_started": me.create_time(),
        "command": " ".join(command if command is not None else [os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "token": uuid.uuid4().hex,
    }


def _acquire_local(run_dir: str, lock: dict) -> None:
    folder = storage.resolve(run_dir)[1]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    data = json.dumps(lock, indent=2).encode("utf-8")
    while not _create_exclusive(path, data):
        holder = _read_local(path)
        if holder is None:  # released between our try and our read: try again
            continue
        reason = gone_reason(holder)
        if reason is None:
            raise RunLockedError(_held_message(run_dir, path, holder))
        if _take_over(folder, path, holder, data):
            run_logs.say(f"lock: took over {path} from a run that is gone ({reason}; {_holder_words(holder)})")
            return


def _create_exclusive(path: str, data: bytes) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _take_over(folder: str, path: str, holder: dict, data: bytes) -> bool:
    """Replace a dead holder's lock, under flock on the folder: of several runs that saw the
    same dead holder, the first replaces it and the others then find a live one."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if _read_local(path) != holder:
            return False
        temporary = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return True
    finally:
        os.close(descriptor)  # and with it the flock


def _read_local(path: str) -> dict | None:
    """The lock's document; None when there is no lock file. A file that stays unreadable
    (a holder killed between creating and writing it) reads as {"unreadable": True}."""
    deadline = time.monotonic() + UNREADABLE_WAIT_S
    while True:
        try:
            with open(path, "rb") as handle:
                document = json.loads(handle.read().decode("utf-8"))
            if isinstance(document, dict):
                return document
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            pass
        if time.monotonic() > deadline:
            return {"unreadable": True}
        time.sleep(0.05)


def gone_reason(holder: dict) -> str | None:
    """Why the holder is known to be gone, or None when it may be alive."""
    if holder.get("unreadable"):
        return "its lock file was left empty or unreadable"
    if holder.get("host") != socket.gethostname():
        return None  # another host's process: this one cannot tell
    pid = holder.get("pid")
    try:
        started = psutil.Process(int(pid)).create_time()
    except (psutil.NoSuchProcess, TypeError, ValueError):
        return f"pid {pid} is not running"
    if abs(started - float(holder.get("process_started", 0))) > START_TIME_SLACK_S:
        return f"pid {pid} is now another process"
    return None


def _holder_words(holder: dict) -> str:
    if holder.get("unreadable"):
        return "holder unknown"
    return (
        f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started_at')}, "
        f"command: {holder.get('command')}"
    )


def _held_message(run_dir: str, location: str, holder: dict) -> str:
    return (
        f"the run folder {run_dir} is in use by another run ({_holder_words(holder)}); wait for it to "
        f"end, or if you know that process is gone, delete {location}"
    )


def _acquire_object_store(run_dir: str, lock: dict) -> None:
    """Best effort (no exclusive create on object stores through pyarrow): a live holder's lock
    is refused, a gone one's replaced; ours is written, then read back after a pause."""
    location = storage.join(run_dir, LOCK_FILE)
    holder = _read_remote(location)
    if holder is not None:
        reason = gone_reason(holder)
        if reason is None:
            raise RunLockedError(_held_message(run_dir, location, holder))
        run_logs.say(f"lock: took over {location} from a run that is gone ({reason}; {_holder_words(holder)})")
    storage.write_json_atomic(lock, location)
    time.sleep(OBJECT_STORE_SETTLE_S)
    current = _read_remote(location)
    if current is None or current.get("token") != lock["token"]:
        raise RunLockedError(_held_message(run_dir, location, current or {"unreadable": True}))


def _read_remote(location: str) -> dict | None:
    if not storage.exists(location):
        return None
    try:
        document = storage.read_json(location)
    except (ValueError, UnicodeDecodeError):
        return {"unreadable": True}
    return document if isinstance(document, dict) else {"unreadable": True}
