"""Which Ray a run uses, and that an embedded one ends with the run.

The Ray a run uses, first that applies: the `--address` option, the config's `ray.address`,
RAY_ADDRESS (set inside `ray job submit` and on KubeRay), else an embedded Ray of the run's
own (`address="local"`): a Ray head that happens to run on the machine is never joined by
accident. The console says which one a run uses.

A command line names the run folder first (`configure`): then the embedded Ray's processes
are recorded and watched so none outlives a killed driver (ray_processes.py), what a killed
run of the same folder left is ended, and Ray's own output (its workers' prints, its
libraries' logging) goes to RUN/logs/ instead of the terminal (run_logs.py). Without
`configure` (tests, notebooks), `ensure_ray` starts a plain embedded Ray as before.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from pipelines import ray_processes, run_logs
from pipelines.config import RayConfig

CONNECT_SECONDS = 10
LOOPBACK = "127.0.0.1"
_EMBEDDED_TOKEN = secrets.token_hex(32)  # one per driver process
_run: dict = {
    "run_dir": None,
    "address": None,
    "started_here": False,
    "watchdog": None,
    "record": None,
    "embedded": False,
    "capacity_wait_s": None,  # the config's ray.capacity_wait_s; fault_tolerance.capacity_guard reads it
}


class RayAddressError(ConnectionError):
    """The Ray named by --address, the config or RAY_ADDRESS cannot be reached."""


def configure(run_dir: str, address: str | None = None) -> None:
    """Name the run (and an --address to use), and end what a killed run of it left running."""
    _run.update(run_dir=run_dir, address=address, started_here=False)
    folder = run_logs.current_dir()
    if folder is None:
        return
    for driver_pid, count in ray_processes.end_left_behind(folder):
        run_logs.say(f"ray: ended {count} Ray processes left by a killed run of this folder (driver pid {driver_pid})")


def chosen_address(config: RayConfig) -> tuple[str | None, str]:
    """(address or None for an embedded Ray, where it came from)."""
    for address, origin in ((_run["address"], "--address"), (config.address, "the config's ray.address")):
        if address:
            return address, origin
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    return None, "embedded"


def ensure_ray(config: RayConfig) -> None:
    import ray

    _run["capacity_wait_s"] = config.capacity_wait_s  # how long a stage waits for a lost node's capacity
    if ray.is_initialized():
        run_logs.route_library_logs()  # a stage may have imported a library that logs to the console
        refresh_record()
        return
    address, origin = chosen_address(config)
    logs = run_logs.current_dir()
    run_logs.route_library_logs()  # `import ray` gave its loggers console handlers: before init warns
    if address:
        _join(ray, address, origin, logs)
    else:
        _start_embedded(ray, config, logs)
    _quiet_ray_data()
    if logs is not None:
        _send_worker_output_to(run_logs.worker_output_file())
        run_logs.route_library_logs()


def _join(ray, address: str, origin: str, logs: str | None) -> None:
    _run["embedded"] = False
    _check_reachable(address, origin)
    _reload_auth()  # an embedded Ray this process ran before left its own token cached
    try:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    except ConnectionError as error:
        raise RayAddressError(f"cannot reach the Ray at {address} (from {origin}): {error}") from None
    where = f"; its output in {logs}" if logs else ""
    run_logs.say(f"ray: the Ray at {address} (from {origin}){where}")


def _check_reachable(address: str, origin: str) -> None:
    """Fail in seconds on an address nothing listens at: ray.init retries it for ever."""
    match = re.fullmatch(r"(?:[a-z]+://)?\[?([^\]/]+?)\]?:(\d+)/?", address)
    if match is None:  # "auto", "local" and the like: ray.init answers quickly itself
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else "no answer"
        raise RayAddressError(f"cannot reach the Ray at {address} (from {origin}): {reason}") from None


def _start_embedded(ray, config: RayConfig, logs: str | None) -> None:
    # An embedded Ray's workers inherit this environment: keep vLLM's per-request INFO
    # lines out of the stage progress (a user's own setting wins).
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    with _loopback_and_token(ray):
        ray.init(
            address="local",
            num_cpus=config.num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
        )
    if (node_ip := ray.util.get_node_ip_address()) != LOOPBACK:
        run_logs.say(f"ray: warning: the embedded Ray listens on {node_ip}, not only {LOOPBACK} (its token guards it)")
    _run["started_here"] = _run["run_dir"] is not None  # a command's own Ray, ended by `shutdown`
    _run["embedded"] = True  # its CPUs are fixed: fault_tolerance.refuse_starving_pool checks against them
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if logs is None:
        return
    record = ray_processes.record_path(logs)
    ray_processes.record(record)
    _run["watchdog"] = ray_processes.start_watchdog(record, os.path.join(logs, "winnow.log"))
    ray_processes.record(record, _run["watchdog"].pid)
    _run["record"] = record
    run_logs.say(f"ray: an embedded Ray of this run's own ({cpus} CPUs; --address for another); its output in {logs}")


@contextmanager
def _loopback_and_token(ray) -> Iterator[None]:
    """While an embedded Ray starts: its node address is 127.0.0.1, so every Ray server binds
    there (Ray uses the machine's address on Linux, and turns a given 127.0.0.1 into it), and
    token authentication is on with this process's token. Its processes take the token from
    the environment they start with; afterwards the environment is as it was, so no later
    subprocess (a `ray job submit` to another cluster, vllm serve) inherits it."""
    from ray._private import ray_constants

    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = _EMBEDDED_TOKEN
    _reload_auth()
    ray_constants.ENABLE_RAY_CLUSTER = False  # False: the node address is the loopback address
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _reload_auth() -> None:
    """Make Ray read its token mode and token from the environment again. It caches both in
    the process when it first reads them, so without this an embedded Ray's token would go
    with a later `--address` join (refused by a cluster with a token of its own), and a
    joined cluster's token with a later embedded start. Before a `ray.init` only: a running
    driver's connections keep the token they have. The order is Ray's own
    (ray._private.authentication_test_utils.reset_auth_token_state)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _send_worker_output_to(workers: logging.Logger) -> None:
    """Ray's workers' prints go to a file: Ray echoes them to the terminal by default, and
    vLLM and Ray Train repeat internal messages there by the hundred."""
    from ray._private import worker as ray_worker

    dispatcher = ray_worker.global_worker_stdstream_dispatcher

    def to_file(data: dict) -> None:
        name = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({name} pid={data.get('pid')}{' stderr' if data.get('is_err') else ''})"
        for line in data.get("lines", []):
            workers.info("%s %s", prefix, line)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", to_file)


def _quiet_ray_data() -> None:
    """Winnow prints its own stage progress; Ray Data's bars and INFO lines would bury it."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled"


def refresh_record() -> None:
    """Record the embedded Ray's processes again (actors and workers start as stages run)."""
    if _run["record"] is not None and _run["watchdog"] is not None:
        ray_processes.record(_run["record"], _run["watchdog"].pid)


def embedded() -> bool:
    """Whether this process started the Ray it uses (an embedded one, whose CPUs never grow)."""
    return _run["embedded"]


def capacity_wait_s() -> float | None:
    """The run's `ray.capacity_wait_s` as the last `ensure_ray` was given it (None: not set)."""
    return _run["capacity_wait_s"]


def shutdown() -> None:
    """End the embedded Ray the configured run started (a joined one is left as it is)."""
    import ray

    if ray.is_initialized() and _run["started_here"]:
        ray.shutdown()
    _run["started_here"] = False
    if _run["record"] is not None and os.path.exists(_run["record"]):
        os.remove(_run["record"])  # before the watchdog wakes: nothing is left for it to end
    if _run["watchdog"] is not None:
        _run["watchdog"].stdin.close()  # the watchdog finds no record and exits
        _run["watchdog"].wait(timeout=10)
    _run.update(run_dir=None, address=None, watchdog=None, record=None)


shutdown_if_embedded = shutdown  # the name before the run folder was known here
