"""Compression: zlib size and ratio (raw bytes / compressed bytes) of each rendered example.

A plain function for Ray Data's task pool; zlib releases the GIL, but one task a CPU is
what scales it. Level 9 by default, as ZIP uses.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import schemas
from pipelines.score import parts, render


def _byte_views(texts: pa.StringArray) -> list[memoryview]:
    """Each string's UTF-8 bytes as a view into Arrow's buffer: no Python copies."""
    _, offsets_buffer, data_buffer = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[texts.offset : texts.offset + len(texts) + 1]
    data = memoryview(data_buffer)
    return [data[a:b] for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]


def score_batch(batch: pa.Table, level: int, text: str) -> pa.Table:
    started = time.process_time()
    texts = render.render_column(batch["messages"], text)
    compressed = [len(zlib.compress(raw, level)) for raw in _byte_views(texts)]
    n_bytes = pc.binary_length(texts).cast(pa.int64())
    n_compressed = pa.array(compressed, pa.int64())
    ratio = pc.divide(n_bytes.cast(pa.float64()), n_compressed.cast(pa.float64()))
    table = pa.Table.from_arrays(
        [batch["id"], n_bytes, n_compressed, ratio], schema=schemas.SCHEMAS["scores/compression"]
    )
    return parts.with_cpu(table, time.process_time() - started)
