"""The `openai` engine: any OpenAI-compatible chat endpoint, asked with bounded concurrency.

`max_in_flight` workers share one async client; each asks for one completion at a time
(n=1 with a seed of its own, so every completion is retried and counted on its own). A
429, a 5xx, a timeout or a dropped connection is retried up to `max_retries` times after
an exponential backoff with jitter, or after the server's Retry-After when it sends one;
any other error (400, 401, 404, ...) fails the row at once; a prompt over the model's
context is marked so that re-runs do not ask it again. Every pending row ends as one
result row, `ok` or `failed` with its error. The API key is read from the environment
variable the config names and is scrubbed from every error text.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import random
import time

import pyarrow.parquet as pq

from pipelines import storage
from pipelines.generate import results, rows
from pipelines.generate.settings import OpenAIEngineConfig, Sampling

RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx


def api_key(engine: OpenAIEngineConfig) -> str | None:
    if engine.api_key_env is None:
        return None
    key = os.environ.get(engine.api_key_env)
    if not key:
        raise RuntimeError(f"openai engine: the environment variable {engine.api_key_env} (api_key_env) is not set")
    return key


def retry_after_seconds(error) -> float | None:
    """The server's Retry-After (seconds or an HTTP date) or retry-after-ms, if it sent one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def backoff_seconds(tries: int, engine: OpenAIEngineConfig, retry_after: float | None) -> float:
    """Retry-After as given; else exponential (base x 2^(tries-1), capped) with equal jitter."""
    if retry_after is not None:
        return retry_after
    ceiling = min(engine.backoff_max_s, engine.backoff_base_s * 2 ** (tries - 1))
    return random.uniform(ceiling / 2, ceiling)


def is_retryable(error: Exception) -> bool:
    import openai

    if isinstance(error, openai.APIConnectionError):  # timeouts and dropped connections too
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    return isinstance(error, openai.APIResponseValidationError | asyncio.TimeoutError)


def is_too_long(error: Exception) -> bool:
    """A 400 for a prompt over the model's context (vLLM's and OpenAI's wording): the same
    request would fail again, so a re-run does not ask it (see results.TOO_LONG)."""
    text = str(error).lower()
    return getattr(error, "status_code", None) == 400 and (
        "maximum context length" in text or "context_length_exceeded" in text
    )


def describe(error: Exception, secret: str | None) -> str:
    text = f"{type(error).__name__}: {error}"
    status = getattr(error, "status_code", None)
    if status is not None and str(status) not in text:
        text = f"HTTP {status}: {text}"
    if is_too_long(error):
        text = f"{results.TOO_LONG}: {text}"
    return text.replace(secret, "***") if secret else text


class Asker:
    """One chat completion per pending row, with retries."""

    def __init__(self, engine: OpenAIEngineConfig, sampling: Sampling, secret: str | None):
        from openai import AsyncOpenAI

        self.engine, self.sampling, self.secret = engine, sampling, secret
        self.client = AsyncOpenAI(
            base_url=engine.base_url, api_key=secret or "none", max_retries=0, timeout=engine.timeout_s
        )

    def body(self, row: dict) -> dict:
        sampling = self.sampling
        extra = dict(self.engine.extra_body)
        if sampling.regex:  # vLLM's structured outputs, as `vllm serve` takes them
            extra["structured_outputs"] = {"regex": sampling.regex}
        body = {
            "model": self.engine.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "n": 1,
            "extra_body": extra or None,
        }
        seed = rows.completion_seed(sampling.seed, row["request_id"], row["completion_index"])
        if seed is not None:
            body["seed"] = seed
        if sampling.stop:
            body["stop"] = sampling.stop
        return body

    async def ask(self, row: dict) -> dict:
        tries = 0
        while True:
            tries += 1
            try:
                response = await self.client.chat.completions.create(**self.body(row))
                return self.result(row, response, tries)
            except Exception as error:
                if not is_retryable(error) or tries > self.engine.max_retries:
                    return rows.failed_row(row, describe(error, self.secret), tries)
                await asyncio.sleep(backoff_seconds(tries, self.engine, retry_after_seconds(error)))

    def result(self, row: dict, response, tries: int) -> dict:
        if not response.choices or response.choices[0].message.content is None:
            reason = response.choices[0].finish_reason if response.choices else "no choices"
            return rows.failed_row(row, f"empty response (finish_reason {reason})", tries)
        choice, usage = response.choices[0], response.usage
        return rows.ok_row(
            row,
            choice.message.content,
            tries,
            usage.prompt_tokens if usage else None,
            usage.completion_tokens if usage else None,
            choice.finish_reason,
        )


class PartWriter:
    """Buffers result rows; writes a part every `rows_per_part` rows and at the end."""

    def __init__(self, parts_dir: str, rows_per_part: int):
        self.parts_dir, self.rows_per_part, self.buffer = parts_dir, rows_per_part, []
        self.counts = {"rows": 0, "ok": 0, "failed": 0, "output_tokens": 0}

    def add(self, row: dict) -> None:
        self.buffer.append(row)
        self.counts["rows"] += 1
        self.counts[row["status"]] += 1
        self.counts["output_tokens"] += row["output_tokens"] or 0
        if len(self.buffer) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            results.write_part(rows.to_table(self.buffer), self.parts_dir)
            self.buffer = []


async def _run(engine, sampling, pending_file, parts_dir, progress, secret) -> dict:
    asker = Asker(engine, sampling, secret)
    writer = PartWriter(parts_dir, engine.rows_per_part)
    queue: asyncio.Queue = asyncio.Queue(maxsize=2 * engine.max_in_flight)

    async def produce():
        with storage.open_random_access(pending_file) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    await queue.put(row)
        for _ in range(engine.max_in_flight):
            await queue.put(None)  # one stop sign a worker

    async def work():
        while (row := await queue.get()) is not None:
            writer.add(await asker.ask(row))
            progress.advance(1)

    try:
        await asyncio.gather(produce(), *(work() for _ in range(engine.max_in_flight)))
    finally:
        writer.flush()  # what finished is kept, even when the run is interrupted
        await asker.client.close()
    return writer.counts


def run(engine: OpenAIEngineConfig, sampling: Sampling, pending_file: str, parts_dir: str, progress) -> dict:
    return asyncio.run(_run(engine, sampling, pending_file, parts_dir, progress, api_key(engine)))
