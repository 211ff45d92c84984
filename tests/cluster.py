"""A real multi-node Ray cluster on this machine, for the fault tests.

Every node is its own `ray start --block` process group (a head with no CPUs, as on
KubeRay, so all stage work lands on worker nodes), on free ports and under a temp folder of
its own: the cluster never meets the other Ray instances running on the machine (RAY_TMPDIR
keeps even its address file private). Killing a node SIGKILLs its whole process group:
raylet, object store and every worker process on it, as a preempted machine would. Stages
run through `python -m ray_jobs.run` with RAY_ADDRESS set: what `ray job submit` runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import BIN, REPO, cli_env

WORKER_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)
HEAD_PORT_FLAGS = ("--port", "--ray-client-server-port", "--dashboard-port", *WORKER_PORT_FLAGS)
# The GCS declares a silent node dead after these health checks (Ray's default takes ~30 s).
FAST_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500"}
FAST_DEATH["RAY_health_check_failure_threshold"] = "3"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class Node:
    name: str  # --node-name: what Ray (and Winnow's lost-node error) calls it
    process: subprocess.Popen

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class LocalCluster:
    def __init__(self, root: Path):
        self.root = root
        self.temp = root / "tmp"  # short: Ray's socket paths must fit in 107 bytes
        self.temp.mkdir(parents=True, exist_ok=True)
        self.nodes: list[Node] = []
        self.address: str | None = None
        self._state = None  # a GCS client, made on first use

    def env(self, **extra: str) -> dict[str, str]:
        return cli_env(RAY_TMPDIR=str(self.temp), RAY_AUTH_MODE="disabled", **FAST_DEATH, **extra)

    def start(self) -> LocalCluster:
        ports = dict(zip(HEAD_PORT_FLAGS, free_ports(len(HEAD_PORT_FLAGS)), strict=True))
        self.address = f"127.0.0.1:{ports['--port']}"
        command = ["--head", "--num-cpus=0", "--include-dashboard=false", "--dashboard-host=127.0.0.1"]
        command.append(f"--temp-dir={self.temp}")
        self._start("head", command, ports)
        return self

    def add_worker(self, name: str, num_cpus: int = 2, tries: int = 3) -> Node:
        """Start a worker node and wait until it has joined; on a loaded machine a raylet may
        give up during its start-up (the GCS answers late): then it is started again."""
        for _ in range(tries):
            ports = dict(zip(WORKER_PORT_FLAGS, free_ports(len(WORKER_PORT_FLAGS)), strict=True))
            node = self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}"], ports)
            self.wait_for(lambda node=node: name in self.alive_names() or not node.alive, f"{name} to join", 180)
            if node.alive and self._stays_alive(node, name):
                return node
            self.kill(node)
            self.nodes.remove(node)
        raise RuntimeError(f"node {name} did not start in {tries} tries; logs in {self.root}")

    def _stays_alive(self, node: Node, name: str, seconds: float = 3) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not node.alive:
                return False
            time.sleep(0.5)
        return name in self.alive_names()

    def workers(self) -> list[Node]:
        return [node for node in self.nodes if node.name != "head" and node.alive]

    def _start(self, name: str, arguments: list[str], ports: dict) -> Node:
        command = [str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1", f"--node-name={name}"]
        command += ["--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0", *arguments]
        command += [f"{flag}={port}" for flag, port in ports.items()]
        log = (self.root / f"{name}.log").open("a")
        process = subprocess.Popen(
            command, env=self.env(), start_new_session=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
        )
        node = Node(name, process)
        self.nodes.append(node)
        if name == "head":
            self.wait_for(lambda: "head" in self.alive_names(), "the head to start")
        return node

    def alive_names(self) -> set[str]:
        """Names of the nodes the GCS holds alive."""
        return {node["NodeName"] for node in self.node_table() if node["Alive"]}

    def node_table(self) -> list[dict]:
        """The GCS's node table (as ray.nodes() gives it), read without joining as a driver."""
        if self._state is None:
            from ray._private.state import GlobalState
            from ray._raylet import GcsClientOptions

            self._state = GlobalState()
            options = GcsClientOptions.create(
                self.address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False
            )
            self._state._initialize_global_state(options)
        return self._state.node_table()

    def kill(self, node: Node) -> None:
        """SIGKILL the node's process group: raylet, object store and its workers at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()
        self._sweep_workers(node)

    def node_of(self, pid: int) -> Node | None:
        """The node a process runs on: the one whose process group holds it or a parent of it."""
        groups = {node.process.pid: node for node in self.nodes if node.alive}
        while pid > 1:
            with contextlib.suppress(OSError):
                if os.getpgid(pid) in groups:
                    return groups[os.getpgid(pid)]
            try:
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                return None
        return None

    def nodes_running(self, title: str) -> list[Node]:
        """Nodes with a process whose command line holds `title` (Ray names an actor's process
        `ray::<class>`), in the order of their pids."""
        found = []
        for entry in sorted(Path("/proc").iterdir(), key=lambda e: (not e.name.isdigit(), e.name)):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if title in (entry / "cmdline").read_bytes().decode(errors="replace"):
                        node = self.node_of(int(entry.name))
                        if node is not None and node.name != "head" and node not in found:
                            found.append(node)
        return found

    def _sweep_workers(self, node: Node) -> None:
        """Worker processes that outlive their raylet (Ray starts some in groups of their
        own) exit when they notice it is gone; wait until none of this node's remains."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _descendants_of_group(node.process.pid):
            time.sleep(0.2)

    def submit(self, config: Path, stages: list[str], log: Path) -> subprocess.Popen:
        """`python -m ray_jobs.run --config C --stage S ...`, the job `ray job submit` would run."""
        command = [str(BIN / "python"), "-m", "ray_jobs.run", "--config", str(config)]
        command += [flag for stage in stages for flag in ("--stage", stage)]
        return subprocess.Popen(
            command,
            env=self.env(RAY_ADDRESS=self.address, PYTHONPATH=str(REPO)),
            cwd=REPO,
            start_new_session=True,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_for(self, condition, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}; logs in {self.root}")
            time.sleep(0.5)

    def end_job(self, process: subprocess.Popen) -> None:
        """SIGKILL a job's process group (the test failed or timed out while it ran)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            with contextlib.suppress(ProcessLookupError):
                node.process.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes
        for node in reversed(self.nodes):
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)


def _descendants_of_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    found.append(int(entry.name))
    return found
