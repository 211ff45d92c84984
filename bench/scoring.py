"""Scoring throughput against plain baselines, and peak memory at 1M rows.

- compression: the Ray Data scorer on a 1M-row pool vs a bare single-process zlib loop over
  the same, already rendered texts (Ray already started; reading, rendering and writing
  included on the Ray side only), Ray's first run and a second, warm one; two bare loops
  side by side show what two cores give at best;
- embedding: the Ray Data scorer (one actor, 2 torch threads) vs `SentenceTransformer.encode`
  in a fresh process on the same texts and batch size, all-MiniLM-L6-v2 (actor start
  included), the two sides alternating round by round;
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
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from bench import baselines
from bench.common import gib, parts_from_argv, run_measured, run_parts
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


def timed_scorer(config_path: Path, name: str, afresh: bool = False) -> tuple[float, dict]:
    """Seconds and manifest of one scorer run in this process (Ray started beforehand);
    `afresh` first removes every score and unfinished work, so nothing is skipped."""
    from pipelines import config as config_module
    from pipelines.ray_runtime import ensure_ray
    from pipelines.score import runner
    from pipelines.score.stage import BUILDERS

    config = config_module.load(config_path)
    if afresh:
        for folder in ("scores", "_work"):
            shutil.rmtree(Path(config.run_dir) / folder, ignore_errors=True)
    ensure_ray(config.ray)
    scorer = BUILDERS[name](config, getattr(config.score, name))
    started = time.perf_counter()
    manifest = runner.run(config.run_dir, scorer)
    return time.perf_counter() - started, manifest


def compression(work: Path, rows: int) -> tuple[dict, Path]:
    """Ray's first run pays Ray Data's own start (its stats and autoscaling actors, the
    workers' imports); the second, on the same warm Ray, is the steady rate. Two bare loops
    side by side, in two processes, give what two cores can do at best on this machine."""
    import multiprocessing

    config = make_run(work, "big", rows, {"compression": {}})
    texts = [t.encode() for t in pool_texts(config)]
    started = time.perf_counter()
    baselines.compress_all(texts)
    bare = time.perf_counter() - started
    started = time.perf_counter()
    fork = multiprocessing.get_context("fork")
    loops = [fork.Process(target=baselines.compress_all, args=(texts[i::2],)) for i in range(2)]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join()
    two_loops = time.perf_counter() - started
    ray_seconds = []
    for _ in range(2):
        seconds, manifest = timed_scorer(config, "compression", afresh=True)
        assert manifest["rows_out"] == len(texts)
        ray_seconds.append(seconds)
    out = {"rows": len(texts), "bare_seconds": bare, "two_bare_loops_seconds": two_loops}
    out |= {"ray_seconds_first": ray_seconds[0], "ray_seconds": ray_seconds[1], "ratio": bare / ray_seconds[1]}
    return out, config


def embedding(work: Path, rows: int, baseline_rows: int, batch_size: int = 64, rounds: int = 3) -> dict:
    """Ray Data on `rows` rows (its actor's start included); direct encode on the first
    `baseline_rows` of the same texts (rows/s is compared, so the baseline can be shorter).
    The sides alternate, round by round, so the VM's drift (the same encode moved by a third
    between runs) meets both; best of `rounds` a side. Ray is shut down after each of its
    runs, so the direct encode never shares the machine with Ray's idle processes."""
    import multiprocessing

    import ray

    max_seq_length = 128
    score = {"embedding": {"batch_size": batch_size, "threads": 2, "max_seq_length": max_seq_length}}
    config = make_run(work, "embed", rows, score)
    texts = pool_texts(config)[:baseline_rows]
    direct, ray_seconds = [], []
    for _ in range(rounds):
        with multiprocessing.get_context("spawn").Pool(1) as fresh:
            direct.append(fresh.apply(baselines.direct_encode, (texts, batch_size, max_seq_length)))
        seconds, manifest = timed_scorer(config, "embedding", afresh=True)
        ray_seconds.append(seconds)
        ray.shutdown()
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
    reference_seconds, reference = baselines.batch_of_one(config_dir(config), baseline_rows)
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


def report_compression(context: dict) -> dict:
    big = 100_000 if context["quick"] else 1_000_000
    r, context["big_config"] = compression(context["work"], big)
    print(
        f"  compression, {r['rows']:,} rows: Ray Data {r['rows'] / r['ray_seconds']:,.0f} rows/s (first run "
        f"{r['rows'] / r['ray_seconds_first']:,.0f}), bare zlib loop {r['rows'] / r['bare_seconds']:,.0f} rows/s: "
        f"x{r['ratio']:.2f} (target >= 1.6; first run x{r['bare_seconds'] / r['ray_seconds_first']:.2f}; two bare "
        f"loops side by side x{r['bare_seconds'] / r['two_bare_loops_seconds']:.2f})"
    )
    return r


def report_embedding(context: dict) -> dict:
    # (Ray rows, baseline rows): Ray's rows/s includes its start, so it gets more rows
    r = embedding(context["work"], *((1_000, 500) if context["quick"] else (8_000, 2_000)))
    print(
        f"  embedding, best of 3 a side, alternating: Ray Data {r['ray_rows_per_s']:,.1f} rows/s ({r['rows']:,} "
        f"rows), direct encode {r['direct_rows_per_s']:,.1f} rows/s ({r['baseline_rows']:,} rows): x{r['ratio']:.2f} "
        "(target >= 0.9)"
    )
    return r


def report_model_loss(context: dict) -> dict:
    sizes = (
        {"math": (5_000, 1_000), "chat": (1_000, 500)}
        if context["quick"]
        else {"math": (40_000, 3_000), "chat": (6_000, 1_500)}
    )
    out = {}
    for kind, math in (("math", True), ("chat", False)):
        out[kind] = r = model_loss(context["work"], *sizes[kind], math)
        rows = "short math rows (the demo's)" if math else "~180-token chat rows"
        print(
            f"  model_loss, {rows}: Ray Data {r['ray_rows_per_s']:,.1f} rows/s ({r['rows']:,} rows), batch of one "
            f"{r['batch_of_one_rows_per_s']:,.1f} rows/s ({r['baseline_rows']:,} rows): x{r['ratio']:.2f} "
            f"(target >= 5), max |difference| {r['max_abs_difference']:.2e}"
        )
    return out


def report_memory(context: dict) -> dict:
    big = 100_000 if context["quick"] else 1_000_000
    if "big_config" not in context:
        context["big_config"] = make_run(context["work"], "big", big, {"compression": {}})
    r = peak_memory(context["work"], context["big_config"])
    print(
        f"  score stage on {big:,} rows (compression, embedding, clusters k=1000): peak memory "
        f"{gib(r['peak_tree_pss'])} (whole tree, PSS; target < 6 GiB), driver {gib(r['peak_driver_rss'])} "
        f"RSS; seconds {r['stage_seconds']}"
    )
    return r


PARTS = {
    "compression": report_compression,
    "embedding": report_embedding,
    "model_loss": report_model_loss,
    "memory": report_memory,
}


def main(quick: bool = False, parts: tuple[str, ...] = tuple(PARTS)) -> None:
    """All parts by default; `python -m bench.scoring embedding` runs one."""
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        run_parts("scoring", PARTS, parts, {"work": Path(tmp), "quick": quick})


if __name__ == "__main__":
    main(quick="--quick" in sys.argv, parts=parts_from_argv(PARTS, sys.argv[1:]))
