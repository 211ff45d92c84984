"""SIGKILL a `winnow run` while ZIP selects, resume it, and compare with a clean computation."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.score import render
from pipelines.select import zip as zip_select
from tests.conftest import winnow, winnow_killed_when

pytestmark = [pytest.mark.ray, pytest.mark.slow]
ZIP = {"method": "zip", "mode": "exact", "budget": 300, "k1": 400, "k2": 30, "k3": 15, "checkpoint_seconds": 0}


def test_killed_zip_resumes_to_the_clean_selection(tmp_path):
    config = tmp_path / "config.yaml"
    document = {
        "name": "zip-resume",
        "run_dir": str(tmp_path / "run"),
        "ingest": {"sources": [{"kind": "mathematics", "rows": 3000, "seed": 2}]},
        "select": {"zip": ZIP},
    }
    config.write_text(yaml.safe_dump(document))
    state = tmp_path / "run" / "_work" / "select-zip" / "state.npz"
    winnow_killed_when(
        lambda: state.exists() and np.load(state)["rounds"] >= 3, "run", str(config), what="ZIP's round 3"
    )
    rounds_done = int(np.load(state)["rounds"])
    assert not (tmp_path / "run" / "selections" / "zip" / "_SUCCESS.json").exists()

    winnow("run", str(config))
    manifest = json.loads((tmp_path / "run" / "selections" / "zip" / "_SUCCESS.json").read_text())
    assert manifest["resumed"] and manifest["rounds"] == 20 and rounds_done < 20

    pool = pq.read_table(tmp_path / "run" / "pool").sort_by("id")
    rows = [t.encode() for t in render.render_column(pool["messages"], "json").to_pylist()]
    clean = zip_select.select(rows, 300, k1=400, k2=30, k3=15, mode="fast")
    picked = pq.read_table(tmp_path / "run" / "selections" / "zip").sort_by("rank")["id"].to_pylist()
    assert picked == [pool["id"][i].as_py() for i in clean]
