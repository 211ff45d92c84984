"""A run's log files: what the terminal does not show goes to RUN/logs/.

The terminal is for people: one line and a progress bar a stage, and errors in a few lines.
Everything else is kept here:
- `winnow.log`: each command run on the folder, its errors with their tracebacks, and the
  Python logging of Winnow and its libraries (Ray, Ray Data, Ray Train, vLLM, transformers,
  torch, ...), warnings included;
- `ray-workers.log`: what Ray's workers and actors print (vLLM's and Ray Train's
  messages among them), forwarded by the driver instead of echoed to the terminal;
- `ray-<pid>.json`: the processes of an embedded Ray while its run lasts (ray_processes.py).

A run folder on object storage (s3://, gs://) keeps its logs in a local folder instead,
`$XDG_STATE_HOME/winnow/logs/<hash of the run folder>` (else under $XDG_CACHE_HOME or
~/.cache), named on the console. That folder is the user's alone: created 0700, and refused
when it is a symbolic link, owned by someone else or open to the group or others (another
local user could otherwise read the logs, or plant the process records of ray_processes.py).
Log files are opened without following a symbolic link, and created 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import sys
import time
import traceback

from rich.console import Console

from pipelines import storage

LIBRARIES = (
    "ray",
    "vllm",
    "transformers",
    "torch",
    "datasets",
    "sentence_transformers",
    "huggingface_hub",
    "filelock",
    "urllib3",
    "httpx",
    "peft",
    "accelerate",
    "faiss",
    "matplotlib",
    "py.warnings",
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_state: dict = {"dir": None, "handler": None, "workers": None}


class UnsafeLogFolder(PermissionError):
    """A log folder or file another user could read, replace or point elsewhere."""


class NoFollowFileHandler(logging.FileHandler):
    """A FileHandler that will not write through a symbolic link, and creates its file 0600."""

    def _open(self):
        return open(open_no_follow(self.baseFilename), self.mode, encoding=self.encoding, errors=self.errors)


def open_no_follow(path: str, flags: int = os.O_WRONLY | os.O_CREAT | os.O_APPEND) -> int:
    """A file descriptor for `path`, refused when `path` is a symbolic link."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        if os.path.islink(path):
            raise UnsafeLogFolder(f"{path} is a symbolic link: Winnow does not write a log through one") from None
        raise


def private_logs_root() -> str:
    """Where object-store runs keep their logs: the user's state folder (else cache folder:
    on KubeRay only $XDG_CACHE_HOME is writable)."""
    base = os.environ.get("XDG_STATE_HOME") or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "winnow", "logs")


def log_dir(run_dir: str) -> str:
    """The local folder for a run's logs: RUN/logs, or a private one for an object-store run."""
    if _on_object_store(run_dir):
        digest = hashlib.sha256(run_dir.encode("utf-8")).hexdigest()[:16]
        return os.path.join(private_logs_root(), digest)
    return os.path.join(storage.resolve(run_dir)[1], "logs")


def _on_object_store(run_dir: str) -> bool:
    return storage.is_uri(run_dir) and not run_dir.startswith("file://")


def make_private_dir(folder: str) -> None:
    """Create `folder` and its `winnow/logs` parents 0700, and check each is the user's: no
    one else may write in the parents, nor use the folder itself."""
    logs_root = os.path.dirname(folder)
    winnow_root = os.path.dirname(logs_root)
    os.makedirs(os.path.dirname(winnow_root), mode=0o700, exist_ok=True)  # the user's state or cache folder
    for path, forbidden in ((winnow_root, 0o022), (logs_root, 0o022), (folder, 0o077)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        check_private_dir(path, forbidden)


def check_private_dir(path: str, forbidden: int = 0o077) -> None:
    """Refuse a folder that is a symbolic link, another user's, or has a `forbidden` mode bit."""
    found = os.lstat(path)
    if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
        raise UnsafeLogFolder(f"{path} is not a folder (a symbolic link?): Winnow keeps no logs there")
    if found.st_uid != os.getuid():
        raise UnsafeLogFolder(f"{path} belongs to user id {found.st_uid}, not to you ({os.getuid()}): remove it")
    if found.st_mode & forbidden:
        raise UnsafeLogFolder(
            f"{path} has mode {stat.S_IMODE(found.st_mode):04o}: the group or others may use it; "
            "`chmod 700` it or remove it"
        )


def start(run_dir: str, command: list[str]) -> str:
    """Open the run's logs for this process and route library logging there; returns the folder."""
    folder = log_dir(run_dir)
    if _on_object_store(run_dir):
        make_private_dir(folder)
    else:
        os.makedirs(folder, exist_ok=True)
    if _state["dir"] != folder:
        stop()
        handler = NoFollowFileHandler(os.path.join(folder, "winnow.log"), encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        _state.update(dir=folder, handler=handler)
        logging.captureWarnings(True)  # library warnings: to the file, not the terminal
        named = logger()
        named.propagate = False  # its own handler: Ray's logging setup rearranges the root's
        named.addHandler(handler)
    logger().info("%s (pid %d): %s", time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(), " ".join(command))
    route_library_logs()
    return folder


def native_output_to_log() -> None:
    """Native code writes to file descriptor 2 directly, past Python's logging: Ray's C++ core
    worker (one error-level line when an actor pool with restarts starts), OpenMP and vLLM's
    kernels. Point fd 2 at RUN/logs/native.log and keep Python's sys.stderr, where Winnow's
    lines, bars and errors go, on the terminal. Only for the `winnow` command's own process
    (a test runner captures fd 2 itself); processes it starts from here on inherit the file."""
    if _state["dir"] is None or _state.get("terminal") is not None:
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    log = open_no_follow(os.path.join(_state["dir"], "native.log"))
    os.dup2(log, 2)
    os.close(log)
    encoding, errors = sys.stderr.encoding or "utf-8", "backslashreplace"
    _state["terminal"] = sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=encoding, errors=errors)


def current_dir() -> str | None:
    return _state["dir"]


def logger() -> logging.Logger:
    named = logging.getLogger("winnow")
    named.setLevel(logging.INFO)
    return named


def route_library_logs() -> None:
    """Move the libraries' console handlers to the run's file (libraries add them on import,
    so this runs again when Ray starts and at each stage)."""
    handler = _state["handler"]
    if handler is None:
        return
    if handler not in logging.getLogger().handlers:
        logging.getLogger().addHandler(handler)
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in LIBRARIES or n == "py.warnings"]
    for name in names:
        library_logger = logging.getLogger(name)
        for existing in list(library_logger.handlers):
            if _is_console(existing):
                library_logger.removeHandler(existing)
        if not library_logger.propagate and handler not in library_logger.handlers:
            library_logger.addHandler(handler)  # it does not reach the root's handler on its own


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def worker_output_file() -> logging.Logger | None:
    """A logger writing to ray-workers.log (None before `start`)."""
    if _state["dir"] is None:
        return None
    if _state["workers"] is None:
        workers = logging.getLogger("winnow.ray_workers")
        workers.propagate = False
        handler = NoFollowFileHandler(os.path.join(_state["dir"], "ray-workers.log"), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        workers.addHandler(handler)
        workers.setLevel(logging.INFO)
        _state["workers"] = workers
    return _state["workers"]


def write_traceback(error: BaseException, where: str) -> str | None:
    """Log an error's traceback; returns the log file's path (None when no log is open)."""
    if _state["dir"] is None:
        return None
    text = "".join(traceback.format_exception(error))
    logger().error("%s failed:\n%s", where, text)
    return os.path.join(_state["dir"], "winnow.log")


def say(message: str) -> None:
    """A line for people on stderr, kept whole (no wrapping at 80 columns: grep finds it), and in the log."""
    Console(stderr=True, soft_wrap=True).print(message, highlight=False, markup=False)
    if _state["dir"] is not None:
        logger().info("%s", message)


def stop() -> None:
    """Close the files (tests open many run folders in one process)."""
    handler = _state["handler"]
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        for name in list(logging.root.manager.loggerDict):
            named = logging.getLogger(name)
            if handler in named.handlers:
                named.removeHandler(handler)
        handler.close()
    workers = _state["workers"]
    if workers is not None:
        for existing in list(workers.handlers):
            workers.removeHandler(existing)
            existing.close()
    _state.update(dir=None, handler=None, workers=None)
    sys.stderr.flush()
