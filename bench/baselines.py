"""The plain single-process baselines bench/scoring.py measures Winnow against: a bare zlib
loop, a direct `SentenceTransformer.encode`, and the reference IFD scripts' loop (one HF
forward with masked labels a sequence, two sequences a row, torch's default threads)."""

from __future__ import annotations

import time
import zlib

import pyarrow.parquet as pq


def compress_all(texts: list[bytes]) -> None:
    for raw in texts:
        zlib.compress(raw, 9)


def direct_encode(texts: list[str], batch_size: int, max_seq_length: int) -> float:
    """Seconds of one `SentenceTransformer.encode` of the texts, 2 torch threads, the model
    loaded beforehand (run in a fresh process, so no Ray runs beside it)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from pipelines.models.loading import default_embedding_model

    torch.set_num_threads(2)
    model = SentenceTransformer(default_embedding_model(), device="cpu")
    model.max_seq_length = max_seq_length
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    return time.perf_counter() - started


def batch_of_one(run_dir: str, rows: int) -> tuple[float, dict]:
    """The reference scripts' loop: one HF forward with masked labels a sequence."""
    import torch

    from pipelines.models.loading import ModelRef, load_causal_lm
    from pipelines.score import render, spans

    tokenizer, model = load_causal_lm(ModelRef(f"{run_dir}/models/tiny"))
    torch.set_num_threads(2)  # torch's default on this machine
    pool = pq.read_table(f"{run_dir}/pool", columns=["id", "messages"]).slice(0, rows).to_pylist()
    results, started = {}, time.perf_counter()
    for row in pool:
        turns = render.turns_of(row["messages"])
        given = spans.with_prompt(tokenizer, turns, use_chat_template=True)
        alone = spans.alone(tokenizer, turns[-1][1], "Assistant: ")
        results[row["id"]] = {"loss_given_prompt": _one(model, given, 512), "loss_alone": _one(model, alone, 512)}
    return time.perf_counter() - started, results


def _one(model, span, max_length: int):
    import torch

    ids = span.ids[:max_length]
    labels = [token if max(span.start, 1) <= i < span.stop else -100 for i, token in enumerate(ids)]
    if all(label == -100 for label in labels):
        return None
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
