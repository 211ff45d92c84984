"""DuckDB over a run folder: one view per table present, and the named queries in sql/.

Views: `pool`; `rejects` (every stage's rejects together); and one view per other table
folder, named by its path with "/" -> "_" (e.g. `scores_compression`). Paths never enter
SQL text: views are built from relations, and queries take values as $parameters.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines import storage

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SKIP = ("_work",)


def table_files(run_dir: str) -> dict[str, list[str]]:
    """View name -> Parquet files, for every table folder in the run."""
    tables: dict[str, list[str]] = {}
    base = storage.resolve(run_dir)[1].rstrip("/")
    for location in storage.list_files(run_dir, ".parquet", recursive=True):
        relative = storage.resolve(location)[1][len(base) + 1 :].split("/")
        if relative[0] in SKIP or len(relative) < 2 or relative[-1].startswith(("_", ".")):
            continue
        folder = relative[:-1]
        name = "rejects" if folder[0] == "rejects" else "_".join(folder)
        tables.setdefault(name, []).append(location)
    return tables


def connect(run_dir: str) -> duckdb.DuckDBPyConnection:
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    connection = duckdb_connection()
    for name, files in sorted(table_files(run_dir).items()):
        relation(connection, files).create_view(name)
    return connection


def duckdb_connection(keep_order: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to disk rather than growing past 2 GB; without
    `keep_order`, results may stream out of order, which lets big queries use less memory."""
    connection = duckdb.connect()
    connection.execute("SET memory_limit = '2GB'")
    if not keep_order:
        connection.execute("SET preserve_insertion_order = false")
    return connection


def relation(connection: duckdb.DuckDBPyConnection, files: list[str]) -> duckdb.DuckDBPyRelation:
    if not storage.is_uri(files[0]):
        return connection.read_parquet(files, union_by_name=True)
    import pyarrow.dataset as ds

    filesystem, _ = storage.resolve(files[0])  # object stores: DuckDB scans pyarrow's dataset
    paths = [storage.resolve(f)[1] for f in files]
    dataset = ds.dataset(paths, filesystem=filesystem, format="parquet")
    return connection.from_arrow(dataset)


def views(connection: duckdb.DuckDBPyConnection) -> list[str]:
    rows = connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
    return [name for (name,) in rows]


def named_queries() -> dict[str, Path]:
    return {path.stem: path for path in sorted(SQL_DIR.glob("*.sql"))}


def query_text(query: str) -> str:
    """A query's SQL: the text itself, or the contents of sql/<name>.sql."""
    path = named_queries().get(query)
    return path.read_text(encoding="utf-8") if path else query


def run_query(connection: duckdb.DuckDBPyConnection, query: str, parameters: dict | None = None):
    """(column names, rows) of a query or named query, values bound as $parameters."""
    result = connection.execute(query_text(query), parameters or {})
    return [d[0] for d in result.description], result.fetchall()
