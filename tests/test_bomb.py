"""A decompression bomb beside good rows (issue 26, item 2), through the real ingest stage on Ray.

The bomb: 40 bzip2 streams of 100 MiB of "a" each, one 4 GiB line with no newline, in about
4.5 KB. Before bounded reading one process reached 11.5 GB on it. The test measures the peak
resident memory of every process under this one (the driver, where the plan samples the
file, and Ray's raylet and workers, where the map step reads it) and asserts each stays
under 1.5 GB; it prints the peaks and the stage's time (run with -s to see them).
"""

from __future__ import annotations

import bz2
import json
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from pipelines import config as config_module
from pipelines.ingest.stage import run as run_ingest
from tests.conftest import write_config

STREAMS, STREAM_BYTES = 40, 100 * 2**20
PEAK_LIMIT = 1.5e9


def write_bz2_bomb(path: Path, streams: int = STREAMS, stream_bytes: int = STREAM_BYTES) -> int:
    """`streams` bzip2 streams of `stream_bytes` of "a" (no newline), built from 1 MiB pieces; the line's size."""
    compressor, piece = bz2.BZ2Compressor(9), b"a" * 2**20
    stream = b"".join(compressor.compress(piece) for _ in range(stream_bytes // len(piece))) + compressor.flush()
    path.write_bytes(stream * streams)  # the same stream again and again: a multi-stream file
    return streams * (stream_bytes // len(piece)) * len(piece)


class PeakMemory:
    """Peak resident memory of this process and its descendants, sampled every 0.1 s in a thread.

    Each process's own high-water mark (VmHWM in /proc/PID/status) counts too, so a peak
    between two samples is not missed; the tree's peak is the largest sum of resident sizes
    at one sample (pages shared between processes count once per process).
    """

    def __init__(self, interval: float = 0.1):
        self.interval, self.root = interval, psutil.Process()
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (name, peak bytes)
        self.tree_peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                rss, name = process.memory_info().rss, " ".join(process.cmdline()[:2])[:80]
            except psutil.Error:  # it ended between the listing and the read
                continue
            total += rss
            peak = max(rss, _high_water_mark(process.pid), self.peaks.get(process.pid, ("", 0))[1])
            self.peaks[process.pid] = (name, peak)
        self.tree_peak = max(self.tree_peak, total)

    def largest(self, count: int = 5) -> list[tuple[int, str, int]]:
        ranked = sorted(self.peaks.items(), key=lambda item: -item[1][1])[:count]
        return [(pid, name, peak) for pid, (name, peak) in ranked]


def _high_water_mark(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) * 1024


@pytest.mark.ray
def test_a_bzip2_bomb_is_one_reject_and_no_process_passes_1_5_gb(ray_local, tmp_path):
    root = tmp_path / "inputs"
    root.mkdir()
    line_bytes = write_bz2_bomb(root / "bomb.jsonl.bz2")
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(20)
    ]
    (root / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = config_module.load(
        write_config(tmp_path / "c.yaml", tmp_path / "run", [{"kind": "files", "name": "bomb", "paths": [str(root)]}])
    )

    started = time.monotonic()
    with PeakMemory() as memory:
        manifest = run_ingest(config)
    seconds = time.monotonic() - started

    print(
        f"\nbomb of {line_bytes:,} bytes in {(root / 'bomb.jsonl.bz2').stat().st_size:,}: ingest {seconds:.1f} s, "
        f"process tree peak {memory.tree_peak / 1e6:,.0f} MB"
    )
    for pid, name, peak in memory.largest():
        print(f"  pid {pid} {name}: peak {peak / 1e6:,.0f} MB")
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_rejected"]) == (21, 20, 1)
    (reject,) = pq.read_table(tmp_path / "run" / "rejects" / "ingest").to_pylist()
    assert (reject["file"].rsplit("/", 1)[1], reject["row"], reject["reason"]) == ("bomb.jsonl.bz2", 1, "row too long")
    assert f"holds {line_bytes:,} bytes" in reject["detail"] and reject["raw"] == "a" * 2_000
    assert memory.largest(1)[0][2] < PEAK_LIMIT
