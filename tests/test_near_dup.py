"""Near-duplicates without Ray: LSH + verification against brute-force Jaccard, the keep rules,
the table contract (Ray Data's part of the scorer is in tests/test_select_clean.py)."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipelines.score import near_dup, near_dup_minhash
from pipelines.score.near_dup_settings import NearDupScorer
from tests.near_dup_planted import planted_texts, rendered_hashes, rendered_shingles, true_pairs, write_pool


def _settings(**overrides) -> dict:
    return near_dup.task_settings(NearDupScorer(rows_per_part=1000, **overrides))


def _cluster(tmp_path, texts, settings, keep_files=()):
    pool = tmp_path / "pool.parquet"
    ids = write_pool(texts, pool)
    (tmp_path / "work" / "bands").mkdir(parents=True)
    rendered = [f"User: {t}" for t in texts]
    for start in range(0, len(ids), 700):  # several band files, as the Ray Data blocks write them
        table = near_dup_minhash.band_rows(ids[start : start + 700], rendered[start : start + 700], settings)
        pq.write_table(table, tmp_path / "work" / "bands" / f"part-{start}.parquet")
    near_dup.cluster_rows([str(pool)], str(tmp_path / "work"), settings, list(keep_files))
    near_dup.write_parts([str(pool)], str(tmp_path / "work"), str(tmp_path / "parts"), settings)
    return ids, pq.read_table(tmp_path / "parts", schema=schemas.SCHEMAS["scores/near_dup"])


def test_defaults_choose_bands_for_the_threshold():
    assert NearDupScorer().bands_and_rows() == (16, 8)  # datasketch's _optimal_param at weights 0.05/0.95
    assert NearDupScorer(false_negative_weight=0.5).bands_and_rows() == (9, 13)  # its default weights
    with pytest.raises(ValueError, match="num_perm"):
        NearDupScorer(bands=20, rows=8)
    with pytest.raises(ValueError, match="keep_by"):
        NearDupScorer(keep="best")


def test_normalising_ignores_case_punctuation_and_spacing():
    assert near_dup_minhash.normalise("Ｈello,   WORLD!\n x") == "hello world x"
    assert near_dup_minhash.shingles("a b", 5) == {"a b"}


def test_planted_duplicates_recall_and_precision_against_brute_force(tmp_path):
    texts = planted_texts(distinct=2000, copies=600, seed=3)
    settings = _settings()
    ids, table = _cluster(tmp_path, texts, settings)
    truth = true_pairs(rendered_shingles(texts, 5), settings["threshold"])
    assert len(truth) > 300  # copies edited at up to ~2% stay above 0.8 (a word edit breaks 5 shingles)
    cluster_of = dict(zip(table["id"].to_pylist(), table["cluster"].to_pylist(), strict=True))
    found = sum(cluster_of[ids[a]] == cluster_of[ids[b]] for a, b in truth)
    assert found / len(truth) >= 0.95
    # precision: every verified pair is a true pair (LSH false positives never reach the table)
    pairs = near_dup.candidate_pairs(str(tmp_path / "work" / "bands"), settings["max_bucket"])
    verified = near_dup.verified_pairs(pairs, rendered_hashes(ids, texts, 5), settings["threshold"])
    position = {row_id: n for n, row_id in enumerate(ids)}
    verified_set = {
        (position[a], position[b])
        for a, b in zip(verified["left_id"].to_pylist(), verified["right_id"].to_pylist(), strict=True)
    }
    assert verified_set <= truth and len(verified_set) / len(truth) >= 0.95


def test_table_contract_and_lowest_id_kept(tmp_path):
    base = " ".join(f"word{i}" for i in range(60))
    texts = [base, "something else entirely " * 5, base + " tail", base.replace("word7 ", "x ")]
    ids, table = _cluster(tmp_path, texts, _settings())
    schemas.check("scores/near_dup", table)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ids  # one row a pool row
    for member in (ids[0], ids[2], ids[3]):
        assert rows[member]["cluster"] == ids[0] and rows[member]["cluster_size"] == 3
        assert rows[member]["keep"] == (member == ids[0])
    assert rows[ids[1]] == {"id": ids[1], "cluster": ids[1], "cluster_size": 1, "keep": True}


def test_keep_best_by_a_score_column(tmp_path):
    base = " ".join(f"word{i}" for i in range(60))
    texts = [base, base + " tail", base + " other tail", "unrelated " * 9]
    ids = [f"{i:08d}" for i in range(4)]
    scores = tmp_path / "compression.parquet"
    ratios = [1.5, 2.5, float("nan"), 9.0]
    pq.write_table(
        pa.table({"id": ids, "n_bytes": [1] * 4, "n_bytes_compressed": [1] * 4, "compression_ratio": ratios}), scores
    )
    settings = _settings(keep="best", keep_by="compression.compression_ratio", keep_order="max")
    _, table = _cluster(tmp_path, texts, settings, [str(scores)])
    keep = dict(zip(table["id"].to_pylist(), table["keep"].to_pylist(), strict=True))
    assert keep == {ids[0]: False, ids[1]: True, ids[2]: False, ids[3]: True}
    assert set(table.filter(pa.array(np.array(table["cluster_size"]) == 3))["cluster"].to_pylist()) == {ids[1]}
