"""SQL selectors: a ranking (random, top-k, bottom-k) then an allocation of the budget.

The query is three parts, each its own file or builder: `candidates` (pool rows joined to
the score tables the selection names, filtered by its conditions; columns.py), `ranked`
(sql/select_<method>.sql) and the allocation (sql/allocate_<allocation>.sql). Every value
is a bound $parameter.
"""

from __future__ import annotations

import re

import pyarrow as pa

import schemas
from pipelines import views
from pipelines.select import columns


def budget_rows(budget: int | float, pool_rows: int) -> int:
    """A count as given, or a fraction of the pool rounded to the nearest row (at least 1)."""
    return budget if isinstance(budget, int) else max(1, round(budget * pool_rows))


def source_quotas(quotas: dict[str, int | float], budget: int) -> tuple[list[str], list[int]]:
    """(sources, rows): a count as given, a fraction of the budget rounded to the nearest row."""
    sources = sorted(quotas)
    return sources, [q if isinstance(q, int) else round(q * budget) for q in (quotas[s] for s in sources)]


def query(spec, budget: int, skips: dict[str, str] | None = None) -> tuple[str, dict, set[str]]:
    """(SQL text, its parameters, the views it reads) for a `Ranked` selection; `skips`: the
    clean-pool skips that apply (clean.present)."""
    parameters: dict = {"seed": spec.seed, "budget": budget}
    with_cluster = spec.allocation.startswith("clusters")
    candidates, needed = columns.candidates_sql(spec.score, spec.where, with_cluster, parameters, skips)
    method = views.query_text(f"select_{spec.method}")
    allocation = views.query_text(f"allocate_{spec.allocation}")
    if spec.allocation == "source_quotas":
        parameters["quota_sources"], parameters["quota_rows"] = source_quotas(spec.quotas, budget)
    allocated = _strip(allocation)  # a query of its own (it may have a WITH): nested as a subquery
    sql = f"WITH candidates AS ({candidates}),\nranked AS ({_strip(method)})\nSELECT * FROM ({allocated}) ORDER BY rank"
    return sql, _used(sql, parameters), needed


def select(connection, spec, budget: int, skips: dict[str, str] | None = None) -> pa.Table:
    """The selection table (id, rank) for a `Ranked` spec, over a run's DuckDB views."""
    sql, parameters, needed = query(spec, budget, skips)
    missing = sorted(needed - set(views.views(connection)))
    if missing:
        raise ValueError(f"selection needs tables that the run does not have yet: {', '.join(missing)}")
    table = connection.sql(sql, params=parameters).to_arrow_table()
    return table.cast(schemas.SCHEMAS["selections"])


def _strip(text: str) -> str:
    """A query file without its comments and final semicolon, to nest it as a CTE."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")


def _used(sql: str, parameters: dict) -> dict:
    """DuckDB refuses parameters that the query does not use."""
    return {name: value for name, value in parameters.items() if re.search(rf"\${name}\b", sql)}
