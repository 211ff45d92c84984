import pyarrow as pa
import pytest

from pipelines import storage


@pytest.mark.parametrize(
    "pattern,path,matches",
    [
        ("/d/*.jsonl", "/d/a.jsonl", True),
        ("/d/*.jsonl", "/d/sub/a.jsonl", False),
        ("/d/**/*.jsonl", "/d/sub/deeper/a.jsonl", True),
        ("/d/**/*.jsonl", "/d/a.jsonl", True),
        ("/d/part-[0-9].parquet", "/d/part-7.parquet", True),
        ("/d/part-[!0-9].parquet", "/d/part-7.parquet", False),
        ("/d/?.json", "/d/ab.json", False),
    ],
)
def test_glob_semantics(pattern, path, matches):
    assert bool(storage.glob_to_regex(pattern).fullmatch(path)) is matches


def test_file_infos_expand_folders_and_globs(tmp_path):
    for name in ["a.jsonl", "b.json", "sub/c.jsonl", "sub/deep/d.jsonl"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    names = lambda infos: [i.path[len(str(tmp_path)) + 1 :] for i in infos]  # noqa: E731
    assert names(storage.file_infos(str(tmp_path))) == ["a.jsonl", "b.json", "sub/c.jsonl", "sub/deep/d.jsonl"]
    assert names(storage.file_infos(str(tmp_path / "*.jsonl"))) == ["a.jsonl"]
    assert names(storage.file_infos(str(tmp_path / "**" / "*.jsonl"))) == ["a.jsonl", "sub/c.jsonl", "sub/deep/d.jsonl"]
    assert storage.file_infos(str(tmp_path / "missing" / "*.jsonl")) == []


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    storage.write_parquet_atomic(pa.table({"x": [1]}), str(tmp_path / "t" / "p.parquet"))
    storage.write_json_atomic({"a": 1}, str(tmp_path / "t" / "m.json"))
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["m.json", "p.parquet"]
    assert storage.read_json(str(tmp_path / "t" / "m.json")) == {"a": 1}


def test_a_killed_writers_temporaries_are_swept_inside_the_run_only(tmp_path):
    """A SIGKILL mid-write leaves `<name>.tmp-<pid>-<hex>`; a commit must not publish it."""
    parts = tmp_path / "run" / "_work" / "parts"
    storage.write_parquet_atomic(pa.table({"x": [1]}), str(parts / "part-a.parquet"))
    for stray in ("part-b.parquet.tmp-123-0123456789ab", "deeper/part-c.parquet.tmp", "part-d.parquet.tmp-x"):
        (parts / stray).parent.mkdir(parents=True, exist_ok=True)
        (parts / stray).write_bytes(b"half")
    removed = storage.remove_temporaries(str(parts), within=str(tmp_path / "run"))
    assert sorted(r.rsplit("/", 1)[-1] for r in removed) == [
        "part-b.parquet.tmp-123-0123456789ab",
        "part-c.parquet.tmp",
    ]
    assert sorted(p.name for p in parts.rglob("*") if p.is_file()) == ["part-a.parquet", "part-d.parquet.tmp-x"]
    with pytest.raises(Exception, match="not inside the run folder"):
        storage.remove_temporaries(str(parts), within=str(tmp_path / "elsewhere"))


def test_schemes_pyarrow_lacks_go_through_fsspec():
    """memory:// is fsspec's in-process filesystem: the same code path az:// or hf:// take."""
    from pipelines import runs, views

    run_dir = "memory://bucket/run-fsspec"
    table = pa.table({"id": ["a", "b", "c"], "source": ["x", "x", "y"]})
    storage.write_parquet_atomic(table, storage.join(run_dir, "_work", "pool", "part-0.parquet"))
    storage.move(storage.join(run_dir, "_work", "pool"), storage.join(run_dir, "pool"))
    storage.write_json_atomic({"stage": "ingest", "rows_out": 3}, storage.join(run_dir, "pool", runs.MANIFEST))
    assert storage.list_files(run_dir, ".parquet", recursive=True) == [f"{run_dir}/pool/part-0.parquet"]
    assert [i.size > 0 for i in storage.file_infos(f"{run_dir}/pool/*.parquet")] == [True]
    connection = views.connect(run_dir)
    assert connection.execute("SELECT source, count(*) FROM pool GROUP BY 1 ORDER BY 1").fetchall() == [
        ("x", 2),
        ("y", 1),
    ]
    assert connection.execute("SELECT rows_out FROM manifests").fetchall() == [(3,)]
