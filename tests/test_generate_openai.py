"""The `openai` engine against a real `vllm serve` (CPU build) on 127.0.0.1, and through a
local proxy that injects 429s, 500s, dropped connections, slow answers and 401s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest

from pipelines.generate import engine as engines
from pipelines.generate import openai_engine, results, rows
from pipelines.generate.local_server import LocalServer
from pipelines.generate.settings import OpenAIEngineConfig, Sampling
from tests.test_generate_vllm import build_tiny, requests_table

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = 11
KEY_ENV = "WINNOW_TEST_OPENAI_KEY"


class FaultProxy:
    """An aiohttp server in its own thread that forwards to the local `server` (…/v1, with its key), unless
    `plan(body, attempt)` names a fault: "429", "500", "401", "drop" or "slow". Requests are
    told apart by their `seed`, which the engine derives from (request id, completion)."""

    def __init__(
        self, server: LocalServer, plan: Callable[[dict, int], str | None], key: str | None = None, slow_s=8.0
    ):
        self.upstream, self.plan, self.key, self.slow_s = server.base_url.rstrip("/"), plan, key, slow_s
        self.upstream_key = server.api_key  # the local server's own key, which the clients never see
        self.seen: dict[int, list[float]] = defaultdict(list)  # seed -> arrival times
        self.actions: list[tuple[int, str]] = []
        self.in_flight = self.max_in_flight = 0
        self.ready = threading.Event()

    def __enter__(self) -> FaultProxy:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        assert self.ready.wait(30), "proxy did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(30)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        import aiohttp
        from aiohttp import web

        self.stopping = asyncio.Event()
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        await self.stopping.wait()
        await self.session.close()
        await runner.cleanup()

    async def _handle(self, request):
        from aiohttp import web

        body = await request.read()
        document = json.loads(body) if body else {}
        seed = document.get("seed", -1)
        self.seen[seed].append(time.monotonic())
        action = self.plan(document, len(self.seen[seed]))
        if self.key is not None and request.headers.get("Authorization") != f"Bearer {self.key}":
            action = "bad key"
        self.actions.append((seed, action or "forward"))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if action == "429":
                return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"})
            if action == "500":
                return web.json_response({"error": {"message": "upstream exploded"}}, status=500)
            if action in ("401", "bad key"):  # a server that echoes the key back, as some do
                message = f"Incorrect API key provided: {request.headers.get('Authorization', '')[7:]}"
                return web.json_response({"error": {"message": message}}, status=401)
            if action == "drop":
                request.transport.close()  # no response at all: the client sees a dropped connection
                return web.Response(status=200)
            if action == "slow":  # a stopping proxy ends its slow answers at once
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.slow_s)
                if self.stopping.is_set():
                    return web.json_response({"error": {"message": "proxy stopping"}}, status=503)
            url = f"{self.upstream}/{request.match_info['tail']}"
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.upstream_key}"}
            async with self.session.request(request.method, url, data=body, headers=headers) as upstream:
                payload = await upstream.read()
                return web.Response(body=payload, status=upstream.status, content_type="application/json")
        finally:
            self.in_flight -= 1


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    model = build_tiny(folder / "tiny")
    with LocalServer(model, served_name="tiny", max_model_len=512, log_path=folder / "server.log") as running:
        yield running


def openai_engine_config(base_url: str, **overrides) -> OpenAIEngineConfig:
    settings = {"kind": "openai", "base_url": base_url, "model": "tiny", "api_key_env": None, "max_in_flight": 4,
                "max_retries": 3, "timeout_s": 4.0, "backoff_base_s": 0.05, "backoff_max_s": 0.2}  # fmt: skip
    return OpenAIEngineConfig(**{**settings, **overrides})


def direct_config(server: LocalServer) -> OpenAIEngineConfig:
    """The local server itself, asked with the key it was started with."""
    return openai_engine_config(server.base_url, api_key_env=server.api_key_env)


QUESTIONS = [f"Question {i}: what is {i} times 3?" for i in range(20)]
FAULTS = {0: "429", 1: "429", 2: "500x2", 3: "500x2", 4: "drop", 5: "drop", 6: "slow", 7: "500 always", 8: "401"}


def seed_of(index: int) -> int:
    return rows.completion_seed(SEED, f"q{index}", 0)


def plan_for(faults: dict[int, str]) -> Callable[[dict, int], str | None]:
    by_seed = {seed_of(i): fault for i, fault in faults.items()}

    def plan(body: dict, attempt: int) -> str | None:
        fault = by_seed.get(body.get("seed"))
        if fault in ("429", "drop", "slow"):
            return fault if attempt == 1 else None
        if fault == "500x2":
            return "500" if attempt <= 2 else None
        return {"500 always": "500", "401": "401"}.get(fault)

    return plan


def test_direct_generation_against_vllm_serve(server, tmp_path):
    sampling = Sampling(temperature=0.7, max_tokens=16, n=2, seed=SEED)
    requests = requests_table(QUESTIONS[:6] + ["7 " * 600])  # the last is over the served context
    summary = engines.generate(direct_config(server), requests, sampling, str(tmp_path / "out"))
    assert (summary["ok"], summary["failed"], summary["completions"]) == (12, 2, 14)
    table = engines.read_results(str(tmp_path / "out"), requests, 2).to_pylist()
    failed = [r for r in table if r["status"] == "failed"]
    assert {r["request_id"] for r in failed} == {"q6"} and all("400" in r["error"] for r in failed)
    assert all(r["attempts"] == 1 for r in failed)  # a 400 is not retried
    assert all(r["error"].startswith(results.TOO_LONG) for r in failed), failed[0]["error"]
    for row in table:
        if row["status"] == "ok":
            assert 1 <= row["output_tokens"] <= 16 and row["prompt_tokens"] > 5 and row["finish_reason"]
    again = engines.generate(direct_config(server), requests, sampling, str(tmp_path / "out"))
    assert again["asked"] == 0  # too long for the served context: the same request would fail again


def test_faults_end_ok_or_failed_and_a_rerun_retries_only_failures(server, tmp_path, monkeypatch, capfd):
    secret = "sk-test-" + "d3adb33f" * 4
    monkeypatch.setenv(KEY_ENV, secret)
    sampling = Sampling(temperature=0.7, max_tokens=16, seed=SEED)
    requests = requests_table(QUESTIONS)
    out_dir = str(tmp_path / "faulty")
    engine = openai_engine_config("", api_key_env=KEY_ENV)
    with FaultProxy(server, plan_for(FAULTS), key=secret) as proxy:
        summary = engines.generate(engine.model_copy(update={"base_url": proxy.base_url}), requests, sampling, out_dir)
    assert (summary["completions"], summary["ok"], summary["failed"], summary["missing"]) == (20, 18, 2, 0)
    assert 1 < proxy.max_in_flight <= 4  # concurrent, and bounded
    table = engines.read_results(out_dir, requests).to_pylist()
    assert len({r["request_id"] for r in table}) == len(table) == 20  # none lost, none twice
    result = {int(r["request_id"][1:]): r for r in table}
    expected_attempts = {0: 2, 1: 2, 2: 3, 3: 3, 4: 2, 5: 2, 6: 2, 7: 4, 8: 1}
    for index, row in result.items():
        assert row["attempts"] == expected_attempts.get(index, 1), (index, row)
    assert result[7]["status"] == "failed" and "500" in result[7]["error"] and "exploded" in result[7]["error"]
    assert result[8]["status"] == "failed" and "401" in result[8]["error"] and "***" in result[8]["error"]
    first, second = proxy.seen[seed_of(0)][:2]
    assert second - first >= 0.95  # Retry-After: 1 was honoured
    attempted_seeds = Counter(seed for seed, _ in proxy.actions)

    with FaultProxy(server, lambda body, attempt: None, key=secret) as healed:
        again = engines.generate(engine.model_copy(update={"base_url": healed.base_url}), requests, sampling, out_dir)
    assert again["asked"] == 2 and again["ok"] == 20
    assert set(healed.seen) == {seed_of(7), seed_of(8)}  # only the failed rows were asked again
    final = {int(r["request_id"][1:]): r for r in engines.read_results(out_dir, requests).to_pylist()}
    assert final[7]["attempts"] == 5 and final[8]["attempts"] == 2
    assert all(final[i]["output"] == result[i]["output"] for i in result if result[i]["status"] == "ok")
    assert sum(attempted_seeds.values()) == sum(expected_attempts.get(i, 1) for i in range(20))

    direct_dir = str(tmp_path / "direct")
    engines.generate(direct_config(server), requests, sampling, direct_dir)
    direct = {r["request_id"]: r["output"] for r in engines.read_results(direct_dir, requests).to_pylist()}
    assert all(direct[f"q{i}"] == final[i]["output"] for i in final)  # retries do not change outputs

    captured = capfd.readouterr()
    written = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert secret not in captured.out + captured.err and secret.encode() not in written


KILLED_RUN = """
import json, sys
import pyarrow.parquet as pq
from pipelines.generate import engine as engines
from pipelines.generate.settings import OpenAIEngineConfig, Sampling
job = json.loads(sys.argv[1])
engine = OpenAIEngineConfig.model_validate(job["engine"])
engines.generate(engine, [job["requests"]], Sampling.model_validate(job["sampling"]), job["out_dir"])
"""


def test_a_killed_run_keeps_its_parts_and_the_next_asks_only_for_the_rest(server, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import pyarrow.parquet as pq

    from tests.conftest import REPO, cli_env

    requests = requests_table(QUESTIONS)
    pq.write_table(requests, tmp_path / "requests.parquet")
    out_dir = tmp_path / "out"
    sampling = Sampling(temperature=0.7, max_tokens=16, seed=SEED)
    slow_after_six = lambda body, attempt: "slow" if len(proxy.actions) > 6 else None  # noqa: E731
    with FaultProxy(server, slow_after_six, slow_s=60) as proxy:
        engine = openai_engine_config(proxy.base_url, max_in_flight=2, rows_per_part=2, timeout_s=120)
        job = {"engine": engine.model_dump(), "sampling": sampling.model_dump(), "out_dir": str(out_dir),
               "requests": str(tmp_path / "requests.parquet")}  # fmt: skip
        child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, json.dumps(job)], cwd=REPO, env=cli_env())
        deadline = time.monotonic() + 120
        while len(list(out_dir.rglob("part-*.parquet"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    written = pq.read_table(out_dir).num_rows  # the parts the killed run finished
    assert 6 <= written < 20
    with FaultProxy(server, lambda body, attempt: None) as healed:
        summary = engines.generate(openai_engine_config(healed.base_url), requests, sampling, str(out_dir))
    assert summary["asked"] == 20 - written and summary["ok"] == 20
    table = engines.read_results(str(out_dir), requests)
    assert table.num_rows == 20 and len(set(table["request_id"].to_pylist())) == 20
    assert pq.read_table(out_dir).num_rows == 20  # compacted: every file under out_dir, each key once


def test_missing_key_variable_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    engine = openai_engine_config("http://127.0.0.1:9/v1", api_key_env=KEY_ENV)
    with pytest.raises(RuntimeError, match=KEY_ENV):
        engines.generate(engine, requests_table(QUESTIONS[:1]), Sampling(max_tokens=4), str(tmp_path / "out"))


def rate_limited(headers: dict):
    """The error the openai client raises on a 429 with these headers (a real one, not a stand-in)."""
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(429, headers=headers, request=request)
    return openai.RateLimitError("slow down", response=response, body=None)


def test_retry_after_forms_and_backoff_bounds():
    assert openai_engine.retry_after_seconds(rate_limited({"retry-after": "3"})) == 3.0
    assert openai_engine.retry_after_seconds(rate_limited({"retry-after-ms": "250"})) == 0.25
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < openai_engine.retry_after_seconds(rate_limited({"retry-after": date})) <= 30
    assert openai_engine.retry_after_seconds(rate_limited({})) is None
    assert openai_engine.is_retryable(rate_limited({})) and not openai_engine.is_retryable(ValueError("no"))
    engine = openai_engine_config("http://x/v1", backoff_base_s=1.0, backoff_max_s=8.0)
    for tries, (low, high) in {1: (0.5, 1.0), 2: (1.0, 2.0), 4: (4.0, 8.0), 9: (4.0, 8.0)}.items():
        waits = [openai_engine.backoff_seconds(tries, engine, None) for _ in range(50)]
        assert all(low <= w <= high for w in waits) and len(set(waits)) > 1  # jittered
    assert openai_engine.backoff_seconds(3, engine, 12.5) == 12.5  # the server's word wins


def test_context_overflow_is_told_from_other_bad_requests():
    import httpx2
    import openai

    def bad_request(message: str):
        request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
        return openai.BadRequestError(message, response=httpx2.Response(400, request=request), body=None)

    overflow = bad_request("This model's maximum context length is 512 tokens. However, you requested 1210 tokens")
    assert openai_engine.is_too_long(overflow) and not openai_engine.is_retryable(overflow)
    assert openai_engine.describe(overflow, None).startswith(results.TOO_LONG)
    other = bad_request("temperature must be non-negative")
    assert not openai_engine.is_too_long(other) and not openai_engine.describe(other, None).startswith(results.TOO_LONG)
