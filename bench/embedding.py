"""Embedding backends against plain float32 `SentenceTransformer.encode`, on the same rows.

`python -m bench embedding [--quick]`: 2,000 GSM8K training rows of 400-650 bytes (question,
newline, worked answer; ~510 bytes mean; `--quick`: 64), embedded with all-MiniLM-L6-v2 by
each candidate the scorer offers (torch float32 = the baseline, torch bfloat16, ONNX float32,
ONNX int8), ONNX int8 with the feed-forward output projections kept float32, plus OpenVINO
float32/bfloat16 on the same ONNX export where `openvino` imports (not a dependency). Each
candidate is warmed up, then the rows go through all candidates in chunks, round robin, so
a load change on a shared box hits every candidate alike. Prints rows/s, the ratio to
float32, the per-row cosine to float32 (min, 1st percentile), the overlap of k-center picks
(100 of the rows; the selector's own exact greedy) with float32's, and the hours 1M such
rows would take at that rate.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save
from pipelines.models import loading
from pipelines.score import embedding, embedding_onnx
from pipelines.select import greedy, kcenter

POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pools" / "gsm8k_train.jsonl"
THREADS, BATCH, CHUNK = 2, 64, 256


def rows(n: int, seed: int = 0) -> list[str]:
    """`n` GSM8K rows of 400-650 bytes, a seeded sample."""
    if not POOL.exists():
        raise SystemExit(f"bench embedding: {POOL} is absent (the shared data folder beside the checkout)")
    texts = [f"{r['question']}\n{r['answer']}" for r in map(json.loads, POOL.read_text().splitlines())]
    texts = [t for t in texts if 400 <= len(t.encode()) <= 650]
    return random.Random(seed).sample(texts, n)


def candidates(location: str, run_dir: str) -> dict:
    """name -> encoder with `encode(texts, batch_size)`, the baseline first."""
    fingerprint = loading.ModelRef(location).fingerprint()
    found = {
        "torch float32": embedding.TorchEncoder(location, "cpu", "float32", None),
        "torch bfloat16": embedding.TorchEncoder(location, "cpu", "bfloat16", None),
    }
    for precision in embedding_onnx.PRECISIONS:
        model = embedding_onnx.ensure_exported(location, fingerprint, precision, run_dir)
        found[f"onnx {precision}"] = embedding_onnx.OnnxEncoder(location, model, THREADS, "cpu", None)
    found["onnx int8 ffn-out fp32"] = _int8_ffn_out_float32(
        location, embedding_onnx.cache_location(run_dir, fingerprint, "float32")
    )
    try:
        import openvino
    except ImportError:
        return found
    exported = embedding_onnx.cache_location(run_dir, fingerprint, "float32")
    for precision in ("f32", "bf16"):
        encoder = embedding_onnx.OnnxEncoder(location, exported, THREADS, "cpu", None)
        encoder.session = _OpenVino(openvino, exported, precision)  # the same tokenising and pooling
        found[f"openvino {precision}"] = encoder
    return found


def _int8_ffn_out_float32(location: str, exported: str):
    """ONNX int8 with the feed-forward output projections kept float32 (a candidate, not a
    precision the scorer offers yet): the float32 export quantised beside it."""
    target = exported.removesuffix(".onnx") + "-int8-ffn-out-fp32.onnx"
    embedding_onnx.quantise(exported, target, embedding_onnx.ffn_output_matmuls(exported))
    return embedding_onnx.OnnxEncoder(location, target, THREADS, "cpu", None)


class _OpenVino:
    """ONNX Runtime's `run(None, feed)` over an OpenVINO compiled model."""

    def __init__(self, openvino, path: str, precision: str):
        options = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": THREADS}
        self.request = openvino.Core().compile_model(path, "CPU", options).create_infer_request()

    def run(self, _outputs, feed: dict) -> list[np.ndarray]:
        return [self.request.infer(feed)[0].copy()]


def embed_all(encoders: dict, texts: list[str]) -> tuple[dict, dict]:
    """(vectors, seconds) a candidate: warmed up, then chunks round robin across candidates."""
    for encoder in encoders.values():
        encoder.encode(texts[:BATCH], BATCH)
    vectors = {name: [] for name in encoders}
    seconds = dict.fromkeys(encoders, 0.0)
    for start in range(0, len(texts), CHUNK):
        for name, encoder in encoders.items():
            began = time.perf_counter()
            vectors[name].append(encoder.encode(texts[start : start + CHUNK], BATCH))
            seconds[name] += time.perf_counter() - began
    return {name: embedding.unit_rows(np.concatenate(parts)) for name, parts in vectors.items()}, seconds


def kcenter_picks(vectors: np.ndarray, budget: int) -> set[int]:
    keys = greedy.tie_keys([str(i) for i in range(len(vectors))], 0)
    picks, _ = kcenter.select(vectors, budget, int(np.argmin(keys)), keys)
    return set(picks)


def main(quick: bool = False) -> None:
    import torch

    n, budget = (64, 8) if quick else (2000, 100)
    torch.set_num_threads(THREADS)
    texts = rows(n)
    mean_bytes = np.mean([len(t.encode()) for t in texts])
    print(f"embedding benchmark on {machine()}: {n} rows of {mean_bytes:.0f} bytes mean, {THREADS} threads")
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as run_dir:
        encoders = candidates(loading.default_embedding_model(), run_dir)
        vectors, seconds = embed_all(encoders, texts)
    base = vectors["torch float32"]
    base_picks = kcenter_picks(base, budget)
    results = {"rows": n, "mean_bytes": float(mean_bytes), "kcenter_budget": budget, "candidates": {}}
    for name, found in vectors.items():
        cosine = np.sum(found * base, axis=1)
        rate = n / seconds[name]
        result = {
            "rows_per_s": rate,
            "ratio": seconds["torch float32"] / seconds[name],
            "cosine_min": float(cosine.min()),
            "cosine_p1": float(np.percentile(cosine, 1)),
            "kcenter_overlap": len(kcenter_picks(found, budget) & base_picks) / budget,
            "hours_1m": 1e6 / rate / 3600,
        }
        results["candidates"][name] = result
        print(
            f"  {name:16} {rate:7.1f} rows/s  x{result['ratio']:.2f}  cosine min {result['cosine_min']:.5f} "
            f"p1 {result['cosine_p1']:.5f}  k-center overlap {result['kcenter_overlap']:.2f}  "
            f"1M rows: {result['hours_1m']:.1f} h"
        )
    print(f"  results: {save('embedding' + ('-quick' if quick else ''), results)}")


if __name__ == "__main__":
    main()
