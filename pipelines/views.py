"""DuckDB over a run folder: one view per table present, and the named queries in sql/.

Views: `pool`; `rejects` (every stage's rejects together); one view per other table
folder, named by its path with "/" -> "_" (e.g. `scores_compression`, `selections_random`);
`selections` (selection, id, rank: every selection together); `evals` (run, arm, seed,
benchmark and each question's result: every eval/<RUN>/<BENCH> together, a run being an arm
or one seed of it, `<arm>@s<seed>`); and `manifests` (one row per finished table: its stage
manifest's counts and seconds, and the whole manifest as JSON).
Paths never enter SQL text: views are built from relations, and queries take values as
$parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines import runs, storage

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SKIP = ("_work",)


def table_folders(run_dir: str) -> dict[tuple[str, ...], list[str]]:
    """Table folder (its path's parts) -> Parquet files, for every table folder in the run."""
    folders: dict[tuple[str, ...], list[str]] = {}
    base = storage.resolve(run_dir)[1].rstrip("/")
    for location in storage.list_files(run_dir, ".parquet", recursive=True):
        relative = storage.resolve(location)[1][len(base) + 1 :].split("/")
        if relative[0] in SKIP or len(relative) < 2 or relative[-1].startswith(("_", ".")):
            continue
        folders.setdefault(tuple(relative[:-1]), []).append(location)
    return folders


def table_files(run_dir: str, folders: dict[tuple[str, ...], list[str]] | None = None) -> dict[str, list[str]]:
    """View name -> Parquet files, for every table folder in the run."""
    tables: dict[str, list[str]] = {}
    for folder, files in (folders if folders is not None else table_folders(run_dir)).items():
        name = "rejects" if folder[0] == "rejects" else "_".join(folder)
        tables.setdefault(name, []).extend(files)
    return tables


def connect(run_dir: str) -> duckdb.DuckDBPyConnection:
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    connection = duckdb_connection()
    folders = table_folders(run_dir)
    tables = table_files(run_dir, folders)
    for name, files in sorted(tables.items()):
        relation(connection, files).create_view(name)
    selections = [name for name in sorted(tables) if name.startswith(SELECTION_PREFIX)]
    if selections:
        _union_of_selections(connection, selections).create_view("selections")
    evaluated = sorted(folder for folder in folders if len(folder) == 3 and folder[0] == "eval")
    if evaluated:
        _union_of_evals(connection, {folder: folders[folder] for folder in evaluated}).create_view("evals")
    connection.from_arrow(manifests(run_dir)).create_view("manifests")
    return connection


SELECTION_PREFIX = "selections_"
MANIFEST_COLUMNS = ("stage", "rows_in", "rows_out", "rows_rejected", "wall_seconds", "cpu_seconds", "gpu_seconds")


def _union_of_selections(connection: duckdb.DuckDBPyConnection, names: list[str]) -> duckdb.DuckDBPyRelation:
    """(selection, id, rank) of every selection; names enter as constants, not SQL text."""
    parts = [
        connection.view(name).select(
            duckdb.ConstantExpression(name.removeprefix(SELECTION_PREFIX)).alias("selection"),
            duckdb.ColumnExpression("id"),
            duckdb.ColumnExpression("rank"),
        )
        for name in names
    ]
    union = parts[0]
    for part in parts[1:]:
        union = union.union(part)
    return union


EVAL_COLUMNS = ("question_id", "correct", "extracted", "gold", "status")


def _union_of_evals(connection: duckdb.DuckDBPyConnection, folders: dict[tuple[str, ...], list[str]]):
    """(run, arm, seed, benchmark, question_id, correct, extracted, gold, status) of every
    eval/<RUN>/<BENCH>; names enter as constants, not SQL text."""
    from pipelines.train.settings import arm_of, seed_of

    parts = []
    for (_, run, benchmark), files in folders.items():
        seed = seed_of(run)
        constants = [
            duckdb.ConstantExpression(run).alias("run"),
            duckdb.ConstantExpression(arm_of(run)).alias("arm"),
            duckdb.ConstantExpression(seed).cast("INTEGER").alias("seed"),
            duckdb.ConstantExpression(benchmark).alias("benchmark"),
        ]
        columns = [duckdb.ColumnExpression(column) for column in EVAL_COLUMNS]
        parts.append(relation(connection, files).select(*constants, *columns))
    union = parts[0]
    for part in parts[1:]:
        union = union.union(part)
    return union


def manifests(run_dir: str) -> pa.Table:
    """One row per finished table in the run: where it is, its manifest's figures, the manifest."""
    base = storage.resolve(run_dir)[1].rstrip("/")
    rows = []
    for location in storage.list_files(run_dir, runs.MANIFEST, recursive=True):
        folder = storage.resolve(location)[1][len(base) + 1 :].rsplit("/", 1)[0]
        if folder.split("/")[0] in SKIP:
            continue
        manifest = storage.read_json(location)
        figures = {key: manifest.get(key) for key in MANIFEST_COLUMNS}
        rows.append({"table": folder, **figures, "manifest": json.dumps(manifest, sort_keys=True, default=str)})
    schema = pa.schema(
        [("table", pa.string()), ("stage", pa.string())]
        + [(key, pa.int64() if key.startswith("rows") else pa.float64()) for key in MANIFEST_COLUMNS[1:]]
        + [("manifest", pa.string())]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _spill_folder() -> str:
    """This process's private folder (0700) under the system's temporary folder for DuckDB's
    spills, removed at exit. DuckDB's default, `.tmp` in the working directory, litters the
    user's folder and fails where the code folder is read-only (the k8s image)."""
    if _spill["folder"] is None:
        import atexit
        import shutil
        import tempfile

        _spill["folder"] = tempfile.mkdtemp(prefix="winnow-duckdb-")
        atexit.register(shutil.rmtree, _spill["folder"], ignore_errors=True)
    return _spill["folder"]


_spill: dict = {"folder": None}


def duckdb_connection(keep_order: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to disk rather than growing past 2 GB; without
    `keep_order`, results may stream out of order, which lets big queries use less memory."""
    connection = duckdb.connect()
    connection.execute("SET memory_limit = '2GB'")
    connection.execute("SET temp_directory = $folder", {"folder": _spill_folder()})
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
