"""Tables of the train stage: its prepared data, tokenized examples and per-step metrics."""

import pyarrow as pa

from schemas.pool import MESSAGE

# _work/train-<ARM>/data/shard-<i>.parquet and validation.parquet: an arm's examples as chat
# messages, after its data reference is resolved and checked.
TRAIN_DATA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
    ]
)

# What the tokenizing step hands a training worker: one row an example, cut to max_length.
TOKENIZED = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
        pa.field("labels", pa.list_(pa.int32()), nullable=False),  # the token id where it carries loss, else -100
        pa.field("n_loss_tokens", pa.int32(), nullable=False),  # within max_length
        pa.field("n_loss_tokens_cut", pa.int32(), nullable=False),  # loss tokens past max_length
        pa.field("truncated", pa.bool_(), nullable=False),  # some token fell past max_length
    ]
)

# train_metrics/<ARM>: one row an optimizer step.
TRAIN_METRICS = pa.schema(
    [
        pa.field("step", pa.int32(), nullable=False),  # 1-based optimizer step
        pa.field("epoch", pa.int32(), nullable=False),  # 0-based epoch the step belongs to
        pa.field("loss", pa.float64(), nullable=False),  # mean NLL over every loss token of the global batch
        pa.field("lr", pa.float64(), nullable=False),  # learning rate the step used
        pa.field("tokens", pa.int64(), nullable=False),  # non-padding tokens of the step, all workers
        pa.field("loss_tokens", pa.int64(), nullable=False),  # tokens that carried loss
        pa.field("seconds", pa.float64(), nullable=False),  # wall seconds of the step
        pa.field("start_step", pa.int32(), nullable=False),  # the step the attempt that ran it resumed from
    ]
)
