"""Training throughput: the Ray Train loop against a plain single-process loop, packing or not.

Data: generated chat rows whose lengths vary as real ones do (a question of 5-60 words, an
answer of 5-200), as JSON Lines; model: the demo's tiny Qwen2 (vocab 4096, hidden 128, 2
layers) built from those rows. The loops run the same steps on the same data and model:
- plain (the baseline): one process, one torch thread, the same tokenization, plan,
  micro-batches, AdamW and loss, no Ray, no process group; run before and after the Ray
  runs, the faster of the two kept (the machine is shared);
- Ray Train, 1 worker x 1 thread: the train stage (TorchTrainer, data read and tokenized by
  Ray Data, checkpoints): the loop's overhead against the same compute;
- Ray Train, 2 workers x 1 thread (DDP over gloo): the scaling;
each with and without packing. Tokens are real (non-padding) tokens; tokens/s is the median
over steps of a step's tokens / seconds (robust to other processes' bursts), per-step
timings taken by each loop itself. End-to-end seconds (Ray Train's start, data,
checkpoints, export) are printed beside them.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, save

WORDS = np.array(["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be", "by"])


def write_rows(path: Path, rows: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    texts = []
    with path.open("w") as handle:
        for index in range(rows):
            question = " ".join(WORDS[rng.integers(0, len(WORDS), rng.integers(5, 60))])
            answer = " ".join(WORDS[rng.integers(0, len(WORDS), rng.integers(5, 200))])
            messages = [{"role": "user", "content": f"{index}: {question}?"}, {"role": "assistant", "content": answer}]
            handle.write(json.dumps({"messages": messages}) + "\n")
            texts += [question, answer]
    return texts


def arm(work: Path, packing: bool, steps: int, workers: int = 2) -> dict:
    return {
        "model": str(work / "tiny"),
        "data": str(work / "rows.jsonl"),
        "lr": 1e-4,
        "epochs": 1,
        "global_batch": 16,
        "micro_batch": 4,
        "max_length": 512,
        "packing": packing,
        "num_workers": workers,
        "cpus_per_worker": 1,
        "torch_threads": 1,
        "max_steps": steps,
        "checkpoint_every_steps": steps,
    }


def ray_train(work: Path, name: str, settings: dict) -> dict:
    import pyarrow.parquet as pq

    from pipelines.config import ExperimentConfig, RayConfig
    from pipelines.train import stage
    from pipelines.train.settings import TrainConfig

    config = ExperimentConfig(
        name="bench",
        run_dir=str(work / "run"),
        ray=RayConfig(num_cpus=2),
        ingest={"sources": [{"kind": "mathematics", "rows": 1}]},  # unused: the arm reads a file
    )
    started = time.perf_counter()
    manifest = stage.run(config, TrainConfig(arms={name: settings}))[f"models/{name}"]
    rows = pq.read_table(work / "run" / "train_metrics" / name).to_pylist()
    return _rates(rows, time.perf_counter() - started) | {"steps": manifest["steps"]}


def plain_loop(work: Path, settings: dict) -> dict:
    """The same steps in one process: what Ray Train's machinery is measured against."""
    import pyarrow as pa
    import torch

    from pipelines.train import masking, modeling, plan

    torch.set_num_threads(1)
    started = time.perf_counter()
    lines = [json.loads(line) for line in (work / "rows.jsonl").read_text().splitlines()]
    batch = pa.table({"id": [f"{i:06d}" for i in range(len(lines))], "messages": [r["messages"] for r in lines]})
    shard = plan.load_shard([masking.encode_batch(batch, settings["model"], False, "auto", settings["max_length"])])
    tokenizer, model = modeling.load(settings["model"], {"lora": None, "gradient_checkpointing": False}, False, None)
    model.train()
    lengths = shard.lengths
    sequences = plan.epoch_sequences(lengths, 0, 0, 0, settings["packing"], settings["max_length"])
    steps = min(plan.steps_in(sequences, settings["global_batch"]), settings["max_steps"])
    optimizer, schedule = modeling.optimizer_and_schedule(
        model, {"lr": settings["lr"], "weight_decay": 0.0, "warmup_ratio": 0.0}, steps
    )
    rows = []
    for step in range(steps):
        began = time.perf_counter()
        micro = plan.micro_batches(sequences, step, settings["global_batch"], settings["micro_batch"], lengths)
        batches = [plan.collate(shard, m, tokenizer.pad_token_id, settings["packing"]) for m in micro]
        total = sum(b.loss_tokens for b in batches)
        for b in batches:
            positions = None if b.position_ids is None else torch.from_numpy(b.position_ids)
            logits = model(input_ids=torch.from_numpy(b.input_ids), position_ids=positions).logits
            (modeling.token_loss_sum(logits, torch.from_numpy(b.labels)) / total).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        rows.append({"tokens": sum(b.tokens for b in batches), "seconds": time.perf_counter() - began})
    return _rates(rows, time.perf_counter() - started) | {"steps": steps}


def _rates(rows: list[dict], wall: float) -> dict:
    return {
        "tokens_per_second": float(np.median([r["tokens"] / r["seconds"] for r in rows])),
        "tokens": sum(r["tokens"] for r in rows),
        "end_to_end_seconds": wall,
    }


def main(quick: bool = False) -> None:
    from pipelines.models import small

    rows, steps = (600, 8) if quick else (4000, 30)
    print(f"training benchmark on {machine()}")
    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        work = Path(tmp)
        texts = write_rows(work / "rows.jsonl", rows)
        small.build(texts, work / "tiny", small.SmallModelSpec(vocab_size=4096))
        results = {}
        for packing in (False, True):
            key = "packed" if packing else "unpacked"
            first = plain_loop(work, arm(work, packing, steps))
            for workers in (1, 2):
                settings = arm(work, packing, steps, workers)
                results[f"ray_{workers}_{key}"] = ray_train(work, f"{key}-{workers}", settings)
            again = plain_loop(work, arm(work, packing, steps))
            plain = results[f"plain_{key}"] = max(first, again, key=lambda r: r["tokens_per_second"])
            for workers in (1, 2):
                ray = results[f"ray_{workers}_{key}"]
                ratio = results[f"ratio_{workers}_{key}"] = ray["tokens_per_second"] / plain["tokens_per_second"]
                print(
                    f"  {key}, {ray['steps']} steps of 16 sequences: Ray Train {workers} worker(s) x 1 thread "
                    f"{ray['tokens_per_second']:,.0f} tokens/s vs plain loop (1 process, 1 thread) "
                    f"{plain['tokens_per_second']:,.0f} tokens/s: x{ratio:.2f}; end to end "
                    f"{ray['end_to_end_seconds']:.0f} s vs {plain['end_to_end_seconds']:.0f} s"
                )
        for loop in ("plain", "ray_1", "ray_2"):
            packed, unpacked = results[f"{loop}_packed"], results[f"{loop}_unpacked"]
            ratio = results[f"packing_{loop}"] = packed["tokens_per_second"] / unpacked["tokens_per_second"]
            print(f"  packing vs not, {loop.replace('_', ' ')}: x{ratio:.2f} tokens/s")
    print(f"  results: {save('training', results)}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
