"""Near-duplicates at scale: `winnow score` with the near_dup scorer alone, 100,000 and
1,000,000 rows (`--quick`: 20,000 and 100,000), on an embedded Ray over every CPU.

Pool: generated ShareGPT-style JSON Lines (8 files), a question and an answer of random
words (2,020-word vocabulary, answer length log-normal, median ~90 words, ~640 bytes a row),
every row distinct; 10% of the rows are copies of an earlier row with 0-5% of their words
replaced (the exactness bench's edit rates). `winnow ingest` runs first (timed apart); then
`winnow score` is measured in a subprocess: wall time, the summed PSS of its whole process
tree and the largest RSS of any one process, sampled every 0.2 s. The table is then read
back: rows not kept (a copy whose cluster keeps another row) against the copies planted.
Targets (issue 27): 1,000,000 rows in under 15 minutes, no process above 6 GiB.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np

from bench.common import gib, machine, run_winnow, save, write_config

FILES = 8
COPY_SHARE = 0.1
EDIT_RATES = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)  # as tests/near_dup_planted.py: J ~ 1, .95, .9, .82, .74, .6
WORDS = np.array(["the", "a", "of", "to", "and", "in", "is", "it", "that", "for"] + [f"w{i}" for i in range(2010)])


def conversations(rows: int, seed: int):
    """`rows` (question, answer) word arrays; the last COPY_SHARE of them edited copies of
    earlier rows (each row has its own seeded stream, so a copy regenerates its source)."""
    rng = np.random.default_rng(seed)
    distinct = rows - int(rows * COPY_SHARE)
    lengths = np.clip(rng.lognormal(np.log(90), 0.6, size=distinct), 20, 1500).astype(int)
    for position in range(distinct):
        yield _row(seed, lengths, position)
    for n, source in enumerate(rng.integers(0, distinct, size=rows - distinct)):
        words = np.concatenate(_row(seed, lengths, source))
        edits = max(1, round(EDIT_RATES[n % len(EDIT_RATES)] * len(words)))  # one at least: no exact copy
        words[rng.choice(len(words), size=edits, replace=False)] = WORDS[rng.integers(0, len(WORDS), edits)]
        yield words[:25], words[25:]


def _row(seed: int, lengths: np.ndarray, position: int):
    """Distinct row `position`, from its own seeded stream."""
    rng = np.random.default_rng([seed, position])
    words = WORDS[rng.integers(0, len(WORDS), size=lengths[position] + 25)]
    return words[:25], words[25:]


def write_pool(folder: Path, rows: int, seed: int = 0) -> list[Path]:
    handles = [(folder / f"part-{i}.jsonl").open("w") for i in range(FILES)]
    for n, (question, answer) in enumerate(conversations(rows, seed)):
        record = {
            "conversations": [
                {"from": "human", "value": " ".join(question) + "?"},
                {"from": "gpt", "value": " ".join(answer)},
            ]
        }
        handles[n % FILES].write(json.dumps(record) + "\n")
    for handle in handles:
        handle.close()
    return [Path(h.name) for h in handles]


def outcome(run_dir: Path) -> dict:
    """What the table says: rows, rows not kept, clusters of more than one row."""
    parts = str(run_dir / "scores" / "near_dup" / "*.parquet")
    rows, dropped, clusters = (
        duckdb.connect()
        .execute(
            "SELECT count(*), count(*) FILTER (NOT keep), count(DISTINCT cluster) FILTER (cluster_size > 1) "
            "FROM read_parquet($parts)",
            {"parts": parts},
        )
        .fetchone()
    )
    return {"table_rows": rows, "not_kept": dropped, "clusters": clusters}


def scale(folder: Path, rows: int) -> dict:
    config_path = write_config(folder, "bench", write_pool(folder, rows), score={"near_dup": {}})
    ingest_seconds, _ = run_winnow("ingest", config_path)
    seconds, memory = run_winnow("score", config_path)
    manifest = json.loads((folder / "run" / "pool" / "_SUCCESS.json").read_text())
    return {
        "pool_rows": manifest["rows_out"],
        "planted_copies": int(rows * COPY_SHARE),
        "planted_at_most_2pct": sum(
            1 for n in range(int(rows * COPY_SHARE)) if EDIT_RATES[n % len(EDIT_RATES)] <= 0.02
        ),
        "ingest_seconds": ingest_seconds,
        "seconds": seconds,
        "peak_tree_pss": memory.peak_pss,
        "peak_process_rss": memory.peak_process_rss,
        **outcome(folder / "run"),
    }


def main(quick: bool = False) -> None:
    sizes = (20_000, 100_000) if quick else (100_000, 1_000_000)
    print(f"near_dup_scale benchmark on {machine()}")
    results = {}
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
            measured = results[rows] = scale(Path(tmp), rows)
        print(
            f"  {measured['pool_rows']:>9,} rows: winnow score near_dup {measured['seconds']:.0f} s "
            f"({measured['pool_rows'] / measured['seconds']:,.0f} rows/s; ingest {measured['ingest_seconds']:.0f} s); "
            f"largest process {gib(measured['peak_process_rss'])} RSS, "
            f"process tree {gib(measured['peak_tree_pss'])} PSS; "
            f"{measured['not_kept']:,} rows not kept of {measured['planted_copies']:,} planted copies "
            f"({measured['planted_at_most_2pct']:,} of them with <= 2% of words edited, J >= ~0.82), "
            f"{measured['clusters']:,} clusters"
        )
    small, large = (results[size]["peak_tree_pss"] for size in sizes)
    print(f"  process tree peak, {sizes[1] // sizes[0]}x the rows: x{large / small:.2f}")
    print(f"  results: {save('near_dup_scale', {str(k): v for k, v in results.items()})}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
