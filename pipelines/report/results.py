"""The results table: accuracy per arm and benchmark next to what each arm's data and
training cost, from the run's eval_summary and its stage manifests.

An arm's data cost is what was computed to build its training data: for `selection:NAME`
the selection and every table it read (the score tables; the pool's ingest is shared by
every arm and left out), for `cft` the critique stage. Seconds are wall seconds from the
manifests; an arm evaluated without training (a base model) costs nothing.
"""

from __future__ import annotations

import json

import pyarrow as pa

import schemas

SHARED_INPUTS = ("pool",)  # tables every arm uses alike: not counted against any one arm


def manifests_by_table(connection) -> dict[str, dict]:
    rows = connection.execute('SELECT "table", manifest FROM manifests').fetchall()
    return {table: json.loads(manifest) for table, manifest in rows}


def data_seconds(reference: str | None, manifests: dict[str, dict]) -> float:
    """Wall seconds spent making the training data an arm's reference names."""
    if reference is None:
        return 0.0
    if reference.startswith("selection:"):
        table = f"selections/{reference.removeprefix('selection:')}"
        inputs = [t for t in manifests.get(table, {}).get("inputs", {}) if t not in SHARED_INPUTS]
        return sum(manifests.get(t, {}).get("wall_seconds", 0.0) for t in [table, *inputs])
    if reference == "cft":
        return sum(m.get("wall_seconds", 0.0) for t, m in manifests.items() if t in ("candidates", "critiques", "cft"))
    return 0.0  # a file given by path: made outside this run


def arm_info(arm: str, manifests: dict[str, dict]) -> dict:
    train = manifests.get(f"models/{arm}")
    reference = train.get("data") if train else None
    method = "base" if train is None else ("CFT" if reference == "cft" else "SFT")
    selection = reference.removeprefix("selection:") if reference and reference.startswith("selection:") else None
    spent = data_seconds(reference, manifests)
    train_seconds = train.get("wall_seconds", 0.0) if train else 0.0
    return {
        "method": method,
        "selection": selection,
        "data": reference,
        "data_seconds": spent,
        "train_seconds": train_seconds,
        "compute_seconds": spent + train_seconds,
    }


def results(connection) -> pa.Table:
    """One row per arm and benchmark (empty when nothing was evaluated)."""
    views = {name for (name,) in connection.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if "eval_summary" not in views:
        return schemas.SCHEMAS["results"].empty_table()
    manifests = manifests_by_table(connection)
    summary = connection.execute("SELECT arm, benchmark, n, accuracy FROM eval_summary ORDER BY arm, benchmark")
    rows = [
        {"arm": arm, "benchmark": benchmark, "n": n, "accuracy": accuracy, **arm_info(arm, manifests)}
        for arm, benchmark, n, accuracy in summary.fetchall()
    ]
    return pa.Table.from_pylist(rows, schema=schemas.SCHEMAS["results"])
