"""Stage progress follows the work: Ray workers add to a counter actor and the bar moves as
each actor call finishes, not only when a part is written."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines.progress import StageProgress
from pipelines.score import parts

pytestmark = pytest.mark.ray


class Recording(StageProgress):
    """A StageProgress that keeps every count it showed (a bar is only a view of these)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.shown: list[int] = []

    def update(self, done: int, detail: str = "") -> None:
        super().update(done, detail)
        self.shown.append(self.done)


def test_the_bar_moves_with_each_actor_call_before_the_one_part_is_written(ray_local, tmp_path):
    import ray.data

    # defined here, so Ray pickles it by value (a test module is not importable in workers)
    class SlowCompression:
        """An actor-pool scorer stand-in that takes 0.3 s a call and returns real score rows."""

        def __call__(self, batch: pa.Table) -> pa.Table:
            time.sleep(0.3)
            rows = [
                {"id": i, "n_bytes": 10, "n_bytes_compressed": 5, "compression_ratio": 2.0}
                for i in batch["id"].to_pylist()
            ]
            table = pa.Table.from_pylist(rows, schema=schemas.SCHEMAS["scores/compression"])
            return parts.with_cpu(table, 0.0)

    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"id": [f"{i:04d}" for i in range(80)]}), pool, row_group_size=10)
    parts_dir = tmp_path / "parts"

    def apply(dataset):
        return dataset.map_batches(
            SlowCompression,
            batch_format="pyarrow",
            batch_size=10,
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.5,
        )

    with Recording("score test", 80, "rows") as progress:
        parts.map_and_write(
            [str(pool)], ["id"], apply, str(parts_dir), "scores/compression", 80, progress, rows_per_block=10
        )
    assert len(list(parts_dir.glob("*.parquet"))) == 1  # one part of 80 rows, written at the end
    moved_before_the_end = sorted({count for count in progress.shown if 0 < count < 80})
    assert len(moved_before_the_end) >= 2, progress.shown
    assert progress.done == 80


def test_a_counter_carries_a_total_that_workers_learn(ray_local):
    import ray

    with Recording("train test", None, "steps") as progress:
        counter = progress.counter()
        ray.get(counter.start.remote(3, 10))  # a run resumed at step 3 of 10
        ray.get([counter.add.remote(1) for _ in range(4)])
        deadline = time.monotonic() + 10
        while progress.done < 7 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert (progress.done, progress.total) == (7, 10)


def test_work_done_again_after_a_lost_worker_is_counted_and_said(ray_local, capsys):
    import ray

    with StageProgress("train test", None, "steps") as progress:
        counter = progress.counter()
        ray.get(counter.start.remote(0, 10))
        ray.get([counter.add.remote(1) for _ in range(6)])  # steps 1-6; the checkpoint was step 4
        ray.get(counter.start.remote(4, 10))  # the restarted attempt resumes from it: 5 and 6 again
        ray.get([counter.add.remote(1) for _ in range(6)])
    assert (progress.done, progress.redone) == (10, 2)
    with StageProgress("score test", 8, "rows") as rows:
        ray.get(rows.counter().add.remote(11))  # a retried call's 3 rows counted twice
    assert rows.counted == 11
    said = capsys.readouterr().err
    assert "train test: 2 steps redone after a lost worker or node" in said
    assert "score test: 3 rows redone after a lost worker or node" in said
