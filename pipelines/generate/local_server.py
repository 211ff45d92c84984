"""A local `vllm serve` (OpenAI-compatible) on 127.0.0.1, for tests, benchmarks and laptops.

Started as `python -m vllm.entrypoints.openai.api_server` (the `vllm` command looks up the
distribution named "vllm", which the CPU build is not), in a process group of its own so
that stopping it ends its engine process too.

Other local users can reach 127.0.0.1 too, so the server requires an API key, random for each
start: given to vLLM in its environment (VLLM_API_KEY; a command line is readable by every
user), and to this process's clients in the environment variable `server.api_key_env` names,
which an `openai` engine's `api_key_env` takes as it takes `server.base_url`. The server binds
port 0 (the kernel picks a free port as it binds: no other process can take it between a
pick and the bind) and the port is read back from the server's listening socket.

vLLM's own key check guards only /v1, /v2, /inference and /cohere; /invocations (SageMaker's
route) generates without it. So the server also runs `KeyOnEveryPath` (`--middleware`),
which asks every request for the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

HOST = "127.0.0.1"


def listening_port(pid: int) -> int | None:
    """The TCP port process `pid` listens on at 127.0.0.1, once it listens."""
    try:
        connections = psutil.Process(pid).net_connections("tcp")
    except psutil.NoSuchProcess:
        return None
    ports = [c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN and c.laddr.ip == HOST]
    return min(ports) if ports else None


class KeyOnEveryPath:
    """ASGI middleware in the served app: a request without the key (VLLM_API_KEY) on any
    path gets 401; a websocket, a close before it is accepted."""

    def __init__(self, app):
        self.app = app
        self.digest = hashlib.sha256(os.environ["VLLM_API_KEY"].encode("utf-8")).digest()

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and not self._has_key(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": b'{"error": "Unauthorized"}'})
            return
        await self.app(scope, receive, send)

    def _has_key(self, scope) -> bool:
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(hashlib.sha256(token).digest(), self.digest)


class LocalServer:
    """`with LocalServer(model_dir) as server:` ... `server.base_url` ends in /v1."""

    def __init__(
        self,
        model: str | Path,
        served_name: str = "local",
        max_model_len: int = 512,
        dtype: str = "float32",
        extra_args: tuple[str, ...] = (),
        kv_cache_gib: int = 1,
        threads: int = 1,
        start_timeout_s: float = 300.0,
        log_path: str | Path | None = None,
    ):
        self.model, self.served_name = str(model), served_name
        self.port: int | None = None  # known once the server listens
        self.base_url: str | None = None
        self.api_key = secrets.token_urlsafe(32)
        self.api_key_env = f"WINNOW_LOCAL_SERVER_KEY_{secrets.token_hex(4).upper()}"  # one a server
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", served_name,
            "--host", HOST, "--port", "0",
            "--dtype", dtype, "--max-model-len", str(max_model_len),
            "--enforce-eager", "--gpu-memory-utilization", "0.5", "--disable-log-stats",
            "--no-enable-chunked-prefill",  # CPU build: seeded requests with split prefills crash the sampler
            "--middleware", f"{__name__}.KeyOnEveryPath",
            *extra_args,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
            "OMP_NUM_THREADS": str(threads),
            # The CPU build binds its worker to one core a rank ("auto"), whatever `threads`
            # says; unbound, the worker takes OMP_NUM_THREADS threads.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
            "VLLM_API_KEY": self.api_key,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.start_timeout_s, self.log_path = start_timeout_s, log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        os.environ[self.api_key_env] = self.api_key  # for this process's openai engines only
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode} (log: {self.log_path})")
            if self.port is None and (port := listening_port(self.process.pid)) is not None:
                self.port, self.base_url = port, f"http://{HOST}:{port}/v1"
            if self.port is not None and self._healthy():
                return
            time.sleep(1)
        raise TimeoutError(f"vllm serve was not healthy after {self.start_timeout_s:.0f} s (log: {self.log_path})")

    def _healthy(self) -> bool:
        health = urllib.request.Request(f"http://{HOST}:{self.port}/health", headers=self.auth_header())
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def stop(self) -> None:
        os.environ.pop(self.api_key_env, None)
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # its own group: the server and its engine
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __exit__(self, *exc) -> None:
        self.stop()
