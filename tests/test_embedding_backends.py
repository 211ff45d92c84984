"""The embedding scorer's backends against plain float32 SentenceTransformer.encode, on the real
all-MiniLM-L6-v2: torch bfloat16 (the default), ONNX float32 and int8 (exported once into the run
folder), and the ONNX path through the score stage on a local Ray."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines import experiment, fences, runs
from pipelines.models import loading
from pipelines.score import embedding, embedding_onnx, render
from pipelines.score.settings import EmbeddingScorer
from tests.conftest import rows_config

TEXTS = [
    "What is 7 * 6?\nSeven sixes are 42.\n#### 42",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?\nNatalia sold 48/2 = 24 clips in May.\n"
    "Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72",
    "Explain how photosynthesis works, in two sentences.",
    "Write a short poem about the sea.",
]


@pytest.fixture(scope="module")
def model():
    location = loading.default_embedding_model()
    reference = embedding.TorchEncoder(location, "cpu", "float32", None).encode(TEXTS, 4)
    return location, loading.ModelRef(location).fingerprint(), reference


def cosines(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    found = found / np.linalg.norm(found, axis=1, keepdims=True)
    return np.sum(found * reference, axis=1)


def test_torch_bfloat16_agrees_with_float32(model):
    import torch

    location, _, reference = model
    encoder = embedding.TorchEncoder(location, "cpu", "bfloat16", None)
    assert next(encoder.model.parameters()).dtype == torch.bfloat16  # the precision is not ignored
    found = encoder.encode(TEXTS, 4)
    assert cosines(found, reference).min() >= 0.999
    # encode's bfloat16 normalisation leaves norms ~1e-3 off (1.0037 here); unit_rows mends them
    assert not np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-4)
    assert np.allclose(np.linalg.norm(embedding.unit_rows(found), axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_a_rows_vector_does_not_depend_on_the_rows_beside_it(model, precision):
    """A resumed run's calls hold other rows than a clean run's: its vectors must be the same."""
    location = model[0]
    encoder = embedding.TorchEncoder(location, "cpu", precision, 128)
    texts = [f"{text} ({n})" for n in range(6) for text in TEXTS]
    together = encoder.encode(texts, 8)
    assert np.array_equal(encoder.encode(texts[5:], 3), together[5:])
    assert np.array_equal(encoder.encode(texts[::-1], 8)[::-1], together)
    assert np.array_equal(encoder.encode(texts[7:8], 1), together[7:8])


def test_onnx_export_is_cached_in_the_run_folder_and_agrees(model, tmp_path):
    location, fingerprint, reference = model
    run_dir = str(tmp_path / "run")
    left = tmp_path / "run" / "models" / "_embedding-onnx" / "a.onnx.tmp-123-0123456789ab"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a model, from a killed export")
    target = embedding_onnx.ensure_exported(location, fingerprint, "int8", run_dir)
    assert target == embedding_onnx.cache_location(run_dir, fingerprint, "int8")
    assert os.listdir(os.path.dirname(target)) == [os.path.basename(target)]  # no temporary left, nor kept
    written = os.stat(target).st_mtime_ns
    assert embedding_onnx.ensure_exported(location, fingerprint, "int8", run_dir) == target
    assert os.stat(target).st_mtime_ns == written  # kept, not exported again
    assert embedding_onnx.cache_location(run_dir, fingerprint, "float32") != target
    operators = {node.op_type for node in onnx.load(target).graph.node}
    assert "MatMulInteger" in operators  # quantised, not the float32 export under int8's name
    found = embedding_onnx.OnnxEncoder(location, target, 1, "cpu", None).encode(TEXTS, 2)
    # int8 (dynamic, per channel) measured min 0.985 over 2,000 GSM8K rows (bench/embedding.py):
    # below the 0.99 the default must meet, which is why it is an option and not the default
    assert cosines(found, reference).min() >= 0.98
    elsewhere, linked = tmp_path / "elsewhere", tmp_path / "linked"
    elsewhere.mkdir()
    (linked / "run").mkdir(parents=True)
    (linked / "run" / "models").symlink_to(elsewhere)  # a models folder that leads out of the run
    with pytest.raises(fences.PathOutsideRunError):
        embedding_onnx.ensure_exported(location, fingerprint, "int8", str(linked / "run"))
    assert not any(elsewhere.iterdir())


def test_settings_pair_backends_with_their_precisions():
    assert EmbeddingScorer().precision == "bfloat16"
    assert EmbeddingScorer(backend="onnx").precision == "float32"
    assert EmbeddingScorer(backend="onnx", precision="int8").precision == "int8"
    for wrong in ({"backend": "onnx", "precision": "bfloat16"}, {"precision": "int8"}):
        with pytest.raises(ValidationError, match="precision"):
            EmbeddingScorer(**wrong)


@pytest.mark.ray
def test_the_score_stage_runs_the_onnx_backend(ray_local, model, tmp_path):
    location, _, _ = model
    rows = [{"messages": [{"role": "user", "content": text}]} for text in TEXTS]
    score = {"embedding": {"backend": "onnx", "text": "prompt", "threads": 1}}
    config = rows_config(tmp_path, "onnx-test", rows, score=score)
    experiment.run(config, only=["ingest", "score"])
    pool = {row["id"]: row for row in pq.read_table(f"{config.run_dir}/pool").to_pylist()}
    table = pq.read_table(f"{config.run_dir}/scores/embedding").to_pylist()
    texts = [render.render(render.turns_of(pool[row["id"]]["messages"]), "prompt") for row in table]
    reference = embedding.TorchEncoder(location, "cpu", "float32", None).encode(texts, 4)
    found = np.array([row["embedding"] for row in table], np.float32)
    assert np.allclose(np.linalg.norm(found, axis=1), 1.0, atol=1e-6)
    assert (np.sum(found * reference, axis=1) > 0.9999).all()
    assert len(os.listdir(f"{config.run_dir}/models/_embedding-onnx")) == 1  # exported once, by the driver
    # the scorer's identity holds backend and precision: switching either recomputes the table
    identities = {
        runs.stable_hash(embedding.scorer(config, EmbeddingScorer(**settings)).settings)
        for settings in ({"backend": "onnx"}, {"backend": "onnx", "precision": "int8"}, {}, {"precision": "float32"})
    }
    assert len(identities) == 4


def test_int8_keeping_the_feed_forward_outputs_float32(model, tmp_path):
    location, fingerprint, reference = model
    exported = embedding_onnx.ensure_exported(location, fingerprint, "float32", str(tmp_path / "run"))
    kept = embedding_onnx.ffn_output_matmuls(exported)
    assert len(kept) == 6 and all("/layer." in name for name in kept)  # one a MiniLM layer
    target = str(tmp_path / "int8-ffn-out-fp32.onnx")
    embedding_onnx.quantise(exported, target, kept)
    nodes = onnx.load(target).graph.node
    assert {node.name for node in nodes if node.op_type == "MatMul"} >= set(kept)  # left float32
    assert sum(node.op_type == "MatMulInteger" for node in nodes) == 30  # the other 5 linears a layer
    found = embedding_onnx.OnnxEncoder(location, target, 1, "cpu", None).encode(TEXTS, 2)
    assert cosines(found, reference).min() >= 0.99  # 0.996 at worst on 384 GSM8K rows
