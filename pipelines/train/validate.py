"""Checkpoint validation: functions Ray Train runs on each reported checkpoint, in a task.

Contract (Ray Train's ValidationConfig): `fn(checkpoint: ray.train.Checkpoint, **kwargs)
-> dict[str, float]`. The metrics it returns join the checkpoint's metrics, and
`select_checkpoint.metric` picks the checkpoint that becomes models/<ARM>. A function opens
the checkpoint as a loadable HF folder with `checkpoints.model_folder(checkpoint, base)`
(LoRA adapters are merged into the base there).

`held_out_loss` is the built-in one: the mean NLL over the loss tokens of the rows held out
of training (`validation_rows`), masked exactly as training masks them. The evaluator's
accuracy on a benchmark (MATH-500 for the CFT recipe) plugs in the same way, as
`select_checkpoint: {validation: "pipelines.evaluate.<module>:<function>", metric: ..., mode: max}`.
"""

from __future__ import annotations

import importlib

from pipelines import storage
from pipelines.train import checkpoints, masking, modeling, plan


def import_callable(path: str):
    """ "package.module:function" -> the function."""
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"validation {path!r} cannot be imported: {error}") from None


def held_out_loss(
    checkpoint,
    rows: str,
    base: str,
    trust_remote_code: bool = False,
    template: str = "auto",
    max_length: int = 2048,
    micro_batch: int = 8,
    threads: int | None = None,
) -> dict:
    import pyarrow.parquet as pq
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    with storage.open_random_access(rows) as handle:
        table = pq.read_table(handle)
    with checkpoints.model_folder(checkpoint, base, trust_remote_code) as folder:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32", trust_remote_code=trust_remote_code)
        shard = plan.load_shard([masking.encode_batch(table, folder, trust_remote_code, template, max_length)])
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(shard.ids)), key=lambda i: len(shard.input_ids[i]))
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(order), micro_batch):
            batch = plan.collate(shard, [[i] for i in order[start : start + micro_batch]], pad_id, packed=False)
            logits = model(input_ids=torch.from_numpy(batch.input_ids)).logits
            total += modeling.token_loss_sum(logits, torch.from_numpy(batch.labels)).item()
            count += batch.loss_tokens
    return {"val_loss": total / max(count, 1), "val_loss_tokens": count}
