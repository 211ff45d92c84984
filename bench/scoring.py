"""Scoring throughput against plain baselines, and peak memory at 1M rows.

- compression: the Ray Data scorer on a 1M-row pool vs a bare single-process zlib loop over
  the same, already rendered texts (Ray already started; reading, rendering and writing
  included on the Ray side only);
- embedding: the Ray Data scorer (one actor, 2 torch threads) vs `SentenceTransformer.encode`
  on the same texts and batch size, all-MiniLM-L6-v2 (actor start included);
- model_loss: the Ray Data scorer vs the batch-of-one loop of the reference IFD scripts (one
  forward a sequence, two sequences a row), the demo's tiny Qwen2 model, with the largest
  absolute difference between the two over every row the baseline scored;
- the slow baselines run on the first rows of the pool that Ray Data scores whole: rows/s is
  compared, and Ray's start (actors loading their models) is in its time, so it gets more
  rows than the baseline (a real run scores far more rows than either);
- peak memory (summed PSS of the whole process tree) of `winnow run --stage score` with
  compression, embedding and clusters (k=1000) on the 1M-row pool. The embedding model there
  is a tiny random sentence-transformers encoder built locally (MiniLM would take hours on
  2 CPUs); it measures the pipeline's memory, not embedding quality.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from bench.common import gib, machine, run_measured, save
from bench.ingest import write_pool

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def make_run(work: Path, name: str, rows: int, score: dict, models: dict | None = None, math: bool = False) -> Path:
    """A run folder whose pool is `rows` generated ShareGPT rows, or rows of the `mathematics`
    source (short questions and answers, as in the demo); ingested, not measured."""
    if math:
        source = {"kind": "mathematics", "name": "pool", "rows": rows, "seed": 1}
    else:
        inputs = work / f"{name}-inputs"
        inputs.mkdir()
        write_pool(inputs, rows, seed=rows)
        source = {"kind": "files", "name": "pool", "paths": [str(inputs)]}
    document = {
        "name": name,
        "run_dir": str(work / name),
        "models": models or {},
        "score": score,
        "ingest": {"sources": [source]},
    }
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(document))
    run_measured([str(BIN / "winnow"), "run", str(config), "--stage", "ingest", "--stage", "models"], ENV)
    return config


def pool_texts(config_path: Path, mode: str = "conversation") -> list[str]:
    from pipelines import config as config_module
    from pipelines.score import render

    run_dir = config_module.load(config_path).run_dir
    table = pq.read_table(f"{run_dir}/pool", columns=["messages"])
    return render.render_column(table["messages"], mode).to_pylist()


def timed_scorer(config_path: Path, name: str) -> tuple[float, dict]:
    """Seconds and manifest of one scorer run in this process (Ray started beforehand)."""
    from pipelines import config as config_module
    from pipelines.ray_runtime import ensure_ray
    from pipelines.score import runner
    from pipelines.score.stage import BUILDERS

    config = config_module.load(config_path)
    ensure_ray(config.ray)
    scorer = BUILDERS[name](config, getattr(config.score, name))
    started = time.perf_counter()
    manifest = runner.run(config.run_dir, scorer)
    return time.perf_counter() - started, manifest


def compression(work: Path, rows: int) -> tuple[dict, Path]:
    config = make_run(work, "big", rows, {"compression": {}})
    texts = [t.encode() for t in pool_texts(config)]
    started = time.perf_counter()
    for raw in texts:
        zlib.compress(raw, 9)
    bare = time.perf_counter() - started
    seconds, manifest = timed_scorer(config, "compression")
    assert manifest["rows_out"] == len(texts)
    return {"rows": len(texts), "ray_seconds": seconds, "bare_seconds": bare, "ratio": bare / seconds}, config


def embedding(work: Path, rows: int, baseline_rows: int, batch_size: int = 64, rounds: int = 3) -> dict:
    """Ray Data on `rows` rows (actor start included); direct encode on the first
    `baseline_rows` of the same texts (rows/s is compared, so the baseline can be shorter).
    Best of `rounds` a side: the same encode moved by a third between runs on this VM."""
    from sentence_transformers import SentenceTransformer

    from pipelines.models.loading import default_embedding_model

    score = {"embedding": {"batch_size": batch_size, "threads": 2, "max_seq_length": 128}}
    config = make_run(work, "embed", rows, score)
    texts = pool_texts(config)[:baseline_rows]
    import torch

    torch.set_num_threads(2)
    model = SentenceTransformer(default_embedding_model(), device="cpu")
    model.max_seq_length = 128
    direct = []
    for _ in range(rounds):
        started = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        direct.append(time.perf_counter() - started)
    ray_seconds = []
    for _ in range(rounds):
        shutil.rmtree(Path(config_dir(config)) / "scores", ignore_errors=True)
        shutil.rmtree(Path(config_dir(config)) / "_work", ignore_errors=True)
        seconds, manifest = timed_scorer(config, "embedding")
        ray_seconds.append(seconds)
    ray_rate, direct_rate = manifest["rows_out"] / min(ray_seconds), len(texts) / min(direct)
    return {
        "rows": manifest["rows_out"],
        "baseline_rows": len(texts),
        "ray_seconds": ray_seconds,
        "direct_seconds": direct,
        "ray_rows_per_s": ray_rate,
        "direct_rows_per_s": direct_rate,
        "ratio": ray_rate / direct_rate,
    }


def model_loss(work: Path, rows: int, baseline_rows: int, math: bool) -> dict:
    """The demo's settings: two one-thread actors; the baseline runs with torch's 2 threads on
    the first `baseline_rows` rows, and every one of them is compared with Ray's score."""
    score = {
        "model_loss": {
            "model": "tiny",
            "max_length": 512,
            "batch_size": 32,
            "concurrency": 2,
            "num_cpus": 0.5,
            "threads": 1,
        }
    }
    name = "loss-math" if math else "loss-chat"
    config = make_run(work, name, rows, score, {"tiny": {"build": {"vocab_size": 4096, "train_rows": rows}}}, math)
    seconds, _ = timed_scorer(config, "model_loss")
    ours = {r["id"]: r for r in pq.read_table(f"{config_dir(config)}/scores/model_loss").to_pylist()}
    reference_seconds, reference = batch_of_one(config, baseline_rows)
    gap = max(
        abs(ours[i][k] - reference[i][k])
        for i in reference
        for k in ("loss_given_prompt", "loss_alone")
        if reference[i][k] is not None
    )
    ray_rate, reference_rate = len(ours) / seconds, len(reference) / reference_seconds
    return {
        "rows": len(ours),
        "baseline_rows": len(reference),
        "ray_rows_per_s": ray_rate,
        "batch_of_one_rows_per_s": reference_rate,
        "ratio": ray_rate / reference_rate,
        "max_abs_difference": gap,
    }


def config_dir(config_path: Path) -> str:
    from pipelines import config as config_module

    return config_module.load(config_path).run_dir


def batch_of_one(config_path: Path, rows: int) -> tuple[float, dict]:
    """The reference scripts' loop: one HF forward with masked labels a sequence."""
    import torch

    from pipelines.models.loading import ModelRef, load_causal_lm
    from pipelines.score import render, spans

    run_dir = config_dir(config_path)
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


def peak_memory(work: Path, config_path: Path) -> dict:
    from pipelines.models import small
    from pipelines.models.loading import default_embedding_model

    encoder = small.build_sentence_encoder(work / "tiny-encoder", default_embedding_model())
    document = yaml.safe_load(config_path.read_text())
    document["score"] = {
        "compression": {},
        "clusters": {"k": 1000},
        "embedding": {"model": str(encoder), "text": "prompt", "max_seq_length": 32, "batch_size": 256, "threads": 2},
    }
    shutil.rmtree(Path(document["run_dir"]) / "scores", ignore_errors=True)
    config_path.write_text(yaml.safe_dump(document))
    seconds, memory = run_measured([str(BIN / "winnow"), "run", str(config_path), "--stage", "score"], ENV)
    stages = {
        name: json.loads((Path(document["run_dir"]) / "scores" / name / "_SUCCESS.json").read_text())["wall_seconds"]
        for name in ("compression", "embedding", "clusters")
    }
    return {
        "seconds": seconds,
        "peak_tree_pss": memory.peak_pss,
        "peak_driver_rss": memory.peak_root_rss,
        "stage_seconds": stages,
    }


def main(quick: bool = False) -> None:
    big = 100_000 if quick else 1_000_000
    # (Ray rows, baseline rows): Ray's rows/s includes its start, so it gets more rows
    embed_rows, loss_math_rows, loss_chat_rows = (
        ((1_000, 500), (5_000, 1_000), (1_000, 500))
        if quick
        else (
            (4_000, 2_000),
            (40_000, 3_000),
            (6_000, 1_500),
        )
    )
    print(f"scoring benchmark on {machine()}")
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        work = Path(tmp)
        results = {}
        results["compression"], big_config = compression(work, big)
        r = results["compression"]
        print(
            f"  compression, {r['rows']:,} rows: Ray Data {r['rows'] / r['ray_seconds']:,.0f} rows/s, bare zlib loop "
            f"{r['rows'] / r['bare_seconds']:,.0f} rows/s: x{r['ratio']:.2f} (target >= 1.6)"
        )
        results["embedding"] = r = embedding(work, *embed_rows)
        print(
            f"  embedding, best of 3 a side: Ray Data {r['ray_rows_per_s']:,.1f} rows/s ({r['rows']:,} rows), direct "
            f"encode {r['direct_rows_per_s']:,.1f} rows/s ({r['baseline_rows']:,} rows): x{r['ratio']:.2f} "
            "(target >= 0.9)"
        )
        for kind, math, sizes in (("math", True, loss_math_rows), ("chat", False, loss_chat_rows)):
            results[f"model_loss_{kind}"] = r = model_loss(work, *sizes, math)
            rows = "short math rows (the demo's)" if math else "~180-token chat rows"
            print(
                f"  model_loss, {rows}: Ray Data {r['ray_rows_per_s']:,.1f} rows/s ({r['rows']:,} rows), batch of one "
                f"{r['batch_of_one_rows_per_s']:,.1f} rows/s ({r['baseline_rows']:,} rows): x{r['ratio']:.2f} "
                f"(target >= 5), max |difference| {r['max_abs_difference']:.2e}"
            )
        results["peak_memory"] = r = peak_memory(work, big_config)
        print(
            f"  score stage on {big:,} rows (compression, embedding, clusters k=1000): peak memory "
            f"{gib(r['peak_tree_pss'])} (whole tree, PSS; target < 6 GiB), driver {gib(r['peak_driver_rss'])} "
            f"RSS; seconds {r['stage_seconds']}"
        )
    print(f"  results: {save('scoring', results)}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
