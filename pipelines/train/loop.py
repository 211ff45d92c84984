"""`train_loop_per_worker`: the same code on 2 CPU workers (gloo) and on many GPUs (NCCL).

Each step's loss is the mean NLL over every loss token of the global batch, whatever the
micro-batch size, accumulation or number of workers: a worker sums token losses, divides by
the global count of loss tokens of the step (one all-reduce) and multiplies by the world size,
because DDP and FSDP average gradients over workers. (Averaging per micro-batch means, as
some trainers did, weights short examples more when accumulation is on.)

Resuming: `ray.train.get_checkpoint()` gives the latest checkpoint after a worker failure (or
a new run on the same storage); the weights, optimizer, schedule and metrics history come back
from it and the deterministic plan (pipelines/train/plan.py) continues at its step. Dropout
is seeded by (seed, step, rank), so a resumed step computes what the lost one would have.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from contextlib import nullcontext

from pipelines import storage
from pipelines.train import checkpoints, modeling, plan


def train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch

    settings = config["settings"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(settings["torch_threads"] or max(1, int(settings["cpus_per_worker"])))
    attempt_started, attempt_cpu = time.time(), time.process_time()

    dataset = ray.train.get_dataset_shard(f"shard-{rank}")
    shard = plan.load_shard(dataset.iter_batches(batch_format="pyarrow", batch_size=1024))
    totals = _all_reduce([shard.stats[k] for k in plan.STAT_KEYS], device)
    data_stats = {key: int(value) for key, value in zip(plan.STAT_KEYS, totals, strict=True)}
    lengths, rows_per_step = shard.lengths, settings["global_batch"] // world
    sequences, steps_per_epoch, total = _plan(lengths, settings, rank, rows_per_step, device)
    tokenizer, model, optimizer, schedule, state = _model_and_state(config, device, total)
    start = state["step"]
    _announce(config["workers_dir"], rank, start)
    progress = config.get("progress") if rank == 0 else None  # the driver's step counter
    if progress is not None:
        progress.start.remote(start, total)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0

    for step in range(start, total):
        started = time.perf_counter()
        epoch, within = plan.locate(step, steps_per_epoch)
        rows = plan.micro_batches(sequences[epoch], within, rows_per_step, settings["micro_batch"], lengths)
        batches = [plan.collate(shard, micro, pad_id, settings["packing"]) for micro in rows]
        (global_loss_tokens,) = _all_reduce([sum(b.loss_tokens for b in batches)], device)
        lr = schedule.get_last_lr()[0]
        torch.manual_seed(settings["seed"] * 1_000_003 + step * 1_009 + rank)
        loss_sum = run_step(model, batches, global_loss_tokens, world, settings, device, pad_id)
        if settings["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_total, tokens = _all_reduce([loss_sum, sum(b.tokens for b in batches)], device)
        if progress is not None:
            progress.add.remote(1)
        state["history"].append(
            {
                "step": step + 1,
                "epoch": epoch,
                "loss": loss_total / max(global_loss_tokens, 1),
                "lr": lr,
                "tokens": int(tokens),
                "loss_tokens": int(global_loss_tokens),
                "seconds": time.perf_counter() - started,
                "start_step": start,
            }
        )
        if (step + 1) % settings["checkpoint_every_steps"] == 0 or step + 1 == total:
            cpu, wall = _all_reduce([time.process_time() - attempt_cpu], device)[0], time.time() - attempt_started
            accounting = {
                "cpu_seconds": state["cpu_seconds"] + cpu,
                "gpu_seconds": state["gpu_seconds"] + (wall * world if device.type == "cuda" else 0.0),
            }
            state = {**state, **accounting, "step": step + 1, "total_steps": total, "data": data_stats}
            save_and_report(model, tokenizer, optimizer, schedule, state, settings, config, rank)
            attempt_started, attempt_cpu = time.time(), time.process_time()


def _plan(lengths, settings: dict, rank: int, rows_per_step: int, device):
    """Every epoch's sequences for this worker, the steps of each epoch (the largest shard's,
    agreed by all workers) and the steps to run."""
    sequences = [
        plan.epoch_sequences(lengths, settings["seed"], e, rank, settings["packing"], settings["max_length"])
        for e in range(settings["epochs"])
    ]
    steps_per_epoch = [int(n) for n in _all_reduce([plan.steps_in(s, rows_per_step) for s in sequences], device, "max")]
    return sequences, steps_per_epoch, min(sum(steps_per_epoch), settings["max_steps"] or sum(steps_per_epoch))


def _model_and_state(config: dict, device, total: int):
    """Tokenizer, wrapped model, optimizer, schedule and training state: fresh from the base
    model, or restored from the latest checkpoint when Ray Train gives one."""
    import ray.train

    settings = config["settings"]
    checkpoint = ray.train.get_checkpoint()
    with checkpoint.as_directory() if checkpoint else nullcontext() as checkpoint_dir:
        base = checkpoints.local_copy(config["model"])
        tokenizer, model = modeling.load(base, settings, config["trust_remote_code"], checkpoint_dir)
        model = modeling.wrap(model.train(), settings, device)
        optimizer, schedule = modeling.optimizer_and_schedule(model, settings, total)
        state = {"step": 0, "history": [], "cpu_seconds": 0.0, "gpu_seconds": 0.0}
        if checkpoint_dir:
            state = checkpoints.read_state(checkpoint_dir)
            saved = checkpoints.read_optimizer(checkpoint_dir)
            modeling.restore_optimizer(model, optimizer, saved["optimizer"])
            schedule.load_state_dict(saved["scheduler"])
    return tokenizer, model, optimizer, schedule, state


def run_step(model, batches, global_loss_tokens: int, world: int, settings: dict, device, pad_id: int) -> float:
    """Forward and backward over this worker's micro-batches; returns the summed token loss.

    Gradients sync once, on the last micro-batch (DDP `no_sync` before it). A worker with no
    rows in this step still runs one forward/backward with zero loss: the gradient all-reduce
    needs every worker."""
    import torch

    scale = world / max(global_loss_tokens, 1)
    total = 0.0
    for index, batch in enumerate(batches or [None]):
        last = index == max(len(batches), 1) - 1
        sync = nullcontext_if(last or not hasattr(model, "no_sync"), model)
        with sync, modeling.autocast(settings, device):
            if batch is None:
                dummy = torch.full((1, 1), pad_id, dtype=torch.long, device=device)
                (model(input_ids=dummy).logits.sum() * 0.0).backward()
                continue
            input_ids = torch.from_numpy(batch.input_ids).to(device)
            labels = torch.from_numpy(batch.labels).to(device)
            positions = None if batch.position_ids is None else torch.from_numpy(batch.position_ids).to(device)
            loss = modeling.token_loss_sum(model(input_ids=input_ids, position_ids=positions).logits, labels)
            (loss * scale).backward()
            total += loss.item()
    return total


def nullcontext_if(condition: bool, model):
    return nullcontext() if condition else model.no_sync()


def save_and_report(model, tokenizer, optimizer, schedule, state: dict, settings: dict, config: dict, rank: int):
    """Every worker takes part (FSDP gathers shards); rank 0 writes the folder and reports it."""
    import ray.train

    model_state, optimizer_state = modeling.full_states(model, optimizer, settings, rank)
    recent = state["history"][-settings["checkpoint_every_steps"] :]
    metrics = {"step": state["step"], "train_loss": sum(r["loss"] for r in recent) / len(recent)}
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory(prefix="winnow-checkpoint-") as folder:
        checkpoints.write(
            folder, modeling.unwrap(model), tokenizer, model_state, optimizer_state, schedule.state_dict(), state
        )
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_dir_name=f"step-{state['step']:07d}",
            **({"validation": True} if config["validate"] else {}),
        )


def _all_reduce(values: list, device, op: str = "sum") -> list[float]:
    """Sum (or max) numbers over every worker, in float64."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()


def _announce(workers_dir: str, rank: int, start_step: int) -> None:
    """workers/rank-<r>.json: the process that runs rank r and the step it started from."""
    document = {"pid": os.getpid(), "host": socket.gethostname(), "start_step": start_step, "time": time.time()}
    storage.write_json_atomic(document, storage.join(workers_dir, f"rank-{rank}.json"))
