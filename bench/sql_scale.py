"""The named queries over a 1,000,000-row scored pool (issue 28: each under 1 s).

`python -m bench sql_scale` (`--quick`: 100,000 rows). A real run folder: the generated pool of
bench/near_dup_scale.py (~640 bytes a row, 10% edited copies) and 200 GSM8K test questions, through `winnow ingest` and
`winnow score` with compression, near_dup and contamination (against the shared GSM8K and
MATH-500 test sets), timed; then the tables a 1M pool's model scorers would write (model_loss,
embedding 384-d, clusters), generated with the pool's ids because scoring them here takes
hours; then `winnow select` with four 10,000-row selections. Each named query that reads the
pool-sized tables is timed in-process on a fresh `views.connect` (its time stated apart), best
of three runs; the queries over evaluation tables read a few thousand rows at any pool size and
are left out. `python -m bench.sql_scale [--quick] --folder DIR` builds in DIR and keeps it;
run again on a built DIR, it only times the queries again.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from bench.common import gib, machine, run_winnow, save, write_config
from bench.near_dup_scale import write_pool
from bench.sql_selectors import synthetic_scores, write_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "benchmarks"
QUERIES = {  # named query -> its parameters
    "pool_by_source": {},
    "score_summary": {},
    "near_dup": {},
    "near_dup_examples": {},
    "contamination": {},
    "contamination_examples": {},
    "selection_summary": {},
    "selection_overlap": {},
    "selection_overlap_matrix": {},
    "selection_scores": {},
    "evidence_selection_rows": {"selection": "top_ifd"},
}
BUDGET = 10_000


def planted_benchmark_rows(folder: Path, rows: int = 200) -> Path:
    """The first GSM8K test questions as pool rows, so the contamination queries have rows."""
    path = folder / "planted-gsm8k.jsonl"
    with (SHARED / "gsm8k" / "test.jsonl").open() as source, path.open("w") as out:
        for _, line in zip(range(rows), source, strict=False):
            record = json.loads(line)
            turns = [{"from": "human", "value": record["question"]}, {"from": "gpt", "value": record["answer"]}]
            out.write(json.dumps({"conversations": turns}) + "\n")
    return path


def config(folder: Path, paths: list[Path]) -> Path:
    return write_config(
        folder,
        "sql_scale",
        paths,
        score={
            "compression": {},
            "near_dup": {},
            "contamination": {
                "benchmarks": [
                    {"name": "gsm8k", "path": str(SHARED / "gsm8k" / "test.jsonl")},
                    {"name": "math-500", "path": str(SHARED / "math-500" / "test.jsonl")},
                ]
            },
        },
        select={
            "random": {"method": "random", "budget": BUDGET},
            "low_compression": {"method": "bottom_k", "score": "compression.compression_ratio", "budget": BUDGET},
            "top_ifd": {"method": "top_k", "score": "model_loss.ifd", "budget": BUDGET},
            "km_ifd": {"method": "top_k", "score": "model_loss.ifd", "budget": BUDGET, "allocation": "clusters_equal"},
        },
    )


def model_tables(run_dir: Path, chunk: int = 100_000) -> None:
    """scores/model_loss, scores/clusters (bench/sql_selectors.py's) and scores/embedding
    (unit vectors, 384-d) for every pool id, seeded, a chunk at a time, with manifests."""
    ids = pq.read_table(run_dir / "pool", columns=["id"])["id"]
    rng = np.random.default_rng(0)
    writers = {}
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        vectors = rng.standard_normal((len(part), 384), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 384)
        tables = {**synthetic_scores(rng, part), "scores/embedding": pa.table({"id": part, "embedding": embedding})}
        for name, table in tables.items():
            if name not in writers:
                (run_dir / name).mkdir(parents=True, exist_ok=True)
                schema = schemas.embedding(384) if name == "scores/embedding" else table.schema
                writers[name] = pq.ParquetWriter(run_dir / name / "part-00000.parquet", schema, compression="zstd")
            writers[name].write_table(table.cast(writers[name].schema))
    for name, writer in writers.items():
        writer.close()
        write_manifest(run_dir, name, len(ids))


def time_queries(run_dir: Path) -> dict:
    from pipelines import views

    started = time.perf_counter()
    views.connect(str(run_dir)).close()
    out = {"connect_seconds": time.perf_counter() - started}
    for name, parameters in QUERIES.items():
        seconds = []
        for _ in range(3):
            connection = views.connect(str(run_dir))
            started = time.perf_counter()
            _, rows = views.run_query(connection, name, parameters)
            seconds.append(time.perf_counter() - started)
            connection.close()
        out[name] = {"seconds": min(seconds), "rows": len(rows)}
    return out


def scale(folder: Path, rows: int) -> dict:
    config_path = config(folder, [*write_pool(folder, rows), planted_benchmark_rows(folder)])
    ingest_seconds, _ = run_winnow("ingest", config_path)
    score_seconds, memory = run_winnow("score", config_path)
    model_tables(folder / "run")
    select_seconds, _ = run_winnow("select", config_path)
    manifest = json.loads((folder / "run" / "pool" / "_SUCCESS.json").read_text())
    return {
        "pool_rows": manifest["rows_out"],
        "ingest_seconds": ingest_seconds,
        "score_seconds": score_seconds,  # compression, near_dup and contamination
        "score_peak_process_rss": memory.peak_process_rss,
        "select_seconds": select_seconds,
        "queries": time_queries(folder / "run"),
    }


def main(quick: bool = False, folder: str | None = None) -> None:
    """Build the run folder in a temporary folder, or in `folder`, kept; a `folder` that holds
    a finished build already is only timed again (`python -m bench.sql_scale --folder DIR`)."""
    rows = 100_000 if quick else 1_000_000
    print(f"sql_scale benchmark on {machine()}")
    if folder and (Path(folder) / "run" / "selections").is_dir():
        result = {"queries": time_queries(Path(folder) / "run")}
    elif folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        result = scale(Path(folder), rows)
    else:
        with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
            result = scale(Path(tmp), rows)
    queries = result["queries"]
    if "pool_rows" in result:
        print(
            f"  {result['pool_rows']:,} rows: ingest {result['ingest_seconds']:.0f} s; score compression + near_dup + "
            f"contamination {result['score_seconds']:.0f} s (largest process {gib(result['score_peak_process_rss'])}); "
            f"select 4 x {BUDGET:,} rows {result['select_seconds']:.0f} s"
        )
    print(f"  views.connect {queries['connect_seconds']:.2f} s")
    slowest = max(QUERIES, key=lambda name: queries[name]["seconds"])
    for name in QUERIES:
        print(f"    {name:<26} {queries[name]['seconds']:6.2f} s  ({queries[name]['rows']:,} rows)")
    print(f"  slowest: {slowest} {queries[slowest]['seconds']:.2f} s (target: under 1 s each)")
    print(f"  results: {save('sql_scale' if 'pool_rows' in result else 'sql_scale-queries', result)}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    kept = arguments[arguments.index("--folder") + 1] if "--folder" in arguments else None
    main(quick="--quick" in arguments, folder=kept)
