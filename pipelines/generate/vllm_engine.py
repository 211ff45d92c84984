"""The `vllm` engine: `vllm.LLM` in a Ray Data actor pool, one engine per actor.

Each actor renders its batch with the tokenizer's chat template, checks every prompt
against the context length (a prompt that does not fit is a `failed` row, not an error for
the batch), and hands the batch to `LLM.generate`, whose scheduler batches continuously.
Every completion is its own vLLM request with its own seed (see rows.completion_seed).

Why not `ray.data.llm`: on the CPU build its engine stage runs only with a hand-made CPU
placement bundle and engine metrics off, it adds three CPU actor pools (chat template,
tokenize, detokenize) that a 2-CPU machine cannot spare, and it keeps only the first
completion of a request and no finish reason. The same actor runs on the CUDA build.
"""

from __future__ import annotations

import os
import time

import pyarrow as pa

from pipelines.generate import results, rows
from pipelines.generate.settings import Sampling, VllmEngineConfig

STATS = ("rows", "ok", "failed", "output_tokens")


class VllmGenerator:
    """Ray Data actor: loads one engine in `__init__`; `__call__(pending rows) -> result rows`."""

    def __init__(self, location: str, trust_remote_code: bool, engine: dict, sampling: dict):
        self.engine = VllmEngineConfig.model_validate(engine)
        self.sampling = Sampling.model_validate(sampling)
        configure_process(self.engine)
        from vllm import LLM

        optional = {"max_num_seqs": self.engine.max_num_seqs, "max_model_len": self.engine.max_model_len}
        self.llm = LLM(
            model=location,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=self.engine.tensor_parallel_size,
            gpu_memory_utilization=self.engine.gpu_memory_utilization,
            dtype=self.engine.dtype,
            enforce_eager=self.engine.enforce_eager,
            distributed_executor_backend="uni" if self.engine.tensor_parallel_size == 1 else "mp",  # one node an engine
            disable_log_stats=True,
            # CPU build: a seeded request whose prefill is split over steps crashes the sampler
            # ("CPU Generator does not use offset"); whole prefills avoid it.
            enable_chunked_prefill=self.engine.num_gpus > 0,
            **{key: value for key, value in optional.items() if value is not None},
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def __call__(self, batch: pa.Table) -> pa.Table:
        pending = batch.to_pylist()
        out: list[dict | None] = [None] * len(pending)
        prompts, params, positions = [], [], []
        for position, row in enumerate(pending):
            try:
                ids = self.prompt_ids(row["messages"])
            except Exception as error:  # a template that rejects the conversation fails this row only
                out[position] = rows.failed_row(row, f"chat template: {error}", 1)
                continue
            if len(ids) >= self.max_model_len:
                message = f"{results.TOO_LONG}: {len(ids)} tokens; max_model_len is {self.max_model_len}"
                out[position] = rows.failed_row(row, message, 1, len(ids))
                continue
            prompts.append({"prompt_token_ids": ids})
            params.append(self.params(row, len(ids)))
            positions.append(position)
        for position, result in zip(positions, self.generate(prompts, params), strict=True):
            out[position] = _result_row(pending[position], result)
        return rows.to_table(out)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def params(self, row: dict, prompt_tokens: int):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        sampling = self.sampling
        structured = StructuredOutputsParams(regex=sampling.regex) if sampling.regex else None
        return SamplingParams(
            n=1,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=min(sampling.max_tokens, self.max_model_len - prompt_tokens),
            seed=rows.completion_seed(sampling.seed, row["request_id"], row["completion_index"]),
            stop=sampling.stop or None,
            structured_outputs=structured,
        )

    def generate(self, prompts: list, params: list) -> list:
        """Outputs in order; when the batch fails, halves are tried until the failing
        requests are found, and each of those yields its exception instead of an output."""
        if not prompts:
            return []
        try:
            return self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as error:
            if _engine_dead(error):
                raise  # the actor is lost: the run fails, and a re-run resumes from the written parts
            self.abort_unfinished()
            if len(prompts) == 1:
                return [error]
            middle = len(prompts) // 2
            return self.generate(prompts[:middle], params[:middle]) + self.generate(prompts[middle:], params[middle:])

    def abort_unfinished(self) -> None:
        """A failed `generate` leaves its requests in the engine; the next call would return
        them too. (vLLM keeps their ids in the output processor; `internal` ids.)"""
        engine = self.llm.llm_engine
        if engine.has_unfinished_requests():
            engine.abort_request(list(engine.output_processor.request_states), internal=True)


def actor_env(engine: VllmEngineConfig) -> dict:
    """Ray remote options giving a CPU engine's actor OMP_NUM_THREADS from its start. vLLM's CPU
    attention checks that the thread count it planned with is the calling thread's OpenMP
    count; Ray Data calls an actor's UDF on another thread than `__init__`, which sees only
    what the process started with (Ray's default: the actor's whole CPUs), so a `threads`
    above that crashed ("thread_num (1 vs. 2)") unless the process starts with it."""
    if engine.num_gpus > 0:
        return {}
    threads = engine.threads or max(1, int(engine.num_cpus))
    return {"runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads)}}}


def configure_process(engine: VllmEngineConfig) -> None:
    """Environment of the actor's process, set before vLLM is imported."""
    inline = engine.engine_process == "inline" or (engine.engine_process == "auto" and engine.num_gpus == 0)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if inline else "1"
    if engine.cpu_kv_cache_gib is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kv_cache_gib)
    if engine.num_gpus == 0:  # CPU build: torch threads as reserved; oversubscribing them is many times slower
        threads = engine.threads or max(1, int(engine.num_cpus))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def _engine_dead(error: Exception) -> bool:
    return type(error).__name__ == "EngineDeadError"


def _result_row(pending: dict, result) -> dict:
    if isinstance(result, Exception):
        return rows.failed_row(pending, f"{type(result).__name__}: {result}", 1)
    completion = result.outputs[0]
    return rows.ok_row(
        pending,
        completion.text,
        1,
        len(result.prompt_token_ids),
        len(completion.token_ids),
        completion.finish_reason,
    )


def write_results(batch: pa.Table, parts_dir: str) -> pa.Table:
    """Ray Data writer: one part a batch; returns the batch's counts."""
    results.write_part(batch, parts_dir)
    status = batch["status"].to_pylist()
    tokens = sum(t or 0 for t in batch["output_tokens"].to_pylist())
    counts = {"rows": batch.num_rows, "ok": status.count("ok"), "failed": status.count("failed")}
    return pa.table({key: [value] for key, value in {**counts, "output_tokens": tokens}.items()})


def run(engine: VllmEngineConfig, ref, sampling: Sampling, pending_file: str, parts_dir: str, progress) -> dict:
    """Generate every pending row through the actor pool; returns counts of this call."""
    import ray.data

    from pipelines import fault_tolerance
    from pipelines.score import parts
    from pipelines.score.source import RowGroups

    pool_cpus = engine.concurrency * engine.num_cpus
    fault_tolerance.refuse_starving_pool(
        "generate", "the vllm engine's num_cpus x concurrency", pool_cpus, engine.io_cpus
    )
    # A lost engine is restarted and its batches asked again; a lost write is redone under
    # the same part name (its keys' hash): no prompt is lost, none is answered twice.
    retries = fault_tolerance.task_options()
    source = RowGroups([pending_file], list(_pending_columns()), engine.batch_size)
    dataset = ray.data.read_datasource(
        source, num_cpus=engine.io_cpus, override_num_blocks=source.num_tasks(), ray_remote_args=retries
    )
    dataset = (
        dataset.map_batches(
            VllmGenerator,
            fn_constructor_args=(ref.location, ref.trust_remote_code, engine.model_dump(), sampling.model_dump()),
            batch_format="pyarrow",
            batch_size=engine.batch_size,
            compute=ray.data.ActorPoolStrategy(size=engine.concurrency),
            num_cpus=engine.num_cpus,
            num_gpus=engine.num_gpus,
            **fault_tolerance.actor_options(),
            **actor_env(engine),
        )
        .map_batches(  # the bar follows engine calls as they finish, not parts as they are written
            parts.count_done,
            batch_size=None,
            batch_format="pyarrow",
            num_cpus=0,
            fn_kwargs={"counter": progress.counter()},
        )
        .map_batches(
            write_results,
            batch_size=engine.rows_per_part,
            batch_format="pyarrow",
            num_cpus=engine.io_cpus,
            fn_kwargs={"parts_dir": parts_dir},
            **retries,
        )
    )
    counts = dict.fromkeys(STATS, 0)
    started = time.perf_counter()
    with fault_tolerance.capacity_guard("generate", progress):
        for row in dataset.iter_rows():
            for key in STATS:
                counts[key] += row[key]
            rate = counts["output_tokens"] / (time.perf_counter() - started)
            progress.update(progress.done, f"{rate:,.0f} tokens/s")
    return counts


def _pending_columns():
    import schemas.generate

    return schemas.generate.PENDING.names
