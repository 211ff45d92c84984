"""Every SQL selector's seconds choosing 10k rows of a 1M-row scored pool (synthetic pool and
score tables with the real schemas), next to the seconds DuckDB needs to read the columns the
selectors read (the floor any selector pays). `python -m bench sql_selectors` (`--quick`:
100,000 rows).
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
from bench.common import run_parts


def synthetic_scores(rng: np.random.Generator, ids: pa.Array) -> dict[str, pa.Table]:
    """scores/model_loss and scores/clusters for `ids`, drawn from `rng` with plausible
    spreads (2% null-like IFD, 3% truncated, 1,000 clusters): a 1M-row model scorer's tables
    without the hours of scoring."""
    rows = len(ids)
    return {
        "scores/model_loss": pa.table(
            {
                "id": ids,
                "n_prompt_tokens": rng.integers(5, 500, rows).astype(np.int32),
                "n_response_tokens": rng.integers(1, 2000, rows).astype(np.int32),
                "loss_given_prompt": rng.gamma(2, 0.5, rows),
                "loss_alone": rng.gamma(2, 0.6, rows),
                "ifd": np.where(rng.random(rows) < 0.02, np.nan, rng.gamma(8, 0.1, rows)),
                "truncated": rng.random(rows) < 0.03,
            },
            schema=schemas.SCHEMAS["scores/model_loss"],
        ),
        "scores/clusters": pa.table(
            {"id": ids, "cluster": rng.integers(0, 1000, rows).astype(np.int32), "distance": rng.random(rows)},
            schema=schemas.SCHEMAS["scores/clusters"],
        ),
    }


def write_manifest(folder: Path, table: str, rows: int) -> None:
    """The `_SUCCESS.json` a stage would write, with what the select stage reads of it."""
    manifest = {"stage": "bench", "identity": {"config_hash": table, "code_version": "bench"}, "rows_out": rows}
    (folder / table / "_SUCCESS.json").write_text(json.dumps(manifest))


def scored_pool(folder: Path, rows: int) -> None:
    """A 1M-row run folder: pool, model_loss, clusters and compression tables, with manifests."""
    rng = np.random.default_rng(0)
    ids = pa.array([f"{i:032x}" for i in rng.permutation(rows)])
    sources = pa.array(np.array(["gsm8k", "math", "alpaca", "mathematics"])[rng.integers(0, 4, rows)])
    tables = {
        "pool": pa.table(
            {
                "id": ids,
                "source": sources,
                "messages": pa.array([[]] * rows, schemas.SCHEMAS["pool"].field("messages").type),
                "reference": pa.nulls(rows, pa.string()),
                "meta": pa.nulls(rows, pa.string()),
            },
            schema=schemas.SCHEMAS["pool"],
        ),
        **synthetic_scores(rng, ids),
    }
    for name, table in tables.items():
        (folder / name).mkdir(parents=True)
        pq.write_table(table, folder / name / "part-00000.parquet", row_group_size=65_536)
        write_manifest(folder, name, rows)


SQL_SPECS = {
    "random": {"method": "random"},
    "top_k ifd": {"method": "top_k", "score": "model_loss.ifd"},
    "bottom_k loss, filtered": {
        "method": "bottom_k",
        "score": "model_loss.loss_given_prompt",
        "where": [
            {"column": "model_loss.ifd", "op": "<", "value": 1},
            {"column": "model_loss.truncated", "op": "=", "value": False},
            {"column": "model_loss.n_response_tokens", "op": "between", "value": [16, 1024]},
        ],
    },
    "source quotas": {
        "method": "random",
        "allocation": "source_quotas",
        "quotas": {"gsm8k": 0.25, "math": 0.25, "alpaca": 0.25, "mathematics": 0.25},
    },
    "km ifd (clusters_equal)": {"method": "top_k", "score": "model_loss.ifd", "allocation": "clusters_equal"},
    "clusters_proportional": {"method": "top_k", "score": "model_loss.ifd", "allocation": "clusters_proportional"},
}


def sql_selectors(rows: int, budget: int) -> dict:
    from pipelines import views
    from pipelines.select import ranked
    from pipelines.select.settings import Ranked

    with tempfile.TemporaryDirectory(prefix="winnow-bench-") as tmp:
        scored_pool(Path(tmp), rows)
        connection = views.connect(tmp)
        started = time.perf_counter()
        connection.execute(
            "SELECT count(*), sum(l.ifd), count(DISTINCT c.cluster) FROM pool p "
            "JOIN scores_model_loss l USING (id) JOIN scores_clusters c USING (id)"
        ).fetchall()
        floor = time.perf_counter() - started
        out = {"rows": rows, "budget": budget, "read_floor_seconds": floor}
        for name, spec in SQL_SPECS.items():
            started = time.perf_counter()
            table = ranked.select(connection, Ranked(budget=budget, **spec), budget)
            out[name] = {"seconds": time.perf_counter() - started, "rows": table.num_rows}
    return out


def report(quick: bool) -> dict:
    rows = 100_000 if quick else 1_000_000
    r = sql_selectors(rows, 10_000)
    print(
        f"  SQL selectors, 10,000 of {rows:,} scored rows (reading the columns alone: {r['read_floor_seconds']:.2f} s):"
    )
    for name in SQL_SPECS:
        print(f"    {name:<26} {r[name]['seconds']:6.2f} s")
    return r


def main(quick: bool = False) -> None:
    run_parts("sql_selectors", {"sql": report}, ("sql",), quick)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
