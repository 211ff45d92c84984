"""The local `vllm serve`: a random API key each start (a request without it is refused), kept
off the command line, given to this process's openai engines; the port bound by the server
itself (port 0) and read back, so no other process can take it between a pick and a bind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from pipelines.generate import engine as engines
from pipelines.generate.local_server import HOST, LocalServer, listening_port
from pipelines.generate.settings import OpenAIEngineConfig, Sampling
from tests.test_generate_vllm import build_tiny, requests_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    model = build_tiny(folder / "tiny")
    with LocalServer(model, served_name="tiny", max_model_len=256, log_path=folder / "server.log") as running:
        yield running
    assert running.api_key_env not in os.environ  # the key went with the server


def _status(url: str, key: str | None, body: dict | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data, headers = json.dumps(body).encode("utf-8"), {**headers, "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_request_without_the_servers_key_is_refused(server):
    models = f"{server.base_url}/models"
    assert _status(models, None) == 401
    assert _status(models, "not-the-key") == 401
    assert _status(models, server.api_key) == 200
    # vLLM's --api-key guards /v1 only; /invocations generates as /v1 does, and the rest
    # (/health, /tokenize, ...) answer too: the server asks for the key on every path.
    root = server.base_url.removesuffix("/v1")
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "1 + 1?"}], "max_tokens": 2}
    assert _status(f"{root}/invocations", None, chat) == 401
    assert _status(f"{root}/invocations", server.api_key, chat) == 200
    assert _status(f"{root}/tokenize", None, {"model": "tiny", "prompt": "1 + 1"}) == 401
    assert _status(f"{root}/health", None) == 401
    assert _status(f"{root}/health", server.api_key) == 200
    assert LocalServer(server.model).api_key != server.api_key  # random for each start
    command_line = " ".join(psutil.Process(server.process.pid).cmdline())
    assert server.api_key not in command_line  # every local user can read a command line


def test_an_openai_engine_reaches_the_server_with_the_key_it_names(server, tmp_path):
    assert os.environ[server.api_key_env] == server.api_key
    settings = {"kind": "openai", "base_url": server.base_url, "model": "tiny", "max_retries": 0}
    requests = requests_table(["What is 1 + 1?", "What is 2 + 1?"])
    sampling = Sampling(temperature=0.0, max_tokens=4, seed=1)
    keyed = OpenAIEngineConfig(**settings, api_key_env=server.api_key_env)
    assert engines.generate(keyed, requests, sampling, str(tmp_path / "keyed"))["ok"] == 2
    keyless = OpenAIEngineConfig(**settings, api_key_env=None)
    assert engines.generate(keyless, requests, sampling, str(tmp_path / "keyless"))["failed"] == 2


def test_the_server_binds_its_own_port_on_loopback_only(server):
    assert server.command[server.command.index("--port") + 1] == "0"
    assert listening_port(server.process.pid) == server.port
    assert server.base_url == f"http://{HOST}:{server.port}/v1"
    listening = [c.laddr for c in psutil.Process(server.process.pid).net_connections("inet") if c.status == "LISTEN"]
    assert [address for address in listening if address.ip != HOST] == []


def test_the_port_is_read_back_from_a_real_listening_process():
    """A stand-in for vllm serve (slow to start; its own port is checked above): Python's
    http.server on port 0, whose port only the kernel knows."""
    quiet = subprocess.Popen(["sleep", "30"])
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", HOST], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert listening_port(quiet.pid) is None
        deadline = time.monotonic() + 30
        while (port := listening_port(stand_in.pid)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port is not None
        assert _status(f"http://{HOST}:{port}/", None) == 200
    finally:
        for process in (quiet, stand_in):
            process.kill()
            process.wait()
