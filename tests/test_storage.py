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
