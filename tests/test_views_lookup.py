"""Looking a few pool rows up by id reads the row groups that hold them, not the whole pool:
ingest's reduce step writes the pool in row groups of dedupe.ROW_GROUP_ROWS rows, each with a
Bloom filter of its ids, and DuckDB skips a row group whose filter holds none of the ids a
small join brings. The named queries that show a few rows' text return what the plain join
(their earlier text, kept here) returned, reading a fraction of the bytes."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines import views
from pipelines.ingest import dedupe

KEPT = 25_000
GROUP_ROWS = 1_000  # dedupe.ROW_GROUP_ROWS here, so that 25,000 rows make 25 row groups

# The named queries as they read before the lookups: each joins the pool to all candidate ids.
PLAIN_CONTAMINATION_EXAMPLES = """
SELECT benchmark, question_id, match, matched_ngrams, round(overlap, 3) AS overlap, id, source, text
FROM (
    SELECT c.benchmark, c.question_id, c.match, c.matched_ngrams, c.overlap, c.id, p.source,
           left(p.messages[1].content, 300) AS text,
           row_number() OVER (PARTITION BY c.benchmark ORDER BY c.overlap DESC, c.id) AS n
    FROM scores_contamination AS c
    JOIN pool AS p USING (id)
    WHERE c.contaminated
)
WHERE n <= 3
ORDER BY benchmark, overlap DESC, id
"""


def _id(n: int) -> str:
    return hashlib.sha256(f"row {n}".encode()).hexdigest()


def _staged_rows(first: int, count: int, rng: random.Random) -> pa.Table:
    """Staged rows `first`..: every tenth repeats an earlier id (a duplicate to drop)."""
    ns = [n - 7 if n % 10 == 9 and n >= 7 else n for n in range(first, first + count)]
    texts = [" ".join(f"w{rng.randrange(5_000)}" for _ in range(60)) for _ in ns]
    return pa.table(
        {
            "id": [_id(n) for n in ns],
            "source": ["gsm8k" if n % 3 else "alpaca" for n in ns],
            "messages": [
                [{"role": "user", "content": f"q{n} {t}"}, {"role": "assistant", "content": t}]
                for n, t in zip(ns, texts, strict=True)
            ],
            "reference": [str(n) if n % 2 else None for n in ns],
            "meta": [json.dumps({"row": n}) for n in ns],
            "seq": list(range(first, first + count)),
        },
        schema=schemas.SCHEMAS["staged_pool"],
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    """A run folder: the pool as dedupe.process writes it from staged files of odd row-group
    sizes, and the score and selection tables the lookup queries read."""
    root = tmp_path_factory.mktemp("lookup")
    staged = root / "work" / "staged" / dedupe.bucket_key(0)
    staged.mkdir(parents=True)
    rng, first = random.Random(0), 0
    for unit, count in enumerate([3_001, 11_111, 7_777, 5_888]):  # 27,777 staged, 2,777 repeats
        pq.write_table(_staged_rows(first, count, rng), staged / f"u-{unit:05d}.parquet", row_group_size=1_234)
        first += count
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dedupe, "ROW_GROUP_ROWS", GROUP_ROWS)
        stats = dedupe.process(0, str(root / "work"))
    assert stats["rows_out"] == KEPT
    (root / "run" / "pool").mkdir(parents=True)
    (root / "work" / "pool" / "part-00000.parquet").rename(root / "run" / "pool" / "part-00000.parquet")
    ids = pq.read_table(root / "run" / "pool", columns=["id"])["id"].to_pylist()
    _contamination(root / "run", ids)
    _near_dup(root / "run", ids)
    _selection(root / "run", ids)
    return str(root / "run")


def _write(run, table_name: str, columns: dict) -> None:
    folder = run.joinpath(*table_name.split("/"))
    folder.mkdir(parents=True)
    schema = schemas.SCHEMAS["selections" if table_name.startswith("selections/") else table_name]
    pq.write_table(pa.table(columns, schema=schema), folder / "part-00000.parquet")


def _contamination(run, ids: list[str]) -> None:
    hits = {
        ids[i]: (bench, i)
        for bench, picks in (("gsm8k", range(3, 25_000, 97)), ("math", range(11, 99, 9)))
        for i in picks
    }
    rows = [hits.get(i) for i in ids]
    _write(run, "scores/contamination", {
        "id": ids, "contaminated": [r is not None for r in rows],
        "benchmark": [r and r[0] for r in rows], "question_id": [r and f"{r[0]}-{r[1] % 5}" for r in rows],
        "matched_ngrams": [r[1] % 7 + 1 if r else 0 for r in rows],
        "overlap": [round((r[1] % 7 + 1) / 7, 6) if r else 0.0 for r in rows],
        "match": [r and "ngram" for r in rows], "matches": [[] for _ in ids],
    })  # fmt: skip


def _near_dup(run, ids: list[str]) -> None:
    """Clusters of 4, 3, 3 and 2 rows spread over the pool; every other row alone."""
    cluster = {i: i for i in ids}
    for members in ([5, 9_000, 17_000, 24_999], [100, 12_345, 20_001], [7, 8, 9], [40, 41]):
        for m in members:
            cluster[ids[m]] = ids[members[0]]
    sizes = Counter(cluster.values())
    _write(run, "scores/near_dup", {
        "id": ids, "cluster": [cluster[i] for i in ids], "cluster_size": [sizes[cluster[i]] for i in ids],
        "keep": [cluster[i] == i for i in ids],
    })  # fmt: skip


def _selection(run, ids: list[str]) -> None:
    picked = ids[::25]
    _write(run, "selections/top_ifd", {"id": picked, "rank": list(range(1, len(picked) + 1))})


def _read(run_dir: str, sql: str, parameters: dict | None = None) -> tuple[list, int]:
    """(rows, bytes DuckDB read from files) of `sql` on a fresh connection."""
    connection = views.connect(run_dir)
    rows = connection.execute(sql, parameters or {}).fetchall()
    plan = connection.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, parameters or {}).fetchall()[0][1]
    connection.close()
    return rows, json.loads(plan)["io"]["total_bytes_read"]


def test_the_pool_is_written_in_row_groups_of_fixed_size_with_bloom_filters(run_dir):
    metadata = pq.ParquetFile(f"{run_dir}/pool/part-00000.parquet").metadata
    assert [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)] == [GROUP_ROWS] * 25
    id_column = metadata.schema.names.index("id")
    assert all(metadata.row_group(g).column(id_column).bloom_filter_offset for g in range(metadata.num_row_groups))


def test_the_pool_keeps_each_ids_first_row_in_input_order(run_dir):
    pool = pq.read_table(f"{run_dir}/pool")
    rows = [json.loads(meta)["row"] for meta in pool["meta"].to_pylist()]
    assert rows == sorted(set(rows)) and len(rows) == KEPT  # each id once, in the order staged


@pytest.fixture(scope="module")
def plain_dir(run_dir, tmp_path_factory) -> str:
    """The same run folder with its pool rewritten as one row group without a Bloom filter."""
    root = tmp_path_factory.mktemp("plain") / "run"
    shutil.copytree(run_dir, root)
    part = root / "pool" / "part-00000.parquet"
    pq.write_table(pq.read_table(part), part, compression="zstd", row_group_size=KEPT)
    return str(root)


def test_a_lookup_of_a_few_ids_skips_the_row_groups_without_them(run_dir, plain_dir):
    ids = [_id(12), _id(13), _id(24_000)]  # in 2 of the 25 row groups
    lookup = "SELECT p.id, p.messages FROM (SELECT unnest($ids) AS id) AS k JOIN pool AS p USING (id) ORDER BY p.id"
    rows, looked_up = _read(run_dir, lookup, {"ids": ids})
    plain_rows, everything = _read(plain_dir, lookup, {"ids": ids})
    assert [row[0] for row in rows] == sorted(ids) and rows == plain_rows
    assert looked_up < everything / 5


def test_contamination_examples_returns_the_plain_joins_rows(run_dir):
    rows, _ = _read(run_dir, views.query_text("contamination_examples"))
    assert rows == _read(run_dir, PLAIN_CONTAMINATION_EXAMPLES)[0] and len(rows) == 6  # three a benchmark


@pytest.mark.parametrize(
    ("query", "parameters"),
    [("contamination_examples", {}), ("near_dup_examples", {}), ("evidence_selection_rows", {"selection": "top_ifd"})],
)
def test_the_text_showing_queries_skip_most_of_the_pools_text(run_dir, plain_dir, query, parameters):
    """Against the one-row-group pool, where every row's text is read, the Bloom-filtered
    pool saves more than half of the bytes of the `messages` column (the queries read the
    score and selection tables whole either way)."""
    rows, looked_up = _read(run_dir, views.query_text(query), parameters)
    plain_rows, plain_bytes = _read(plain_dir, views.query_text(query), parameters)
    _, messages_bytes = _read(plain_dir, "SELECT messages FROM pool")
    assert rows == plain_rows and rows and all(row[-1] for row in rows)  # every row found its text
    assert plain_bytes - looked_up > messages_bytes / 2
