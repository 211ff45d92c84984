"""SIGKILL a `winnow run` while it scores, resume it, and compare with a clean run."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import winnow, winnow_killed_when

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROWS = 4000  # enough parts that the batched scorer is still running when it is killed


def _config(tmp_path, name):
    document = {
        "name": name,
        "run_dir": str(tmp_path / name),
        "ingest": {"sources": [{"kind": "mathematics", "rows": ROWS, "seed": 9}]},
        "models": {"tiny": {"build": {"vocab_size": 500, "train_rows": 500}}},
        "score": {
            "compression": {"rows_per_part": 100},
            "model_loss": {
                "model": "tiny",
                "max_length": 64,
                "rows_per_call": 60,
                "rows_per_part": 60,
                "batch_size": 8,
                "threads": 1,
            },
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_killed_scoring_resumes_to_the_clean_result(tmp_path):
    killed = _config(tmp_path, "killed")
    parts_dir = tmp_path / "killed" / "_work" / "score-model_loss" / "parts"
    winnow_killed_when(lambda: len(list(parts_dir.glob("part-*.parquet"))) >= 3, "run", str(killed))
    written = len(list(parts_dir.glob("part-*.parquet")))
    assert not (tmp_path / "killed" / "scores" / "model_loss" / "_SUCCESS.json").exists()

    resumed = winnow("run", str(killed))
    assert "score compression: up to date" in resumed.stderr  # finished before the kill
    winnow("run", str(_config(tmp_path, "clean")))

    manifest = yaml.safe_load((tmp_path / "killed" / "scores" / "model_loss" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["rows_scored"] <= ROWS - written * 60
    for name in ("compression", "model_loss"):
        ours = pq.read_table(tmp_path / "killed" / "scores" / name).sort_by("id").to_pylist()
        clean = pq.read_table(tmp_path / "clean" / "scores" / name).sort_by("id").to_pylist()
        assert len(ours) == len(clean) > ROWS * 0.9
        for a, b in zip(ours, clean, strict=True):
            for key, value in a.items():
                if isinstance(value, float):  # batches differ after a resume: float noise only
                    assert value == pytest.approx(b[key], abs=1e-5), key
                else:
                    assert value == b[key], key
