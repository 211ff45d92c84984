"""The `vllm` engine for real: vLLM (CPU build) in a Ray Data actor pool, on a tiny local Qwen2."""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

import schemas.generate
from pipelines.generate import engine as engines
from pipelines.generate import results
from pipelines.generate.settings import Sampling, VllmEngineConfig
from pipelines.models import small

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

TEXTS = [f"What is {a} + {b}? The answer is {a + b}." for a in range(40) for b in range(10)]
QUESTIONS = [f"What is {i} + {i % 7}?" for i in range(10)]


def build_tiny(folder) -> str:
    """The small-model kit's tiny Qwen2 (head_dim 64, ChatML template), as the demo builds it."""
    return str(small.build(TEXTS, folder, small.SmallModelSpec(vocab_size=400)))


def requests_table(questions: list[str]) -> pa.Table:
    rows = [{"request_id": f"q{i}", "messages": [{"role": "user", "content": q}]} for i, q in enumerate(questions)]
    return pa.Table.from_pylist(rows, schema=schemas.generate.REQUESTS)


def vllm_engine(model: str, **overrides) -> VllmEngineConfig:
    settings = {"kind": "vllm", "model": model, "dtype": "float32", "max_model_len": 256, "cpu_kv_cache_gib": 1}
    return VllmEngineConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


SAMPLING = Sampling(temperature=0.9, max_tokens=12, n=2, seed=7)


@pytest.fixture(scope="module")
def generator(tiny):
    """The actor class itself, in this process (no Ray): one engine for both tests."""
    from pipelines.generate.vllm_engine import VllmGenerator

    return VllmGenerator(tiny, False, vllm_engine(tiny).model_dump(), SAMPLING.model_dump())


def by_key(table: pa.Table) -> dict:
    return {(r["request_id"], r["completion_index"]): r for r in table.to_pylist()}


def pending_table(requests: pa.Table, n: int) -> pa.Table:
    rows = [{**r, "completion_index": k, "previous_attempts": 0} for r in requests.to_pylist() for k in range(n)]
    return pa.Table.from_pylist(rows, schema=schemas.generate.PENDING)


def test_actor_pool_generates_resumes_and_does_not_depend_on_batching(ray_local, tiny, generator, tmp_path):
    too_long = " ".join(["7 + 7 = 14."] * 80)  # far over max_model_len
    everything = requests_table([*QUESTIONS, too_long])
    out_dir = str(tmp_path / "resumed")
    two_actors = vllm_engine(tiny, batch_size=4, concurrency=2, num_cpus=0.5, threads=1)
    first = engines.generate(two_actors, everything.slice(0, 6), SAMPLING, out_dir)
    assert (first["asked"], first["ok"], first["failed"]) == (12, 12, 0)
    second = engines.generate(vllm_engine(tiny, batch_size=4), everything, SAMPLING, out_dir)
    assert second["asked"] == 10  # only the new requests: 5 x n=2
    assert (second["ok"], second["failed"], second["missing"], second["completions"]) == (20, 2, 0, 22)
    resumed = engines.read_results(out_dir, everything, 2)
    assert resumed.num_rows == 22 and len(by_key(resumed)) == 22  # one row a completion
    for row in resumed.to_pylist():
        if row["request_id"] == "q10":
            assert row["status"] == "failed" and row["error"].startswith(results.TOO_LONG)
            assert row["prompt_tokens"] > 256
            continue
        assert row["status"] == "ok" and row["error"] is None and row["attempts"] == 1
        assert 1 <= row["output_tokens"] <= 12 and row["finish_reason"] in ("stop", "length")
        assert row["prompt_tokens"] > 5 and isinstance(row["output"], str)
    assert len({r["output"] for r in resumed.to_pylist() if r["status"] == "ok"}) > 10  # samples differ

    again = engines.generate(vllm_engine(tiny), everything, SAMPLING, out_dir)
    assert again["asked"] == 0  # ok rows and prompts too long for the context are not asked again

    # Per-completion seeds: two actors, batches of 4 and a resumed run give what one batch
    # of every completion in one engine gives.
    at_once = by_key(generator(pending_table(everything, 2)))
    for key, row in by_key(resumed).items():
        assert at_once[key]["status"] == row["status"] and at_once[key]["output"] == row["output"], key


def test_a_failing_request_is_isolated_and_regex_constrains_outputs(generator):
    """vLLM's own validation fails one request of a batch; the others are generated."""
    regex = r"[a-z ]{0,20}\nAnswer: (yes|no)"
    generator.sampling = Sampling(temperature=0.8, max_tokens=60, seed=1, regex=regex)
    try:
        pending = pending_table(requests_table(QUESTIONS[:5]), 1).to_pylist()
        prompts = [{"prompt_token_ids": generator.prompt_ids(row["messages"])} for row in pending]
        params = [generator.params(row, len(p["prompt_token_ids"])) for row, p in zip(pending, prompts, strict=True)]
        prompts[2] = {"prompt_token_ids": [10**6]}  # out of the vocabulary: vLLM refuses this request
        outputs = generator.generate(prompts, params)
        assert isinstance(outputs[2], Exception) and "vocab" in str(outputs[2]).lower()
        for index in (0, 1, 3, 4):
            assert re.fullmatch(regex, outputs[index].outputs[0].text), outputs[index].outputs[0].text
        assert not generator.llm.llm_engine.has_unfinished_requests()
        table = generator(pa.Table.from_pylist(pending, schema=schemas.generate.PENDING))
        assert table["status"].to_pylist() == ["ok"] * 5
        assert all(re.fullmatch(regex, text) for text in table["output"].to_pylist())
    finally:
        generator.sampling = SAMPLING
