"""SIGKILL `winnow score` while near_dup signs (no clustering result yet) and again while it
writes its parts (result saved), resume each time, and compare with a clean run's table."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import winnow, winnow_killed_when

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 6000
WORK = ("_work", "score-near_dup")


def _config(tmp_path, name):
    document = {
        "name": name,
        "run_dir": str(tmp_path / name),
        "ingest": {"sources": [{"kind": "mathematics", "rows": ROWS, "seed": 4}]},
        "score": {"near_dup": {"rows_per_part": 150, "threshold": 0.7}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _table(run_dir):
    return pq.read_table(run_dir / "scores" / "near_dup").sort_by("id").to_pylist()


def test_near_dup_killed_twice_resumes_to_the_clean_table(tmp_path):
    clean, killed = _config(tmp_path, "clean"), _config(tmp_path, "killed")
    for config in (clean, killed):
        winnow("ingest", str(config))
    winnow("score", str(clean))
    work = tmp_path.joinpath("killed", *WORK)

    winnow_killed_when(lambda: len(list((work / "bands").glob("*.parquet"))) >= 3, "score", str(killed), what="signing")
    assert not (work / "near_dup_result.parquet").exists(), "killed too late: the result was already saved"

    parts = work / "parts"
    winnow_killed_when(lambda: len(list(parts.glob("part-*.parquet"))) >= 2, "score", str(killed), what="writing parts")
    assert (work / "near_dup_result.parquet").exists()
    assert not (tmp_path / "killed" / "scores" / "near_dup" / "_SUCCESS.json").exists()
    written = len(list(parts.glob("part-*.parquet")))

    winnow("score", str(killed))
    manifest = yaml.safe_load((tmp_path / "killed" / "scores" / "near_dup" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["rows_scored"] < manifest["rows_out"], (manifest, written)
    ours, theirs = _table(tmp_path / "killed"), _table(tmp_path / "clean")
    assert ours == theirs and len(ours) == manifest["rows_out"]
    assert sum(not row["keep"] for row in ours) > 0  # the generated pool has near-duplicates to find
