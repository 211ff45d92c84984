"""What each worker trains on at each step: a deterministic plan over its fixed shard.

A worker holds its shard (tokenized examples, sorted by id). Epoch e visits the shard in a
permutation seeded by (seed, e, rank); with packing, examples are packed first-fit in that
order into sequences of at most max_length tokens (several examples a sequence). Each
optimizer step takes the next global_batch / world sequences of every worker, split into
micro-batches (sorted by length, so padding stays small). Every worker runs the same number
of steps an epoch (the largest shard's); a worker whose shard runs out early contributes no
rows to the last step, which the loss normalisation accounts for.

Everything here is a function of (shard, seed, epoch, rank), so a worker that restarts from a
checkpoint at step k rebuilds the same plan and starts at step k: nothing is trained twice
and nothing is skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipelines.train.masking import IGNORE


@dataclass
class Shard:
    ids: list[str] = field(default_factory=list)
    input_ids: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.input_ids], dtype=np.int64)


STAT_KEYS = ("examples", "examples_truncated", "loss_tokens_cut", "examples_without_loss", "tokens", "loss_tokens")


def _lists(column: pa.ChunkedArray) -> list[np.ndarray]:
    array = column.combine_chunks()
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(array))]


def load_shard(batches) -> Shard:
    """A worker's examples from TOKENIZED Arrow batches, sorted by id; rows whose loss tokens
    all fell past the cut-off are dropped (and counted)."""
    rows: list[tuple[str, np.ndarray, np.ndarray]] = []
    stats = dict.fromkeys(STAT_KEYS, 0)
    for batch in batches:
        loss = batch["n_loss_tokens"].to_numpy()
        stats["examples"] += batch.num_rows
        stats["examples_truncated"] += int(np.sum(batch["truncated"].to_numpy(zero_copy_only=False)))
        stats["loss_tokens_cut"] += int(np.sum(batch["n_loss_tokens_cut"].to_numpy()))
        for index, (example_id, ids, labels) in enumerate(
            zip(batch["id"].to_pylist(), _lists(batch["input_ids"]), _lists(batch["labels"]), strict=True)
        ):
            if loss[index] == 0:
                stats["examples_without_loss"] += 1
                continue
            rows.append((example_id, ids, labels))
    rows.sort(key=lambda row: row[0])
    shard = Shard([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], stats)
    stats["tokens"] = int(shard.lengths.sum())
    stats["loss_tokens"] = int(sum(int(np.sum(labels != IGNORE)) for labels in shard.labels))
    return shard


def pack(order: np.ndarray, lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """First fit in the given order: each example goes into the first sequence it fits in."""
    space = np.empty(len(order), dtype=np.int64)
    sequences: list[list[int]] = []
    for index in order:
        fits = np.flatnonzero(space[: len(sequences)] >= lengths[index])
        if len(fits):
            sequences[fits[0]].append(int(index))
            space[fits[0]] -= lengths[index]
        else:
            space[len(sequences)] = capacity - lengths[index]
            sequences.append([int(index)])
    return sequences


def epoch_sequences(lengths: np.ndarray, seed: int, epoch: int, rank: int, packing: bool, capacity: int):
    order = np.random.default_rng([seed, epoch, rank]).permutation(len(lengths))
    if packing:
        return pack(order, lengths, capacity)
    return [[int(index)] for index in order]


def steps_in(sequences: list, rows_per_step: int) -> int:
    return math.ceil(len(sequences) / rows_per_step)


def micro_batches(sequences: list[list[int]], step: int, rows_per_step: int, micro_batch: int, lengths: np.ndarray):
    """The micro-batches of one step (within its epoch) for this worker; [] when it has no rows."""
    rows = sequences[step * rows_per_step : (step + 1) * rows_per_step]
    rows = sorted(rows, key=lambda sequence: int(lengths[sequence].sum()))
    return [rows[i : i + micro_batch] for i in range(0, len(rows), micro_batch)]


def locate(step: int, steps_per_epoch: list[int]) -> tuple[int, int]:
    """(epoch, step within that epoch) of a 0-based global step."""
    for epoch, count in enumerate(steps_per_epoch):
        if step < count:
            return epoch, step
        step -= count
    raise IndexError("step past the plan")


@dataclass
class Batch:
    input_ids: np.ndarray  # [rows, length] int64, right-padded
    labels: np.ndarray  # [rows, length], IGNORE at padding, prompts and each example's first token
    position_ids: np.ndarray | None  # packed rows: positions restart at every example (and at padding)
    tokens: int  # real (non-padding) tokens
    loss_tokens: int  # tokens whose label is predicted (labels[:, 1:] != IGNORE)


def collate(shard: Shard, rows: list[list[int]], pad_id: int, packed: bool) -> Batch:
    """One micro-batch. Right padding needs no attention mask: causal attention never lets a real
    token see the padding after it. Packed rows pass position ids, from which transformers
    builds a mask that keeps each example to itself."""
    width = max(int(sum(len(shard.input_ids[i]) for i in row)) for row in rows)
    input_ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    labels = np.full((len(rows), width), IGNORE, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    tokens = 0
    for r, row in enumerate(rows):
        at = 0
        for index in row:
            ids, example_labels = shard.input_ids[index], shard.labels[index]
            input_ids[r, at : at + len(ids)] = ids
            labels[r, at + 1 : at + len(ids)] = example_labels[1:]  # nothing predicts an example's first token
            positions[r, at : at + len(ids)] = np.arange(len(ids))
            at += len(ids)
        positions[r, at:] = np.arange(width - at)
        tokens += at
    loss_tokens = int(np.sum(labels[:, 1:] != IGNORE))
    return Batch(input_ids, labels, positions if packed else None, tokens, loss_tokens)
