"""A Ray Data source over Parquet files that cuts work along row groups.

Ray's own Parquet reader hands whole files to a few read tasks, so a pool of three large
files fed two tasks and left a core idle. Here each read task gets whole row groups adding
up to about `rows_per_block` rows, so work spreads over every CPU (and every actor) and a
task never holds more than its block. Footers are read once, by the driver.
"""

from __future__ import annotations

from functools import partial

import pyarrow.parquet as pq
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from pipelines import storage


class RowGroups(Datasource):
    def __init__(self, files: list[str], columns: list[str], rows_per_block: int):
        self.columns, self.rows_per_block = columns, rows_per_block
        self.groups: list[tuple[str, int, int, int]] = []  # (file, row group, rows, bytes)
        for location in files:
            with storage.open_random_access(location) as handle:
                metadata = pq.ParquetFile(handle).metadata
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                self.groups.append((location, index, group.num_rows, group.total_byte_size))

    def estimate_inmemory_data_size(self) -> int:
        return sum(size for *_, size in self.groups)

    def chunks(self) -> list[list[tuple[str, int, int, int]]]:
        """Consecutive row groups, about `rows_per_block` rows a chunk."""
        chunks, chunk, rows = [], [], 0
        for group in self.groups:
            chunk.append(group)
            rows += group[2]
            if rows >= self.rows_per_block:
                chunks.append(chunk)
                chunk, rows = [], 0
        return chunks + [chunk] if chunk else chunks

    def num_tasks(self) -> int:
        return max(1, len(self.chunks()))

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list[ReadTask]:
        return [self._task(chunk) for chunk in self.chunks()]

    def _task(self, chunk: list[tuple[str, int, int, int]]) -> ReadTask:
        metadata = BlockMetadata(
            num_rows=sum(g[2] for g in chunk),
            size_bytes=sum(g[3] for g in chunk),
            exec_stats=None,
            input_files=tuple(sorted({g[0] for g in chunk})),
        )
        return ReadTask(partial(_read, [(g[0], g[1]) for g in chunk], self.columns), metadata)


def _read(groups: list[tuple[str, int]], columns: list[str]):
    opened: dict[str, pq.ParquetFile] = {}
    try:
        for location, index in groups:
            if location not in opened:
                opened[location] = pq.ParquetFile(storage.open_random_access(location))
            yield opened[location].read_row_group(index, columns=columns)
    finally:
        for parquet in opened.values():
            parquet.close()
