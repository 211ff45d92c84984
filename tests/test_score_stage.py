"""The score stage on a real local Ray: every scorer checked row by row against a direct computation."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import config as config_module
from pipelines import experiment, views
from pipelines.models.loading import default_embedding_model
from pipelines.score import render
from tests.test_model_loss import reference_loss

pytestmark = [pytest.mark.ray, pytest.mark.slow]
MARKER, MAX_LENGTH = "Assistant: ", 96
EXTRA_ROWS = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Prime above 10?"},
            {"role": "assistant", "content": "11"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Q1?"},
            {"role": "assistant", "content": "A1."},
            {"role": "user", "content": "And 7 * 6?"},
            {"role": "assistant", "content": "7 * 6 = 42"},
        ]
    },
    {"messages": [{"role": "user", "content": "A question with no answer yet?"}]},
    {
        "messages": [
            {"role": "user", "content": "List: " + ", ".join(str(i) for i in range(80))},
            {"role": "assistant", "content": "Eighty numbers."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Go."},
            {"role": "assistant", "content": " ".join(f"step {i}" for i in range(60))},
        ]
    },
]


def experiment_config(
    tmp_path, run_name: str, extra_files: list[str], **score_overrides
) -> config_module.ExperimentConfig:
    sources = [{"kind": "mathematics", "rows": 240, "seed": 5}]
    sources += [{"kind": "files", "name": f"extra{i}", "paths": [p]} for i, p in enumerate(extra_files)]
    score = {
        "compression": {},
        # float32: the row-by-row check below is against plain float32 encode (bf16, the default,
        # is checked at cosine >= 0.999 in tests/test_embedding_backends.py)
        "embedding": {"batch_size": 16, "threads": 1, "rows_per_part": 100, "precision": "float32"},
        "model_loss": {
            "model": "tiny",
            "max_length": MAX_LENGTH,
            "batch_size": 4,
            "rows_per_call": 40,
            "rows_per_part": 80,
            "threads": 1,
            "response_marker": MARKER,
        },
        "clusters": {"k": 6, "seed": 1},
        **score_overrides,
    }
    document = {
        "name": "score-test",
        "run_dir": str(tmp_path / run_name),
        "ray": {"num_cpus": 2},
        "ingest": {"sources": sources},
        "models": {"tiny": {"build": {"vocab_size": 500, "train_rows": 200}}},
        "score": score,
    }
    path = tmp_path / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return config_module.load(path)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def scored(ray_local, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("score")
    config = experiment_config(tmp_path, "run", [write_jsonl(tmp_path / "extra.jsonl", EXTRA_ROWS)])
    manifests = experiment.run(config)
    return config, manifests


def table(config, name):
    return pq.read_table(f"{config.run_dir}/{name}", schema=None).to_pylist()


def pool_by_id(config):
    return {row["id"]: row for row in table(config, "pool")}


def test_every_scorer_writes_one_row_per_pool_row(scored):
    config, manifests = scored
    pool = pool_by_id(config)
    for name in ("compression", "embedding", "model_loss", "clusters"):
        rows = table(config, f"scores/{name}")
        assert sorted(r["id"] for r in rows) == sorted(pool), name
        assert manifests[f"scores/{name}"]["rows_out"] == len(pool)
    connection = views.connect(config.run_dir)
    assert {"scores_compression", "scores_embedding", "scores_model_loss", "scores_clusters"} <= set(
        views.views(connection)
    )
    _, rows = views.run_query(
        connection, "SELECT count(*) FROM pool JOIN scores_model_loss USING (id) WHERE ifd IS NOT NULL"
    )
    assert rows[0][0] > 200


def test_compression_equals_zlib_on_the_same_bytes(scored):
    config, _ = scored
    pool = pool_by_id(config)
    for row in table(config, "scores/compression"):
        raw = render.conversation(render.turns_of(pool[row["id"]]["messages"])).encode()
        assert (row["n_bytes"], row["n_bytes_compressed"]) == (len(raw), len(zlib.compress(raw, 9)))
        assert row["compression_ratio"] == len(raw) / len(zlib.compress(raw, 9))


def test_embedding_equals_sentence_transformers(scored):
    from sentence_transformers import SentenceTransformer

    config, _ = scored
    pool = pool_by_id(config)
    rows = table(config, "scores/embedding")
    texts = [render.conversation(render.turns_of(pool[r["id"]]["messages"])) for r in rows]
    direct = SentenceTransformer(default_embedding_model(), device="cpu").encode(texts, normalize_embeddings=True)
    ours = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert ours.shape == direct.shape == (len(pool), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (np.sum(ours * direct, axis=1) > 0.9999).all()


def test_model_loss_equals_the_batch_of_one_reference_for_every_row(scored):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, _ = scored
    folder = f"{config.run_dir}/models/tiny"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    pool = pool_by_id(config)
    rows = table(config, "scores/model_loss")
    assert any(r["truncated"] for r in rows) and any(r["n_response_tokens"] == 0 for r in rows)
    for row in rows:
        messages = pool[row["id"]]["messages"]
        if messages[-1]["role"] != "assistant":
            assert row["loss_given_prompt"] is None and row["ifd"] is None
            continue
        response = messages[-1]["content"]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        start = len(tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True))
        given, cut = reference_loss(tokenizer, model, full, start, start + len(response), False, MAX_LENGTH)
        alone, alone_cut = reference_loss(
            tokenizer, model, MARKER + response, len(MARKER), len(MARKER + response), True, MAX_LENGTH
        )
        assert row["truncated"] == (cut or alone_cut)
        for ours, reference in ((row["loss_given_prompt"], given), (row["loss_alone"], alone)):
            assert (ours is None) == (reference is None)
            if reference is not None:
                assert abs(ours - reference) < 1e-4
        if not row["truncated"]:
            assert row["ifd"] == pytest.approx(given / alone, rel=1e-6)


def test_clusters_are_nearest_centroids(scored):
    config, _ = scored
    centroids = np.load(f"{config.run_dir}/scores/clusters/_centroids.npy")
    embeddings = {r["id"]: np.array(r["embedding"], np.float32) for r in table(config, "scores/embedding")}
    rows = table(config, "scores/clusters")
    assert centroids.shape == (6, 384)
    for row in rows:
        distances = np.linalg.norm(centroids - embeddings[row["id"]], axis=1)
        assert distances[row["cluster"]] == pytest.approx(distances.min(), abs=1e-4)
        assert row["distance"] == pytest.approx(distances.min(), abs=1e-4)
    assert len({r["cluster"] for r in rows}) == 6


def test_a_second_run_is_skipped(scored):
    config, manifests = scored
    again = experiment.run(config, ["score"])
    assert again == {k: v for k, v in manifests.items() if k.startswith("scores/")}


def test_a_grown_pool_scores_only_its_new_rows(scored, tmp_path):
    config, first = scored
    old_parts = {path: path.read_bytes() for name in ("compression", "clusters") for path in _part_files(config, name)}
    centroids = np.load(f"{config.run_dir}/scores/clusters/_centroids.npy")
    new_rows = [
        {
            "messages": [
                {"role": "user", "content": f"New question {i}?"},
                {"role": "assistant", "content": f"New answer {i}."},
            ]
        }
        for i in range(7)
    ]
    extra = [source.paths[0] for source in config.ingest.sources if source.kind == "files"]
    grown = experiment_config(tmp_path, "unused", [*extra, write_jsonl(tmp_path / "new.jsonl", new_rows)])
    grown = grown.model_copy(update={"run_dir": config.run_dir})
    manifests = experiment.run(grown)
    assert manifests["pool"]["rows_out"] == first["pool"]["rows_out"] + 7
    for name in ("compression", "embedding", "model_loss", "clusters"):
        assert manifests[f"scores/{name}"]["rows_scored"] == 7, name
        assert manifests[f"scores/{name}"]["rows_out"] == first[f"scores/{name}"]["rows_out"] + 7
    for path, content in old_parts.items():  # earlier parts are kept byte for byte
        assert path.read_bytes() == content
    assert np.array_equal(np.load(f"{config.run_dir}/scores/clusters/_centroids.npy"), centroids)
    assert manifests["models/tiny"] == first["models/tiny"]  # it learnt from the first 200 rows: unchanged


def _part_files(config, name):
    from pathlib import Path

    return sorted(Path(config.run_dir, "scores", name).glob("part-*.parquet"))
