"""FSDP2 checkpoints round-trip: save the whole state from 2 sharded CPU processes (gloo), load
it into fresh processes, and the next step is the same. Full weights and a LoRA adapter.

Two plain torch processes, no Ray: the same modeling/checkpoints code the Ray Train loop runs
under FSDP (the 2-worker FSDP training itself is in test_train_variants.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipelines.models import small
from pipelines.train import checkpoints, masking, modeling, plan

TEXTS = ["What is 12 + 30? 12 + 30 = 42. The answer is 42."] * 30 + ["Name a prime above 10. 11 is prime."] * 30
ROWS = [
    [("user", "What is 12 + 30?"), ("assistant", "12 + 30 = 42.")],
    [("user", "Name a prime above 10."), ("assistant", "11 is prime.")],
    [("user", "And 7 * 6?"), ("assistant", "42, the answer.")],
    [("user", "What is 3 + 4?"), ("assistant", "3 + 4 = 7")],
]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"]}


def settings(lora) -> dict:
    return {
        "fsdp": True,
        "precision": "fp32",
        "lora": lora,
        "gradient_checkpointing": False,
        "lr": 1e-2,
        "weight_decay": 0.1,
        "warmup_ratio": 0.0,
    }


def step(model, optimizer, schedule, rank: int, base: str) -> float:
    """One optimizer step on this rank's two rows; returns the global mean token loss (before the update)."""
    tokenizer = masking.load_tokenizer(base)
    encoded = [masking.encode(tokenizer, turns, True, 64) for turns in ROWS[2 * rank : 2 * rank + 2]]
    shard = plan.Shard(["a", "b"], [torch.tensor(e.input_ids).numpy() for e in encoded], [])
    shard.labels = [torch.tensor(e.labels).numpy() for e in encoded]
    batch = plan.collate(shard, [[0], [1]], tokenizer.pad_token_id, packed=False)
    tokens = torch.tensor([float(batch.loss_tokens)])
    dist.all_reduce(tokens)
    logits = model(input_ids=torch.from_numpy(batch.input_ids)).logits
    loss = modeling.token_loss_sum(logits, torch.from_numpy(batch.labels))
    (loss * dist.get_world_size() / tokens.item()).backward()
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    total = torch.tensor([loss.item()])
    dist.all_reduce(total)
    return total.item() / tokens.item()


def worker(rank: int, store: str, base: str, folder: str, lora, results) -> None:
    # A file store, not rank 0's TCP store: no port to race other tests for, and no rank
    # aborting in destroy_process_group because the store's host exited first (a CI flake:
    # "terminate called without an active exception", SIGABRT in rank 1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    config, device = settings(lora), torch.device("cpu")
    torch.manual_seed(0)
    tokenizer, model = modeling.load(base, config, False, None)
    model = modeling.wrap(model.train(), config, device)
    optimizer, schedule = modeling.optimizer_and_schedule(model, config, 10)
    step(model, optimizer, schedule, rank, base)
    model_state, optimizer_state = modeling.full_states(model, optimizer, config, rank)
    if rank == 0:
        state = {"step": 1}
        checkpoints.write(
            folder, modeling.unwrap(model), tokenizer, model_state, optimizer_state, schedule.state_dict(), state
        )
    dist.barrier()
    continued = [step(model, optimizer, schedule, rank, base) for _ in range(2)]

    _, restored = modeling.load(base, config, False, folder)  # as a resumed worker does
    restored = modeling.wrap(restored.train(), config, device)
    restored_optimizer, restored_schedule = modeling.optimizer_and_schedule(restored, config, 10)
    saved = checkpoints.read_optimizer(folder)
    modeling.restore_optimizer(restored, restored_optimizer, saved["optimizer"])
    restored_schedule.load_state_dict(saved["scheduler"])
    resumed = [step(restored, restored_optimizer, restored_schedule, rank, base) for _ in range(2)]
    if rank == 0:
        results.put((continued, resumed, checkpoints.is_adapter(folder)))
    dist.barrier()  # both ranks done with the group before either tears it down
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    spec = small.SmallModelSpec(vocab_size=400, hidden_size=64, intermediate_size=128)
    return str(small.build(TEXTS, tmp_path_factory.mktemp("base"), spec))


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_a_sharded_checkpoint_resumes_the_same_training(base, tmp_path, lora):
    results = mp.get_context("spawn").Queue()
    mp.spawn(worker, args=(str(tmp_path / "store"), base, str(tmp_path / "checkpoint"), lora, results), nprocs=2)
    continued, resumed, adapter = results.get(timeout=5)
    # The second step's loss depends on the first's update, so on the restored optimizer state.
    assert resumed == pytest.approx(continued, abs=1e-6) and continued[1] != continued[0]
    assert adapter == (lora is not None)
    if lora is not None:  # what models/<ARM> gets: the base with the adapter merged in
        merged = checkpoints.merged(str(tmp_path / "checkpoint"), base, False)
        assert not any("lora" in name for name in merged.state_dict())
