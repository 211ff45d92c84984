"""A local `vllm serve` (OpenAI-compatible) on 127.0.0.1, for tests, benchmarks and laptops.

Started as `python -m vllm.entrypoints.openai.api_server` (the `vllm` command looks up the
distribution named "vllm", which the CPU build is not), in a process group of its own so
that stopping it ends its engine process too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", served_name,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", dtype, "--max-model-len", str(max_model_len),
            "--enforce-eager", "--gpu-memory-utilization", "0.5", "--disable-log-stats",
            "--no-enable-chunked-prefill",  # CPU build: seeded requests with split prefills crash the sampler
            *extra_args,
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib),
            "OMP_NUM_THREADS": str(threads),
            # The CPU build binds its worker to one core a rank ("auto"), whatever `threads`
            # says; unbound, the worker takes OMP_NUM_THREADS threads.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind",
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
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode} (log: {self.log_path})")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"vllm serve was not healthy after {self.start_timeout_s:.0f} s (log: {self.log_path})")

    def stop(self) -> None:
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
