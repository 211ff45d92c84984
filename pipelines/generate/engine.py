"""One interface for candidates, critiques and evaluation: `generate(engine, requests, ...)`.

Requests are a table (or Parquet files) of `request_id` and chat `messages`; results are
rows of `schemas.generate.RESULTS`, one per (request, completion index), written as parts
into `out_dir`. Resumable: a key already `ok` in out_dir is not asked again, a `failed`
one is retried, and a killed call keeps the parts it wrote. See results.py for the layout.
"""

from __future__ import annotations

import time

import pyarrow as pa

import schemas.generate
from pipelines import storage
from pipelines.generate import results
from pipelines.generate.settings import OpenAIEngineConfig, Sampling, VllmEngineConfig, output_settings
from pipelines.progress import StageProgress, note

GENERATE_VERSION = 1  # bump when the same settings would produce different outputs


def model_ref(engine, config):
    """Where a `vllm` engine's weights are: resolved against the config's `models:`."""
    from pipelines.models import loading

    models = getattr(config, "models", None) or {}
    run_dir = getattr(config, "run_dir", None) or "."
    return loading.resolve(engine.model, models, run_dir)


def fingerprint(engine, sampling: Sampling, config=None) -> dict:
    """What decides the outputs: engine settings, the weights, sampling, code version."""
    document = {"engine": output_settings(engine), "sampling": sampling.model_dump(mode="json")}
    if isinstance(engine, VllmEngineConfig):
        document["weights"] = model_ref(engine, config).fingerprint()
    return {**document, "version": GENERATE_VERSION}


def generate(
    engine: VllmEngineConfig | OpenAIEngineConfig,
    requests: pa.Table | list[str] | str,
    sampling: Sampling,
    out_dir: str,
    config=None,
    label: str = "generate",
) -> dict:
    """Ask `engine` for every completion of `requests` not yet `ok` in `out_dir`.

    `config` (an ExperimentConfig) gives `models:`, `run_dir` and `ray:` to a `vllm`
    engine. Returns counts over the requested completions (ok, failed, missing), tokens,
    and this call's work: `asked` completions in `seconds`.
    """
    if isinstance(requests, str):
        requests = [requests]
    run_dir = config.run_dir if config is not None else None  # deletes stay inside it
    results.prepare(out_dir, fingerprint(engine, sampling, config), within=run_dir)
    connection = results.connect(out_dir, requests, sampling.n)
    results.check_unique(connection)
    rows_per_group = engine.batch_size if isinstance(engine, VllmEngineConfig) else 1024
    pending_file, n_pending = results.write_pending(connection, out_dir, rows_per_group)
    connection.close()
    started, counts = time.perf_counter(), {}
    if n_pending:
        parts_dir = results.next_attempt(out_dir)
        with StageProgress(label, n_pending, "completions") as progress:
            counts = _run_engine(engine, sampling, pending_file, parts_dir, config, progress)
        results.compact(out_dir, engine.rows_per_part)
    else:
        note(f"{label}: every completion is already in {out_dir}")
    storage.remove(pending_file, within=out_dir)
    seconds = time.perf_counter() - started
    connection = results.connect(out_dir, requests, sampling.n)
    summary = results.summary(connection)
    connection.close()
    asked_tokens = counts.get("output_tokens", 0)
    return {
        **summary,
        "asked": n_pending,
        "asked_ok": counts.get("ok", 0),
        "asked_failed": counts.get("failed", 0),
        "asked_output_tokens": asked_tokens,
        "seconds": round(seconds, 3),
        "output_tokens_per_second": round(asked_tokens / seconds, 1) if n_pending and seconds else None,
    }


def _run_engine(engine, sampling, pending_file, parts_dir, config, progress) -> dict:
    if isinstance(engine, OpenAIEngineConfig):
        from pipelines.generate import openai_engine

        return openai_engine.run(engine, sampling, pending_file, parts_dir, progress)
    from pipelines.config import RayConfig
    from pipelines.generate import vllm_engine
    from pipelines.ray_runtime import ensure_ray

    ensure_ray(getattr(config, "ray", None) or RayConfig())
    return vllm_engine.run(engine, model_ref(engine, config), sampling, pending_file, parts_dir, progress)


def read_results(out_dir: str, requests: pa.Table | list[str], n: int = 1) -> pa.Table:
    """The latest result row of every requested completion that has one."""
    connection = results.connect(out_dir, requests, n)
    columns = ", ".join(f'l."{name}"' for name in schemas.generate.RESULTS.names)
    table = connection.sql(
        f"SELECT {columns} FROM keys k JOIN latest l USING (request_id, completion_index) "
        "ORDER BY l.request_id, l.completion_index"
    ).to_arrow_table()
    connection.close()
    return table.cast(schemas.generate.RESULTS)
