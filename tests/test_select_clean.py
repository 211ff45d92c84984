"""Clean pools on a real local Ray: the near-duplicate scorer on a small run (Ray Data's
signing, the clustering task, the runner's commit), then selections that skip non-kept and
contaminated rows by default, and keep them with `dedupe: off` / `decontaminate: false`."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines import config as config_module
from pipelines import experiment, runs, storage
from tests.conftest import rows_config

BASE = " ".join(f"word{i}" for i in range(80))
TEXTS = [BASE, BASE + " and a tail", BASE.replace("word40 ", "changed "), *[f"distinct row {i} " * 3 for i in range(9)]]


def _config(tmp_path, selections: dict) -> config_module.ExperimentConfig:
    rows = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}]} for t in TEXTS]
    return rows_config(tmp_path, "clean-test", rows, score={"near_dup": {"rows_per_part": 5}}, select=selections)


def _write_contamination(run_dir: str, contaminated_id: str, pool_ids: list[str]) -> None:
    """A scores/contamination table by hand, following the contract (its scorer is another part)."""
    flagged = [i == contaminated_id for i in pool_ids]
    table = pa.table(
        {
            "id": pool_ids,
            "contaminated": flagged,
            "benchmark": ["gsm8k" if f else None for f in flagged],
            "question_id": ["q1" if f else None for f in flagged],
            "matched_ngrams": pa.array([5 if f else 0 for f in flagged], pa.int32()),
            "overlap": [1.0 if f else 0.0 for f in flagged],
            "match": ["ngram" if f else None for f in flagged],
        }
    )
    _write_table(run_dir, "scores/contamination", table)


def _write_table(run_dir: str, name: str, table: pa.Table) -> None:
    """A finished table by hand: its Parquet and a manifest, as a stage commits them."""
    folder = storage.join(run_dir, *name.split("/"))
    storage.make_dirs(folder)
    pq.write_table(table, f"{folder}/part-0.parquet")
    identity = runs.stage_identity(name, {"by": "hand"}, {}, 1)
    storage.write_json_atomic({"identity": identity, "rows_out": table.num_rows}, f"{folder}/{runs.MANIFEST}")


def test_selections_skip_non_kept_and_contaminated_rows_by_default(tmp_path):
    """The SQL methods need no Ray: a pool, scores/compression and scores/near_dup by hand."""
    from pipelines.select import stage as select_stage

    ids = [f"{i:02d}" for i in range(10)]
    config = _config(
        tmp_path,
        {
            "clean": {"method": "random", "budget": 100},
            "top": {"method": "top_k", "score": "compression.compression_ratio", "budget": 100},
            "raw": {"method": "random", "budget": 100, "dedupe": "off", "decontaminate": False},
            "no_dedupe": {"method": "random", "budget": 100, "dedupe": "off"},
        },
    )
    run_dir = config.run_dir
    _write_table(run_dir, "pool", pa.table({"id": ids, "source": ["rows"] * 10}))
    ratios = [float(i) for i in range(10)]
    _write_table(run_dir, "scores/compression", pa.table({"id": ids, "compression_ratio": ratios}))
    before = select_stage.run(config)  # no cleaning tables yet: nothing skipped, and said so
    assert len(pq.read_table(f"{run_dir}/selections/clean")) == 10
    assert "not in the run" in before["selections/clean"]["clean"]["dedupe"]["note"]

    cluster = ["00", "00", "02", "02", "00", *ids[5:]]  # rows 01, 03, 04 are near-duplicates not kept
    near = pa.table({"id": ids, "cluster": cluster, "cluster_size": [3, 3, 2, 2, 3, 1, 1, 1, 1, 1]})
    near = near.append_column("keep", pa.array([c == i for c, i in zip(cluster, ids, strict=True)]))
    _write_table(run_dir, "scores/near_dup", near.cast(schemas.SCHEMAS["scores/near_dup"]))
    _write_contamination(run_dir, "07", ids)
    manifests = select_stage.run(config)  # the new tables are inputs: every selection is rebuilt
    chosen = {name: pq.read_table(f"{run_dir}/selections/{name}")["id"].to_pylist() for name in config.select}
    clean = set(ids) - {"01", "03", "04", "07"}
    assert set(chosen["clean"]) == set(chosen["top"]) == clean
    assert chosen["top"] == sorted(clean, reverse=True)  # the ranking is untouched, only candidates go
    assert set(chosen["raw"]) == set(ids) and set(chosen["no_dedupe"]) == set(ids) - {"07"}
    report = manifests["selections/clean"]["clean"]
    assert report["dedupe"] == {"setting": "near", "table": "scores/near_dup", "removed": 3}
    assert report["decontaminate"] == {"setting": True, "table": "scores/contamination", "removed": 1}
    assert manifests["selections/raw"]["clean"]["dedupe"]["note"] == "off"


@pytest.mark.ray
def test_near_dup_scorer_on_ray_then_a_clean_zip_selection(ray_local, tmp_path):
    config = _config(tmp_path, {"clean_zip": {"method": "zip", "budget": 100}})
    first = experiment.run(config, only=["ingest", "score"])["scores/near_dup"]
    run_dir = config.run_dir
    pool_ids = sorted(pq.read_table(f"{run_dir}/pool", columns=["id"])["id"].to_pylist())
    near = pq.read_table(f"{run_dir}/scores/near_dup").to_pylist()
    assert sorted(r["id"] for r in near) == pool_ids and len(pool_ids) == len(TEXTS)
    dropped = {r["id"] for r in near if not r["keep"]}
    clustered = [r for r in near if r["cluster_size"] == 3]
    assert len(dropped) == 2 and len(clustered) == 3 and len({r["cluster"] for r in clustered}) == 1
    assert clustered[0]["cluster"] == min(r["id"] for r in clustered)  # the lowest id is kept
    assert experiment.run(config, only=["score"])["scores/near_dup"] == first  # up to date: skipped, not re-run

    experiment.run(config, only=["select"])
    chosen = set(pq.read_table(f"{run_dir}/selections/clean_zip")["id"].to_pylist())
    assert chosen == set(pool_ids) - dropped
