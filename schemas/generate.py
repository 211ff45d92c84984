"""Generation engines' tables: requests in, one result row per completion out."""

import pyarrow as pa

from schemas.pool import MESSAGE

REQUESTS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),  # the chat sent to the model
    ]
)

# What an engine works through: one row per (request, completion) still to be asked.
PENDING = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("completion_index", pa.int32(), nullable=False),
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("previous_attempts", pa.int32(), nullable=False),  # tries made by earlier runs
    ]
)

RESULTS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("completion_index", pa.int32(), nullable=False),  # 0 .. n-1
        pa.field("output", pa.string()),  # null when failed
        pa.field("status", pa.string(), nullable=False),  # ok | failed
        pa.field("error", pa.string()),  # why it failed (never holds an API key)
        pa.field("attempts", pa.int32(), nullable=False),  # tries so far, over every run
        pa.field("prompt_tokens", pa.int32()),
        pa.field("output_tokens", pa.int32()),
        pa.field("finish_reason", pa.string()),  # stop | length | ...
    ]
)
