"""RowGroups: how pool rows are cut into read tasks (real Parquet files, real read tasks)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.score.source import RowGroups, balanced_block_rows


@pytest.mark.parametrize(
    ("rows", "workers", "most", "expected"),
    [
        (1_000_000, 2, 250_000, 250_000),  # two waves of two
        (1_050_000, 2, 250_000, 175_000),  # three waves of two, not four parts and a 50k tail
        (100, 2, 1_000, 50),  # fewer rows than the cap: still one block a worker
        (10, 64, 1_000, 1),  # more workers than rows
        (0, 2, 1_000, 1),
    ],
)
def test_blocks_fill_whole_waves_and_respect_the_cap(rows, workers, most, expected):
    assert balanced_block_rows(rows, workers, most) == expected


def write_pool(path, groups: list[int]) -> list[str]:
    """A Parquet file with row groups of the given sizes; returns its ids in order."""
    ids, start = [], 0
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("n", pa.int64())])) as writer:
        for size in groups:
            chunk = [f"r{i:05d}" for i in range(start, start + size)]
            writer.write_table(pa.table({"id": chunk, "n": list(range(start, start + size))}))
            ids += chunk
            start += size
    return ids


def read_all(source: RowGroups) -> list[list[str]]:
    """The ids each read task yields, task by task, read for real."""
    return [
        [i for table in task() for i in table["id"].to_pylist()]
        for task in source.get_read_tasks(parallelism=source.num_tasks())
    ]


def test_balanced_tasks_cover_every_row_once_in_a_multiple_of_the_workers(tmp_path):
    ids = write_pool(tmp_path / "a.parquet", [97] * 10) + write_pool(tmp_path / "b.parquet", [97] * 11)
    files = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    source = RowGroups(files, ["id"], rows_per_block=500, workers=2)
    tasks = read_all(source)
    assert [i for task in tasks for i in task] == ids  # every row once, in file order
    assert len(tasks) == 6  # 2,037 rows at most 500 a task on 2 workers: three waves of two
    sizes = [len(task) for task in tasks]
    assert max(sizes) - min(sizes) <= 2 * 97  # boundaries fall on row groups; overshoots do not add up


def test_a_pool_of_one_row_group_still_feeds_every_worker(tmp_path):
    ids = write_pool(tmp_path / "one.parquet", [1_000])
    source = RowGroups([str(tmp_path / "one.parquet")], ["id", "n"], rows_per_block=10_000, workers=4)
    tasks = read_all(source)
    assert [len(task) for task in tasks] == [250] * 4
    assert [i for task in tasks for i in task] == ids


def test_without_workers_a_block_is_the_given_rows(tmp_path):
    write_pool(tmp_path / "a.parquet", [300, 300])
    source = RowGroups([str(tmp_path / "a.parquet")], ["id"], rows_per_block=256)
    assert [len(task) for task in read_all(source)] == [256, 300, 44]  # slices of 256 + 44: a call is 256 rows at least
