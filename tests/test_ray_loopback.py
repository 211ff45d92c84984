"""Who can reach an embedded Ray: nothing from another machine (every Ray process listens on
127.0.0.1 only), and no local process without its token (Ray's token authentication, with a
token of the driver's own). Real Ray, real sockets, real gRPC calls to its GCS; connections go
only to this machine's own addresses."""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import psutil
import pytest

from tests.cluster import free_ports
from tests.conftest import BIN, REPO, cli_env

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _non_loopback_ipv4() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    pytest.skip("this machine has no non-loopback IPv4 address to connect from")


def _ray_listening_sockets() -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of this driver and its Ray."""
    driver = psutil.Process()
    found = []
    for process in [driver, *driver.children(recursive=True)]:
        try:
            connections, name = process.net_connections("inet"), process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def _is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    return parsed.is_loopback or getattr(parsed, "ipv4_mapped", None) is not None and parsed.ipv4_mapped.is_loopback


def test_every_ray_process_listens_on_loopback_only(ray_local):
    import ray
    import ray.data

    @ray.remote
    class Echo:  # an actor: its worker opens a port of its own
        def echo(self, value):
            return value

    echo = Echo.remote()
    assert ray.get(echo.echo.remote(3)) == 3
    assert ray.data.range(8).map_batches(lambda batch: batch).count() == 8  # Ray Data under the same settings
    outside = _non_loopback_ipv4()
    listening = _ray_listening_sockets()
    names = {name for name, _, _ in listening}
    assert {"gcs_server", "raylet"} <= names, names
    assert [entry for entry in listening if not _is_loopback(entry[1])] == []
    for name, _, port in listening:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outside, port), timeout=5).close()
            pytest.fail(f"{name} accepted a connection on {outside}:{port}")
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # yet it listens: the test proves something
    ray.kill(echo)


def _list_nodes(gcs_address: str, metadata: tuple):
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc

    with grpc.insecure_channel(gcs_address) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        return stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), metadata=metadata, timeout=20)


def test_the_embedded_ray_refuses_a_caller_without_its_token(ray_local):
    """A plain gRPC channel, as another local user's process would open: no token, a wrong
    one, refused; the driver's own token, answered."""
    import grpc
    import ray

    from pipelines import ray_runtime

    gcs_address = ray.get_runtime_context().gcs_address
    for metadata in ((), (("authorization", "Bearer " + "0" * 64),)):
        with pytest.raises(grpc.RpcError) as refused:
            _list_nodes(gcs_address, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answer = _list_nodes(gcs_address, (("authorization", f"Bearer {ray_runtime._EMBEDDED_TOKEN}"),))
    assert len(answer.node_info_list) == 1
    # the token was in the environment only while Ray started: no later subprocess inherits it
    assert os.environ.get("RAY_AUTH_TOKEN") != ray_runtime._EMBEDDED_TOKEN


JOIN_AFTER_EMBEDDED = """
import ray
from pipelines import ray_runtime
from pipelines.config import RayConfig

ray_runtime.ensure_ray(RayConfig(num_cpus=1))
ray_runtime.shutdown()
ray.shutdown()
ray_runtime.configure({run_dir!r}, {address!r})
ray_runtime.ensure_ray(RayConfig())
print("joined", ray.get(ray.put(5)), ray.get_runtime_context().gcs_address)
"""


def test_a_join_after_an_embedded_ray_in_the_same_process_uses_the_users_token(tmp_path):
    """Ray caches the token it first reads: the embedded Ray's own must not go with a later
    `--address` join to a cluster with a token of its own (it was refused so). The join runs
    in a process of its own, as the session's embedded Ray (ray_local) must not end here."""
    port = free_ports(1)[0]
    ray_temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's socket paths fit in 107 bytes
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="c" * 64, RAY_TMPDIR=ray_temp)
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", "--num-cpus=1"]
    command += ["--include-dashboard=false", f"--temp-dir={ray_temp}"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    head = subprocess.Popen(command, env=env, start_new_session=True, **quiet)
    try:
        script = JOIN_AFTER_EMBEDDED.format(run_dir=str(tmp_path / "run"), address=f"127.0.0.1:{port}")
        child = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
        )
        assert child.returncode == 0, child.stderr[-3000:]
        assert "joined 5 " in child.stdout and child.stdout.strip().endswith(f":{port}"), child.stdout
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(ray_temp, ignore_errors=True)
