"""Loss masks, packing and the loss normalisation, on a tiny Qwen2 built here (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipelines.models import small
from pipelines.train import loop, masking, modeling, plan

TURNS = [
    ("system", "Be brief."),
    ("user", "What is 12 + 30?"),
    ("assistant", "12 + 30 = 42."),
    ("user", "And 7 * 6?"),
    ("assistant", "7 * 6 = 42, the same."),
]
TEXTS = [" ".join(content for _, content in TURNS)] * 30 + ["The answer is 42. What is the sum of 3 and 4?"] * 30
LLAMA3 = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = small.build(TEXTS, tmp_path_factory.mktemp("tiny"), small.SmallModelSpec(vocab_size=400, hidden_size=64))
    tokenizer = masking.load_tokenizer(str(folder))
    model = modeling.load(str(folder), {"lora": None, "gradient_checkpointing": False}, False, None)[1]
    return tokenizer, model


def loss_pieces(tokenizer, encoded: masking.Encoded) -> list[str]:
    """The decoded runs of consecutive tokens that carry loss."""
    pieces, run = [], []
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        if label != masking.IGNORE:
            assert label == token
            run.append(token)
        elif run:
            pieces.append(tokenizer.decode(run))
            run = []
    return pieces + ([tokenizer.decode(run)] if run else [])


def test_chatml_every_assistant_turn_and_its_end_token_carry_loss(tiny):
    tokenizer, _ = tiny
    encoded = masking.encode(tokenizer, TURNS, chat=True, max_length=1000)
    assert loss_pieces(tokenizer, encoded) == ["12 + 30 = 42.<|im_end|>", "7 * 6 = 42, the same.<|im_end|>"]
    assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in TURNS], tokenize=False
    )
    assert not encoded.truncated and encoded.n_loss_tokens_cut == 0


def test_plain_template_appends_eos_to_each_answer(tiny):
    tokenizer, _ = tiny
    encoded = masking.encode(tokenizer, TURNS, chat=False, max_length=1000)
    assert tokenizer.decode(encoded.input_ids).startswith("System: Be brief.\n\nUser: What is 12 + 30?\n\nAssistant: ")
    assert loss_pieces(tokenizer, encoded) == ["12 + 30 = 42.<|im_end|>", "7 * 6 = 42, the same.<|im_end|>"]


def test_another_template_closes_turns_with_its_own_special_token(tiny, tmp_path):
    tokenizer, _ = tiny
    tokenizer.save_pretrained(tmp_path)
    other = masking.load_tokenizer.__wrapped__(str(tmp_path))
    other.add_special_tokens(
        {"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    )
    other.chat_template = LLAMA3
    encoded = masking.encode(other, TURNS, chat=True, max_length=1000)
    assert loss_pieces(other, encoded) == ["12 + 30 = 42.<|eot_id|>", "7 * 6 = 42, the same.<|eot_id|>"]


def test_truncation_is_counted(tiny):
    tokenizer, _ = tiny
    full = masking.encode(tokenizer, TURNS, chat=True, max_length=1000)
    cut_at = len(full.input_ids) - 3
    cut = masking.encode(tokenizer, TURNS, chat=True, max_length=cut_at)
    assert cut.truncated and len(cut.input_ids) == cut_at
    assert cut.n_loss_tokens + cut.n_loss_tokens_cut == full.n_loss_tokens
    assert cut.n_loss_tokens_cut == sum(1 for label in full.labels[cut_at:] if label != masking.IGNORE)
    prompt_only = masking.encode(tokenizer, TURNS, chat=True, max_length=8)
    assert prompt_only.n_loss_tokens == 0 and prompt_only.n_loss_tokens_cut == full.n_loss_tokens


def tokenized(tokenizer, conversations: list, max_length: int) -> pa.Table:
    batch = pa.table(
        {
            "id": [f"row-{i:03d}" for i in range(len(conversations))],
            "messages": [[{"role": r, "content": c} for r, c in turns] for turns in conversations],
        }
    )
    return masking.encode_batch(batch, tokenizer.name_or_path, False, "auto", max_length)


CONVERSATIONS = [
    TURNS,
    [("user", "What is 3 + 4?"), ("assistant", "3 + 4 = 7")],
    [("user", "Name the sum."), ("assistant", "The answer is 42.")],
    [("user", "What is the sum of 3 and 4? " * 3), ("assistant", "7")],
]


def test_shard_drops_rows_without_loss_tokens_and_counts_them(tiny):
    tokenizer, _ = tiny
    shard = plan.load_shard([tokenized(tokenizer, CONVERSATIONS, max_length=24)])
    assert shard.stats["examples"] == 4 and shard.stats["examples_without_loss"] >= 1
    assert shard.stats["examples_truncated"] >= 2 and shard.stats["loss_tokens_cut"] > 0
    assert shard.ids == sorted(shard.ids) and len(shard.ids) == 4 - shard.stats["examples_without_loss"]


def token_losses(model, batch: plan.Batch) -> float:
    with torch.no_grad():
        positions = None if batch.position_ids is None else torch.from_numpy(batch.position_ids)
        logits = model(input_ids=torch.from_numpy(batch.input_ids), position_ids=positions).logits
        return modeling.token_loss_sum(logits, torch.from_numpy(batch.labels)).item()


def test_packed_and_padded_batches_give_the_losses_of_separate_rows(tiny):
    tokenizer, model = tiny
    shard = plan.load_shard([tokenized(tokenizer, CONVERSATIONS, max_length=200)])
    alone = [plan.collate(shard, [[i]], tokenizer.pad_token_id, packed=False) for i in range(len(shard.ids))]
    separate = sum(token_losses(model, b) for b in alone)
    padded = plan.collate(shard, [[i] for i in range(len(shard.ids))], tokenizer.pad_token_id, packed=False)
    packed = plan.collate(shard, [[0, 1], [2, 3]], tokenizer.pad_token_id, packed=True)
    assert padded.loss_tokens == packed.loss_tokens == sum(b.loss_tokens for b in alone)
    assert token_losses(model, padded) == pytest.approx(separate, rel=1e-5)
    assert token_losses(model, packed) == pytest.approx(separate, rel=1e-5)
    leaky = plan.Batch(packed.input_ids, packed.labels, None, packed.tokens, packed.loss_tokens)
    assert abs(token_losses(model, leaky) - separate) > 1e-3  # without position ids, examples would see each other


def test_loss_is_the_mean_over_the_global_batch_whatever_the_micro_batches(tiny):
    """One step over 4 rows: micro-batches of 1 and of 4 give the same gradient."""
    tokenizer, model = tiny
    shard = plan.load_shard([tokenized(tokenizer, CONVERSATIONS, max_length=200)])
    settings = {"fsdp": False, "precision": "fp32"}
    rows = [[i] for i in range(len(shard.ids))]
    gradients = []
    for micro in (1, 4):
        batches = [plan.collate(shard, rows[i : i + micro], tokenizer.pad_token_id, False) for i in range(0, 4, micro)]
        model.zero_grad()
        total = sum(b.loss_tokens for b in batches)
        loss = loop.run_step(model, batches, total, 1, settings, torch.device("cpu"), tokenizer.pad_token_id)
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
        assert loss / total == pytest.approx(
            sum(token_losses(model, b) for b in batches) / total, rel=1e-5
        )  # the reported loss is the global token mean
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6)
    model.zero_grad()


def test_plan_visits_every_row_once_an_epoch_and_packs_within_the_cut_off():
    lengths = np.array([5, 9, 3, 7, 2, 8, 6, 4, 1, 10], dtype=np.int64)
    for packing in (False, True):
        sequences = plan.epoch_sequences(lengths, seed=3, epoch=1, rank=0, packing=packing, capacity=12)
        assert sorted(i for s in sequences for i in s) == list(range(10))
        assert all(lengths[s].sum() <= 12 for s in sequences)
        assert sequences == plan.epoch_sequences(lengths, seed=3, epoch=1, rank=0, packing=packing, capacity=12)
        steps = plan.steps_in(sequences, rows_per_step=3)
        seen = [
            s for step in range(steps) for micro in plan.micro_batches(sequences, step, 3, 2, lengths) for s in micro
        ]
        assert sorted(map(tuple, seen)) == sorted(map(tuple, sequences))
    assert plan.epoch_sequences(lengths, 3, 1, 0, False, 12) != plan.epoch_sequences(lengths, 3, 2, 0, False, 12)
    assert len(plan.epoch_sequences(lengths, 3, 1, 0, True, 12)) < 10
    assert plan.locate(0, [4, 4]) == (0, 0) and plan.locate(5, [4, 4]) == (1, 1)
