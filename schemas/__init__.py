"""Arrow schemas of every Winnow table: the only place column names and types live.

`SCHEMAS[name]` is the schema of table `name` (named by its path in the run folder);
`check(name, table)` raises a `SchemaMismatch` that names the table and the columns that
differ. The embedding table's vector width depends on the model: `scores.embedding(dim)`.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.critique import CANDIDATES, CFT, CRITIQUES
from schemas.evaluate import EVAL_RESULTS, EVAL_SUMMARY
from schemas.pool import POOL, REJECTS, STAGED_POOL
from schemas.report import RESULTS
from schemas.scores import (
    CLUSTERS,
    COMPRESSION,
    CONTAMINATION,
    LESS,
    MODEL_LOSS,
    NEAR_DUP,
    SELECTIT,
    SEMANTIC_DUP,
    embedding,
)
from schemas.select import SELECTION
from schemas.train import TRAIN_DATA, TRAIN_METRICS

SCHEMAS: dict[str, pa.Schema] = {
    "pool": POOL,
    "rejects": REJECTS,
    "staged_pool": STAGED_POOL,
    "scores/compression": COMPRESSION,
    "scores/model_loss": MODEL_LOSS,
    "scores/clusters": CLUSTERS,
    "scores/selectit": SELECTIT,
    "scores/less": LESS,
    "scores/near_dup": NEAR_DUP,
    "scores/semantic_dup": SEMANTIC_DUP,
    "scores/contamination": CONTAMINATION,
    "selections": SELECTION,  # every selections/<NAME>
    "candidates": CANDIDATES,
    "critiques": CRITIQUES,
    "cft": CFT,
    "results": RESULTS,
    "train_metrics": TRAIN_METRICS,  # every train_metrics/<ARM>
    "train_data": TRAIN_DATA,
    "eval": EVAL_RESULTS,  # every eval/<ARM>/<BENCH>
    "eval_summary": EVAL_SUMMARY,
}
__all__ = ["SCHEMAS", "SchemaMismatch", "check", "embedding", "empty"]


class SchemaMismatch(ValueError):
    pass


def check(name: str, table: pa.Table | pa.RecordBatch, expected: pa.Schema | None = None) -> None:
    """Raise when `table` does not have exactly the columns and types of table `name`."""
    expected = expected if expected is not None else SCHEMAS[name]
    if table.schema.equals(expected, check_metadata=False):
        return
    have = {field.name: field.type for field in table.schema}
    want = {field.name: field.type for field in expected}
    problems = [f"missing {c}" for c in want if c not in have]
    problems += [f"unexpected {c}" for c in have if c not in want]
    problems += [f"{c}: {have[c]} != {want[c]}" for c in want if c in have and have[c] != want[c]]
    if not problems:
        problems = [f"column order {list(have)} != {list(want)}"]
    raise SchemaMismatch(f"table {name!r} does not match schemas/: " + "; ".join(problems))


def empty(name: str) -> pa.Table:
    return SCHEMAS[name].empty_table()
