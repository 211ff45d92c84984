"""Compression: zlib size and ratio (raw bytes / compressed bytes) of each rendered example.

A plain function for Ray Data's task pool, one task a CPU. Level 9 by default, as ZIP uses.
zlib's own work is the floor (about 22 us a 780-byte row at level 9 on this machine), so
the rest is kept small: rows are rendered a slice at a time, so the texts stay in cache and
Arrow reuses its buffers instead of faulting in fresh pages, and zlib reads each text
straight from Arrow's buffer.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import pyarrow as pa

import schemas
from pipelines.score import parts, render

ROWS_A_SLICE = 2048


def compressed_sizes(texts: pa.StringArray, level: int) -> tuple[np.ndarray, list[int]]:
    """(UTF-8 bytes, zlib bytes) of each string, read in place from Arrow's buffers."""
    _, offsets_buffer, data_buffer = texts.buffers()
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(offsets_buffer, dtype=width)[texts.offset : texts.offset + len(texts) + 1]
    data, compress, bounds = memoryview(data_buffer), zlib.compress, offsets.tolist()
    sizes = [len(compress(data[a:b], level)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return np.diff(offsets).astype(np.int64), sizes


def score_batch(batch: pa.Table, level: int, text: str) -> pa.Table:
    started = time.process_time()
    messages = batch["messages"].combine_chunks()
    n_bytes, n_compressed = [], []
    for start in range(0, len(messages), ROWS_A_SLICE):
        raw, compressed = compressed_sizes(render.render_column(messages.slice(start, ROWS_A_SLICE), text), level)
        n_bytes.append(raw)
        n_compressed += compressed
    raw_bytes = np.concatenate(n_bytes) if n_bytes else np.zeros(0, np.int64)
    compressed_bytes = np.asarray(n_compressed, dtype=np.int64)
    table = pa.Table.from_arrays(
        [
            batch["id"],
            pa.array(raw_bytes),
            pa.array(compressed_bytes),
            pa.array(raw_bytes / compressed_bytes, pa.float64()),  # zlib output is 8 bytes at least
        ],
        schema=schemas.SCHEMAS["scores/compression"],
    )
    return parts.with_cpu(table, time.process_time() - started)
