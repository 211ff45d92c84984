"""The study's cost argument: the costly selectors against the cheap ones, same rows, same run.

One run folder of `mathematics` rows (the demo's kind of row) and its tiny Qwen2 model (the
demo's size). Scorers:
- compression (zlib level 9) and embedding (all-MiniLM-L6-v2): the cheap baselines;
- SelectIT: the tiny model, 5 rating prompts;
- LESS with its recipe: LoRA rank 128 / alpha 512 / dropout 0.1 on q/k/v/o, 4 epochs, lr
  2e-5, a projection to 8,192 dimensions (the warm-up on 25% of these rows instead of 5%, so
  its cost a row-epoch is measured over more rows).
Two measurements of each, on the same rows:
- the pipeline: each scorer through the score stage on Ray (started once beforehand), as a
  user runs it (SelectIT and LESS with two actors of 1 thread): wall seconds and rows/s, Ray
  Data's and the actors' start included (it dominates on a few hundred rows);
- the work: each scorer's own batch function in this process on one torch thread, after a
  first call that loads the model, over the rows again until 5 s have gone by: steady rows/s
  (wall) and CPU seconds a row. The cost per
  1M rows is extrapolated from these rows/s: hours on one thread, and on a 2-CPU machine like
  this one running two workers.
LESS adds its warm-up: its training steps' own seconds (from the checkpoint history, without
Ray Train's start or model loading) a row-epoch, times 5% of 1M rows x 4 epochs. Ratios: CPU
seconds a row against compression's and embedding's. The machine is shared: its load average
is recorded; wall times grow with the load, CPU seconds much less.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, save
from bench.scoring import make_run, timed_scorer

TINY = {"tiny": {"build": {"vocab_size": 4096, "train_rows": 20_000}}}
ACTORS = {"concurrency": 2, "num_cpus": 0.5, "threads": 1}
LESS_RECIPE = {
    "model": "tiny",
    # LESS's recipe, on 25% of these rows rather than 5% so the cost a row-epoch is measured over more rows
    "warmup": {"fraction": 0.25, "torch_threads": 1, "cpus_per_worker": 1},
    "targets": {"own": {"pool_source": "pool", "rows": 16}},
    "batch_size": 32,
    **ACTORS,
}


def scorers() -> dict:
    return {
        "compression": {},
        "embedding": {"batch_size": 64, "threads": 2, "max_seq_length": 128},
        "selectit": {"models": ["tiny"], "k": 5, "max_length": 512, "batch_size": 16, **ACTORS},
        "less": LESS_RECIPE,
    }


def pipeline(config_path: Path, name: str) -> dict:
    """Wall seconds of the scorer through the score stage (Ray already started, actors' start included)."""
    seconds, manifest = timed_scorer(config_path, name)
    rows = manifest["rows_scored"]
    return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "load_average": os.getloadavg()}


def work(config_path: Path, name: str, batch_rows: int = 32, min_seconds: float = 5.0) -> dict:
    """Steady rows/s and CPU seconds a row of the scorer's batch function here, one torch thread;
    passes over the rows repeat until `min_seconds` have gone by (compression needs several)."""
    import pyarrow.parquet as pq
    import torch

    from pipelines import config as config_module

    torch.set_num_threads(1)
    config = config_module.load(config_path)
    pool = pq.read_table(f"{config.run_dir}/pool", columns=["id", "messages"])
    function = batch_function(config, name)
    function(pool.slice(0, 2))  # loads what it loads once
    started, started_cpu, rows = time.perf_counter(), time.process_time(), 0
    while rows == 0 or time.perf_counter() - started < min_seconds:
        for start in range(0, pool.num_rows, batch_rows):
            function(pool.slice(start, batch_rows))
        rows += pool.num_rows
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    rows_per_s = rows / wall
    return {
        "rows": rows,
        "rows_per_s": rows_per_s,
        "cpu_seconds_a_row": cpu / rows,
        "hours_per_1m_rows_one_thread": 1e6 / rows_per_s / 3600,
        "hours_per_1m_rows_on_2_cpus": 1e6 / rows_per_s / 3600 / 2,  # two workers of one thread
        "load_average": os.getloadavg(),
    }


def batch_function(config, name: str):
    """The scorer's per-batch work, built with the settings its score-stage builder passes."""
    from pipelines.models import less_checkpoints
    from pipelines.models.loading import default_embedding_model
    from pipelines.score import compression, embedding, less, less_targets, selectit
    from pipelines.score.selectit_model import SelectitActor

    settings = getattr(config.score, name)
    placement = {"device": "cpu", "num_gpus": 0, "num_cpus": 1, "threads": 1, "sample_fraction": 1.0, "sample_seed": 0}
    if name == "compression":
        return lambda batch: compression.score_batch(batch, settings.level, settings.text)
    if name == "embedding":
        location = default_embedding_model()
        return embedding.EmbeddingActor(location, settings.text, settings.batch_size, 128, "cpu", placement)
    tiny = f"{config.run_dir}/models/tiny"
    if name == "selectit":
        keys = ("answer_prefix", "template", "max_length", "batch_size", "max_batch_tokens", "dtype")
        actor = {**placement, **{k: getattr(settings, k) for k in keys}, "prompts": selectit.load_prompts(None, 5)}
        return SelectitActor(tiny, False, 0, actor)
    warm = less_checkpoints.read(config, settings)  # make_run's models stage built it
    model = {
        "base": tiny,
        "trust_remote_code": False,
        "checkpoints": less_checkpoints.checkpoint_dirs(config.run_dir, warm),
    }
    model["lrs"] = [c["lr"] for c in warm["checkpoints"]]
    keys = ("dim", "seed", "max_length", "template", "batch_size", "rows_per_chunk", "cache_mb")
    actor = {**placement, **{k: getattr(settings, k) for k in keys}}
    targets = {n: less_targets.read(n, t, config.run_dir) for n, t in settings.targets.items()}
    return less.LessActor(model, less.target_means(model, targets, actor)["means"], actor)


def warmup_cost(run_dir: str) -> dict:
    """Seconds a row-epoch of the warm-up's training steps, extrapolated to 5% of 1M rows x epochs."""
    from pipelines import runs
    from pipelines.train import checkpoints

    manifest = runs.read_manifest(run_dir, "models/less_warmup")
    last = Path(run_dir, "models", "less_warmup", manifest["checkpoints"][-1]["name"])
    state = checkpoints.read_state(str(last))
    epochs, rows = manifest["settings"]["epochs"], manifest["rows_out"]
    step_seconds = sum(row["seconds"] for row in state["history"])  # one worker, one thread
    row_epochs_per_1m = 0.05 * 1e6 * epochs  # LESS's warm-up on 5% of 1M rows
    return {
        "rows": rows,
        "epochs": epochs,
        "wall_seconds": manifest["wall_seconds"],  # Ray Train's start and model loading included
        "cpu_seconds": state["cpu_seconds"],  # the worker's, model and data loading included
        "step_seconds": step_seconds,
        "step_seconds_a_row_epoch": step_seconds / (rows * epochs),
        "hours_per_1m": step_seconds / (rows * epochs) * row_epochs_per_1m / 3600,
    }


def parameters(location: str, causal: bool) -> int:
    """Parameters as SelectIT counts them for its model-level weights (tied embeddings once)."""
    from transformers import AutoModel, AutoModelForCausalLM

    model = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(location)
    return sum(p.numel() for p in model.parameters())


def main(quick: bool = False) -> None:
    from pipelines import config as config_module
    from pipelines.config import RayConfig
    from pipelines.models.loading import default_embedding_model
    from pipelines.ray_runtime import ensure_ray

    rows = 64 if quick else 256
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        config = make_run(Path(tmp), "costly", rows, scorers(), TINY, math=True)
        run_dir = config_module.load(config).run_dir
        sizes = {
            "tiny": parameters(f"{run_dir}/models/tiny", True),
            "minilm": parameters(default_embedding_model(), False),
        }
        print(
            f"costly scorers benchmark on {machine()}, {rows:,} mathematics rows; SelectIT and LESS on the demo's tiny "
            f"Qwen2 ({sizes['tiny'] / 1e6:.2f}M parameters), embedding with all-MiniLM-L6-v2 "
            f"({sizes['minilm'] / 1e6:.1f}M)"
        )
        ensure_ray(RayConfig())
        results = {name: {"pipeline": pipeline(config, name)} for name in scorers()}
        for name in scorers():
            results[name]["work"] = work(config, name)
        results["less"]["warmup"] = warm = warmup_cost(run_dir)
    results["parameters"] = sizes
    for name in scorers():
        p, w = results[name]["pipeline"], results[name]["work"]
        print(
            f"  {name:<11} pipeline {p['rows_per_s']:>6,.1f} rows/s ({p['seconds']:.0f} s with its start, load "
            f"{p['load_average'][0]:.1f}); steady, one thread: {w['rows_per_s']:>8,.1f} rows/s, "
            f"{w['cpu_seconds_a_row'] * 1e3:.3g} CPU ms a row; per 1M rows {w['hours_per_1m_rows_one_thread']:,.3g} h "
            f"on one thread, {w['hours_per_1m_rows_on_2_cpus']:,.3g} h on 2 CPUs"
        )
    less_hours = results["less"]["work"]["hours_per_1m_rows_one_thread"] + warm["hours_per_1m"]
    print(
        f"  less warm-up: {warm['rows']} rows x {warm['epochs']} epochs, {warm['step_seconds']:.1f} s of steps "
        f"({warm['wall_seconds']:.0f} s with Ray Train's start); on 5% of 1M rows x {warm['epochs']} epochs: "
        f"{warm['hours_per_1m']:,.2f} h on one thread; LESS per 1M rows with it: {less_hours:,.1f} h on one thread "
        f"({less_hours / 2:,.1f} h on 2 CPUs)"
    )
    for baseline in ("compression", "embedding"):
        base = results[baseline]["work"]["cpu_seconds_a_row"]
        ratios = ", ".join(f"{n} x{results[n]['work']['cpu_seconds_a_row'] / base:,.1f}" for n in ("selectit", "less"))
        print(f"  CPU seconds a row against {baseline}: {ratios}")
    print(f"  results: {save('costly', results)}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
