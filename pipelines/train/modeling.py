"""The model side of a training worker: load, LoRA, DDP or FSDP, optimizer and schedule.

- Any HF causal LM by path (`trust_remote_code` only when the config turns it on).
- Precision: fp32 on CPU; bf16 on GPU (weights and optimizer state stay fp32: autocast under
  DDP, a bf16 compute / fp32 reduce policy under FSDP).
- Several workers: DDP through Ray Train's `prepare_model`; with `fsdp`, FSDP2
  (`torch.distributed.fsdp.fully_shard`) on every decoder layer and then the whole model, so
  parameters, gradients and optimizer state are sharded across workers.
- AdamW without weight decay on biases and norm weights (as the HF Trainer does), and a cosine
  schedule after a linear warm-up of ceil(warmup_ratio x steps) steps.
"""

from __future__ import annotations

import math
from contextlib import nullcontext


def load(location: str, settings: dict, trust_remote_code: bool, checkpoint_dir: str | None):
    """(tokenizer, model) from the base model or, when resuming, from the checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    from pipelines.train import checkpoints

    logging.disable_progress_bar()
    lora = settings["lora"]
    weights = checkpoint_dir if checkpoint_dir and not lora else location
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype="float32", trust_remote_code=trust_remote_code)
    model.config.use_cache = False
    if settings["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora:
        adapter = checkpoint_dir if checkpoint_dir and checkpoints.is_adapter(checkpoint_dir) else None
        model = _with_lora(model, lora, adapter)
    return tokenizer, model


def _with_lora(model, lora: dict, adapter_dir: str | None):
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_dir is not None:
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)
    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=lora["targets"],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def uses_bf16(settings: dict, device) -> bool:
    return settings["precision"] == "bf16" or (settings["precision"] == "auto" and device.type == "cuda")


def wrap(model, settings: dict, device):
    """Move to the device and make it data parallel: DDP, or FSDP2 with `fsdp`."""
    if not settings["fsdp"]:
        import ray.train.torch

        return ray.train.torch.prepare_model(model, parallel_strategy="ddp")
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = model.to(device)
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if uses_bf16(settings, device)
        else MixedPrecisionPolicy()
    )
    layer_classes = set(getattr(unwrap(model), "_no_split_modules", None) or [])
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def unwrap(model):
    """The HF (or peft) model inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return getattr(model, "module", model)


def autocast(settings: dict, device):
    import torch

    if settings["fsdp"] or not uses_bf16(settings, device):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def token_loss_sum(logits, labels):
    """Summed NLL of every labelled token; logits at t predict token t + 1."""
    import torch.nn.functional as F

    from pipelines.train.masking import IGNORE

    predicted, targets = logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten()
    return F.cross_entropy(predicted, targets, ignore_index=IGNORE, reduction="sum")


def optimizer_and_schedule(model, settings: dict, total_steps: int):
    import torch
    from transformers import get_cosine_schedule_with_warmup

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": settings["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings["lr"], betas=(0.9, 0.999), eps=1e-8)
    warmup_steps = math.ceil(settings["warmup_ratio"] * total_steps)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def full_states(model, optimizer, settings: dict, rank: int):
    """(model state or None, optimizer state or None), whole, on CPU, for rank 0 to write.

    Under FSDP every rank takes part (the shards are gathered); under DDP the states are
    whole on every rank already, so only rank 0 reads them, and save_pretrained reads the
    module's own weights (None)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    if not settings["fsdp"] and rank != 0:
        return None, None
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options) if settings["fsdp"] else None
    return model_state, get_optimizer_state_dict(model, optimizer, options=options)


def restore_optimizer(model, optimizer, optimizer_state: dict) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, optimizer, optim_state_dict=optimizer_state, options=options)
