"""Which columns a selection may name, and the SQL that gathers its candidate rows.

A column is `table.column`: `pool.source`, or a score table's column such as
`model_loss.ifd`. Names are checked against schemas/ (the only place columns live) and
quoted as identifiers; every value in a condition is a bound $parameter, never SQL text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

import schemas

POOL_COLUMNS = ("source",)
NOT_SELECTABLE = ("id", "embedding")  # an id is no score; vectors are for k-center
SQL_OPERATORS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Column:
    table: str  # "pool" or a score table's name ("model_loss")
    name: str

    @property
    def view(self) -> str:
        return "pool" if self.table == "pool" else f"scores_{self.table}"

    @property
    def alias(self) -> str:
        return "p" if self.table == "pool" else f"t_{self.table}"

    @property
    def sql(self) -> str:
        return f'{self.alias}."{self.name}"'


def selectable() -> dict[str, pa.DataType]:
    """Every `table.column` a selection may rank by or filter on, with its Arrow type."""
    found = {f"pool.{name}": schemas.SCHEMAS["pool"].field(name).type for name in POOL_COLUMNS}
    for table, schema in schemas.SCHEMAS.items():
        if table.startswith("scores/"):
            for field in schema:
                if field.name not in NOT_SELECTABLE and not pa.types.is_nested(field.type):  # scalars only
                    found[f"{table.removeprefix('scores/')}.{field.name}"] = field.type
    return found


def parse(reference: str) -> Column:
    known = selectable()
    if reference not in known:
        raise ValueError(f"unknown column {reference!r}; selectable columns: {', '.join(sorted(known))}")
    table, name = reference.split(".", 1)
    return Column(table, name)


def candidates_sql(
    score: str | None, where: list, with_cluster: bool, parameters: dict, skips: dict[str, str] | None = None
) -> tuple[str, set[str]]:
    """SELECT of the candidate rows (id, source, score, cluster) and the views it reads.

    `parameters` receives the conditions' values; the SQL refers to them as $w0, $w1, ...
    `skips` (clean.present) adds the clean-pool conditions: non-kept duplicates, contaminated rows.
    """
    from pipelines.select import clean

    joined: dict[str, Column] = {}
    score_sql = "NULL::DOUBLE"
    if score is not None:
        column = parse(score)
        joined.setdefault(column.table, column)
        score_sql = f"{column.sql}::DOUBLE"
    conditions = []
    for index, condition in enumerate(where):
        column = parse(condition.column)
        joined.setdefault(column.table, column)
        conditions.append(_condition_sql(column, condition, f"w{index}", parameters))
    conditions += clean.conditions(skips or {})
    if with_cluster:
        joined.setdefault("clusters", Column("clusters", "cluster"))
    cluster_sql = 't_clusters."cluster"' if with_cluster else "NULL::INTEGER"
    joins = "".join(
        f" JOIN {c.view} {c.alias} ON {c.alias}.id = p.id" for table, c in sorted(joined.items()) if table != "pool"
    )
    where_sql = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT p.id, p.source, {score_sql} AS score, {cluster_sql} AS cluster FROM pool p{joins}{where_sql}"
    return sql, {"pool", *(c.view for c in joined.values()), *clean.views_read(skips or {})}


def _condition_sql(column: Column, condition, name: str, parameters: dict) -> str:
    if condition.op == "is_null":
        return f"{column.sql} IS NULL"
    if condition.op == "not_null":
        return f"{column.sql} IS NOT NULL"
    if condition.op == "between":
        parameters[f"{name}_low"], parameters[f"{name}_high"] = condition.value
        return f"{column.sql} BETWEEN ${name}_low AND ${name}_high"
    if condition.op == "in":
        parameters[name] = list(condition.value)
        return f"list_contains(${name}, {column.sql})"
    parameters[name] = condition.value
    return f"{column.sql} {SQL_OPERATORS[condition.op]} ${name}"
