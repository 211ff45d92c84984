"""A Ray Data source over Parquet files that cuts work along row groups.

Ray's own Parquet reader hands whole files to a few read tasks, so a pool of three large
files fed two tasks and left a core idle. Here each read task gets whole row groups adding
up to about `rows_per_block` rows, so work spreads over every CPU (and every actor), and
a task never holds more than its block. A row group bigger than `rows_per_block` is read by
several tasks, a slice each (Ray Data would merge slices one task yielded back into one
block): a small pool written as one row group still feeds every actor of a pool, for one
extra decode of the row group a slice. Footers are read once, by the driver.
"""

from __future__ import annotations

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
    def __init__(self, files: list[str], columns: list[str], rows_per_block: int):
        self.columns, self.rows_per_block = columns, rows_per_block
        self.pieces: list[Piece] = []
        for location in files:
            with storage.open_random_access(location) as handle:
                metadata = pq.ParquetFile(handle).metadata
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                self.pieces += _slices(location, index, group.num_rows, group.total_byte_size, rows_per_block)

    def estimate_inmemory_data_size(self) -> int:
        return sum(piece.size for piece in self.pieces)

    def chunks(self) -> list[list[Piece]]:
        """Consecutive pieces, about `rows_per_block` rows a chunk."""
        chunks, chunk, rows = [], [], 0
        for piece in self.pieces:
            chunk.append(piece)
            rows += piece.rows
            if rows >= self.rows_per_block:
                chunks.append(chunk)
                chunk, rows = [], 0
        return chunks + [chunk] if chunk else chunks

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
