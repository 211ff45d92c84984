"""Ingest throughput against a plain read + hash, and peak memory from 100k to 1M rows.

Pool: generated ShareGPT-style JSON Lines, 8 files a size, every row unique (random words
plus the row number), about 600 bytes a row. Baseline: `pyarrow.json.read_json` of the same
files in one process plus the sha256 of each row's conversation: the least any ingest must
do. Winnow: `winnow ingest` in a subprocess (embedded Ray on every CPU, Ray's start
included), with the summed PSS of its whole process tree sampled every 0.2 s.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.json as pa_json

from bench.common import gib, machine, run_winnow, save, write_config

FILES = 8
COMMON_WORDS = "the a of to and in is it that for on with as was at by an be this are from or have"
WORDS = np.array(COMMON_WORDS.split(" ") + [f"word{i}" for i in range(2000)])


def write_pool(folder: Path, rows: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths, per_file = [], rows // FILES
    for index in range(FILES):
        path = folder / f"part-{index}.jsonl"
        with path.open("w") as handle:
            for start in range(index * per_file, (index + 1) * per_file, 10_000):
                stop = min(start + 10_000, (index + 1) * per_file)
                words = WORDS[rng.integers(0, len(WORDS), size=(stop - start, 90))]
                for offset, row in enumerate(words):
                    question, answer = " ".join(row[:30]), " ".join(row[30:])
                    record = {
                        "conversations": [
                            {"from": "human", "value": f"{start + offset}: {question}?"},
                            {"from": "gpt", "value": answer},
                        ]
                    }
                    handle.write(json.dumps(record) + "\n")
        paths.append(path)
    return paths


def baseline(paths: list[Path]) -> tuple[int, float]:
    """Rows and seconds: pyarrow's JSON reader, then one sha256 per row of its conversation."""
    started, rows = time.perf_counter(), 0
    for path in paths:
        table = pa_json.read_json(path)
        for conversation in table.column("conversations").to_pylist():
            turns = [[turn["from"], turn["value"]] for turn in conversation]
            hashlib.sha256(json.dumps(turns, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()
            rows += 1
    return rows, time.perf_counter() - started


def winnow(paths: list[Path], work: Path) -> dict:
    seconds, memory = run_winnow("ingest", write_config(work, "bench", paths))
    manifest = json.loads((work / "run" / "pool" / "_SUCCESS.json").read_text())
    return {
        "rows": manifest["rows_in"],
        "kept": manifest["rows_out"],
        "seconds": seconds,
        "peak_tree_pss": memory.peak_pss,
        "peak_driver_rss": memory.peak_root_rss,
    }


def main(quick: bool = False) -> None:
    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    print(f"ingest benchmark on {machine()}")
    results = {}
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
            work = Path(tmp)
            paths = write_pool(work, rows)
            base_rows, base_seconds = baseline(paths)
            measured = winnow(paths, work)
        ratio = (measured["rows"] / measured["seconds"]) / (base_rows / base_seconds)
        results[rows] = {**measured, "baseline_seconds": base_seconds, "ratio": ratio}
        print(
            f"  {rows:>9,} rows: winnow {measured['rows'] / measured['seconds']:>8,.0f} rows/s "
            f"({measured['seconds']:.1f} s), baseline {base_rows / base_seconds:>8,.0f} rows/s "
            f"({base_seconds:.1f} s), ratio {ratio:.2f}; peak memory {gib(measured['peak_tree_pss'])} "
            f"(whole process tree, PSS), driver {gib(measured['peak_driver_rss'])} RSS"
        )
    small, large = (results[size]["peak_tree_pss"] for size in sizes)
    print(f"  peak memory {sizes[1] // sizes[0]}x the rows: x{large / small:.2f} (target: flat, under 4 GiB)")
    print(f"  results: {save('ingest', {str(k): v for k, v in results.items()})}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
