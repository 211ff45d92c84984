"""Selections: one table a named selection, `selections/<NAME>`."""

import pyarrow as pa

SELECTION = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),  # 1 = picked first (greedy) or ranked first (SQL)
    ]
)
