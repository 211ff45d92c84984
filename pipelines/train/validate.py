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

Which callables: a config names code that runs, so only functions of the project's own
modules (`pipelines.*`) are taken, plus those of modules the config lists explicitly in
`train.allow_validation_modules` (never the standard library: `pydoc:pipepager` would run a
shell command). `check_reference` checks the names when the config loads, without importing
anything; `import_callable` takes only a plain function defined in the module it is named from.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys

from pipelines import storage
from pipelines.train import checkpoints, masking, modeling, plan

PROJECT_PACKAGE = "pipelines"
MODULE_PATTERN = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
REFERENCE = re.compile(rf"({MODULE_PATTERN}):([A-Za-z_]\w*)", re.ASCII)  # fullmatch: "$" lets a "\n" through


def within(module: str, packages) -> bool:
    """Whether `module` is one of `packages` or inside one of them."""
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def check_allowed_module(module: str) -> None:
    """An entry of train.allow_validation_modules: a dotted module name outside the standard library."""
    if not re.fullmatch(MODULE_PATTERN, module):
        raise ValueError(f"{module!r} is not a dotted module name")
    if module.split(".", 1)[0] in sys.stdlib_module_names:
        raise ValueError(f"{module!r} is in Python's standard library, which holds no validation functions")


def check_reference(reference: str, allowed_modules=()) -> None:
    """Refuse a "module:function" outside `pipelines.*` and `allowed_modules` (names only, no import)."""
    match = REFERENCE.fullmatch(reference)
    if match is None:
        raise ValueError(f'{reference!r} is not "package.module:function"')
    if not within(match.group(1), (PROJECT_PACKAGE, *allowed_modules)):
        allowed = ", ".join([f"{PROJECT_PACKAGE}.*", *allowed_modules])
        raise ValueError(
            f"{reference!r} is outside the modules a validation function may come from ({allowed}); "
            "list its module in train.allow_validation_modules to allow it"
        )


def import_callable(path: str):
    """ "package.module:function" -> the function, which must be defined in that module (or below it)."""
    match = REFERENCE.fullmatch(path)
    if match is None:
        raise ValueError(f'validation {path!r} is not "package.module:function"')
    module, name = match.groups()
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"validation {path!r} cannot be imported: {error}") from None
    # a name a module merely imports (`from subprocess import run`) is not its validation function
    if not inspect.isfunction(function) or not within(function.__module__, (module,)):
        raise ValueError(f"validation {path!r} is not a function defined in {module}")
    return function


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
