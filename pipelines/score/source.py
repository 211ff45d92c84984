"""A Ray Data source over Parquet files that cuts work along row groups.

Ray's own Parquet reader hands whole files to a few read tasks, so a pool of three large
files fed two tasks and left a core idle. Here each read task gets whole row groups adding
up to about `rows_per_block` rows, so work spreads over every CPU (and every actor), and
a task never holds more than its block. A row group bigger than `rows_per_block` is read by
several tasks, a slice each (Ray Data would merge slices one task yielded back into one
block): a small pool written as one row group still feeds every actor of a pool, for one
extra decode of the row group a slice. Footers are read once, by the driver.

Given `workers`, blocks come in whole waves: as many blocks as a multiple of the workers,
as equal in rows as row groups allow and about `rows_per_block` at most, so no wave ends
with a core idle and there are no more tasks (each with its own start and its own part)
than the size cap needs.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipelines import storage


class Piece(NamedTuple):
    """Rows [offset, offset + rows) of one row group; `size` is their estimated bytes."""

    file: str
    group: int
    offset: int
    rows: int
    size: int


class RowGroups(Datasource):
    def __init__(self, files: list[str], columns: list[str], rows_per_block: int, workers: int | None = None):
        groups = [group for location in files for group in _row_groups(location)]
        if workers:
            rows_per_block = balanced_block_rows(sum(group[2] for group in groups), workers, rows_per_block)
        self.columns, self.rows_per_block, self.balanced = columns, rows_per_block, bool(workers)
        self.pieces: list[Piece] = [piece for group in groups for piece in _slices(*group, rows_per_block)]

    def estimate_inmemory_data_size(self) -> int:
        return sum(piece.size for piece in self.pieces)

    def chunks(self) -> list[list[Piece]]:
        """Consecutive pieces, about `rows_per_block` rows a chunk."""
        chunks, chunk, rows, total = [], [], 0, 0
        for piece in self.pieces:
            chunk.append(piece)
            rows, total = rows + piece.rows, total + piece.rows
            if self._chunk_ends(rows, total, len(chunks)):
                chunks.append(chunk)
                chunk, rows = [], 0
        return chunks + [chunk] if chunk else chunks

    def _chunk_ends(self, rows: int, total: int, chunks_before: int) -> bool:
        """Balanced: at the first piece boundary past the next multiple of the block, so
        overshoots do not add up and the chunks number the waves' tasks. Else once the chunk
        holds a block (an actor call gets `rows_per_block` rows or more, but the last)."""
        if self.balanced:
            return total >= (chunks_before + 1) * self.rows_per_block
        return rows >= self.rows_per_block

    def num_tasks(self) -> int:
        return max(1, len(self.chunks()))

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        return [self._task(chunk) for chunk in self.chunks()]

    def _task(self, chunk: list[Piece]) -> ReadTask:
        metadata = BlockMetadata(
            num_rows=sum(piece.rows for piece in chunk),
            size_bytes=sum(piece.size for piece in chunk),
            exec_stats=None,
            input_files=tuple(sorted({piece.file for piece in chunk})),
        )
        return ReadTask(partial(_read, chunk, self.columns), metadata)


def balanced_block_rows(total_rows: int, workers: int, most: int) -> int:
    """Rows a block so that the blocks fill whole waves of `workers`, none over `most` rows."""
    waves = max(1, math.ceil(total_rows / (workers * most)))
    return max(1, math.ceil(total_rows / (waves * workers)))


def _row_groups(location: str) -> list[tuple[str, int, int, int]]:
    """(file, index, rows, bytes) of each row group, from the file's footer."""
    with storage.open_random_access(location) as handle:
        metadata = pq.ParquetFile(handle).metadata
    groups = (metadata.row_group(index) for index in range(metadata.num_row_groups))
    return [(location, index, group.num_rows, group.total_byte_size) for index, group in enumerate(groups)]


def _slices(location: str, index: int, rows: int, size: int, rows_per_block: int) -> list[Piece]:
    """A row group as one piece, or as slices of `rows_per_block` rows when it is bigger."""
    if rows <= rows_per_block:
        return [Piece(location, index, 0, rows, size)]
    return [
        Piece(
            location,
            index,
            offset,
            min(rows_per_block, rows - offset),
            size * min(rows_per_block, rows - offset) // rows,
        )
        for offset in range(0, rows, rows_per_block)
    ]


def _read(chunk: list[Piece], columns: list[str]):
    opened: dict[str, pq.ParquetFile] = {}
    try:
        for piece in chunk:
            if piece.file not in opened:
                opened[piece.file] = pq.ParquetFile(storage.open_random_access(piece.file))
            table = opened[piece.file].read_row_group(piece.group, columns=columns)
            yield table if piece.offset == 0 and piece.rows == table.num_rows else table.slice(piece.offset, piece.rows)
    finally:
        for parquet in opened.values():
            parquet.close()
