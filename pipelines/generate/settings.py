"""Generation settings: sampling, and the two engines (`vllm` in Ray actors, `openai` over HTTP)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipelines.settings import Strict


class Sampling(Strict):
    temperature: float = Field(default=1.0, ge=0)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: int = Field(default=512, gt=0)  # new tokens a completion
    n: int = Field(default=1, gt=0)  # completions a request; each is its own row
    seed: int | None = 0  # None: unseeded; else each completion gets a seed derived from (seed, request, index)
    stop: list[str] = []
    regex: str | None = None  # constrain outputs to this regex (vLLM structured outputs); not for hosted APIs


class VllmEngineConfig(Strict):
    """vLLM engines in a Ray Data actor pool: one engine an actor, continuous batching inside it."""

    kind: Literal["vllm"]
    model: str  # a name from `models:`, a checkpoint folder, or a hub name
    tensor_parallel_size: int = Field(default=1, gt=0)
    max_model_len: int | None = Field(default=None, gt=1)  # prompt + output tokens; None: the model's
    gpu_memory_utilization: float = Field(default=0.5, gt=0, le=1)  # <= 0.5 for the CPU build; 0.9 is usual on GPUs
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    enforce_eager: bool = True  # no graph capture or compilation: starts in seconds (turn off on GPUs)
    max_num_seqs: int | None = Field(default=None, gt=0)  # sequences a scheduler step; None: vLLM's
    engine_process: Literal["auto", "inline", "separate"] = "auto"  # auto: inline without GPUs (starts faster)
    cpu_kv_cache_gib: int | None = Field(default=None, gt=0)  # CPU build's KV cache (VLLM_CPU_KVCACHE_SPACE)
    concurrency: int = Field(default=1, gt=0)  # actors, one engine each
    num_cpus: float = Field(default=1, gt=0)  # per actor
    num_gpus: float = Field(default=0, ge=0)  # per actor; at least tensor_parallel_size on GPUs
    threads: int | None = Field(default=None, gt=0)  # torch threads an actor (CPU build); default: num_cpus
    batch_size: int = Field(default=256, gt=0)  # requests handed to an engine at once
    rows_per_part: int = Field(default=2048, gt=0)  # result rows a written part
    io_cpus: float = Field(default=0.25, gt=0)  # CPUs of the read and write tasks beside the actors

    @model_validator(mode="after")
    def _gpus_for_tensor_parallel(self):
        if 0 < self.num_gpus < self.tensor_parallel_size:
            raise ValueError(
                f"num_gpus {self.num_gpus} < tensor_parallel_size {self.tensor_parallel_size}: "
                "an actor needs a GPU for every tensor-parallel rank"
            )
        return self


class OpenAIEngineConfig(Strict):
    """Any OpenAI-compatible chat endpoint: a hosted teacher, or `vllm serve` on a cluster."""

    kind: Literal["openai"]
    base_url: str  # e.g. https://api.openai.com/v1 or http://HOST:8000/v1
    model: str  # the endpoint's model name
    api_key_env: str | None = "OPENAI_API_KEY"  # the variable holding the key (never logged); None: no key
    max_in_flight: int = Field(default=16, gt=0)  # requests awaiting an answer at once
    max_retries: int = Field(default=6, ge=0)  # on 429, 5xx, timeouts and dropped connections
    timeout_s: float = Field(default=120.0, gt=0)  # per HTTP request
    backoff_base_s: float = Field(default=1.0, gt=0)  # first retry waits about this long, doubling after
    backoff_max_s: float = Field(default=60.0, gt=0)  # cap of a backoff wait (a Retry-After is honoured as given)
    rows_per_part: int = Field(default=1024, gt=0)  # result rows a written part
    extra_body: dict = {}  # endpoint-specific request fields, sent as they are


EngineConfig = Annotated[VllmEngineConfig | OpenAIEngineConfig, Field(discriminator="kind")]

# Fields that change how fast or where outputs are made, not what they are: left out of fingerprints.
RUNTIME_KEYS = frozenset(
    {
        "base_url",
        "concurrency",
        "num_cpus",
        "num_gpus",
        "threads",
        "batch_size",
        "rows_per_part",
        "io_cpus",
        "engine_process",
        "cpu_kv_cache_gib",
        "max_num_seqs",
        "gpu_memory_utilization",
        "max_in_flight",
        "max_retries",
        "timeout_s",
        "backoff_base_s",
        "backoff_max_s",
        "api_key_env",
    }
)


def output_settings(engine: VllmEngineConfig | OpenAIEngineConfig) -> dict:
    """The engine's settings that decide its outputs (for fingerprints)."""
    return engine.model_dump(mode="json", exclude=set(RUNTIME_KEYS))
