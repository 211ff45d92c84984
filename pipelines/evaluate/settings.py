"""The `evaluate:` section: which benchmarks, how to generate, how to grade."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from pipelines.evaluate.benchmarks import FORMATS
from pipelines.fences import Name
from pipelines.generate.settings import EngineConfig
from pipelines.ingest.mathematics import DEFAULT_MODULES
from pipelines.ingest.settings import Difficulty, Modules
from pipelines.settings import Strict, repeated

ARM_MODEL = "(each arm's model)"


class FileBenchmark(Strict):
    """A benchmark file: JSON Lines, JSON or Parquet, local or s3:// / gs://."""

    kind: Literal["file"] = "file"
    name: Name
    path: str
    format: Literal[("auto", *FORMATS)] = "auto"  # type: ignore[valid-type]
    limit: int | None = Field(default=None, gt=0)  # first N questions; overrides the section's
    optional: bool = False  # when the file is absent: skip the benchmark instead of failing


class MathematicsBenchmark(Strict):
    """Held-out questions of the generated `mathematics` source (offline runs). Keep
    `heldout_fraction` equal to the training source's: then no question can be in both."""

    kind: Literal["mathematics"]
    name: Name = "mathematics_heldout"
    rows: int = Field(gt=0)
    seed: int = 0
    modules: Modules = DEFAULT_MODULES
    difficulty: Difficulty = "any"
    heldout_fraction: float = Field(default=0.05, gt=0, le=0.5)
    limit: int | None = Field(default=None, gt=0)


def _benchmark_kind(value) -> str:
    """A benchmark without `kind` is a file."""
    return value.get("kind", "file") if isinstance(value, dict) else getattr(value, "kind", "file")


Benchmark = Annotated[
    Annotated[FileBenchmark, Tag("file")] | Annotated[MathematicsBenchmark, Tag("mathematics")],
    Discriminator(_benchmark_kind),
]


class EvaluateConfig(Strict):
    benchmarks: list[Benchmark] = Field(min_length=1)
    limit: int | None = Field(default=None, gt=0)  # first N questions of every benchmark; None: all
    engine: EngineConfig  # `model` may be left out: each arm's model replaces it
    max_tokens: int = Field(default=2048, gt=0)  # the CFT study's limit; decoding is greedy
    seed: int = 0
    grading_timeout_s: float = Field(default=5.0, gt=0)  # per answer, all checks together
    grading_workers: int = Field(default=2, gt=0)  # threads, each with its own math-verify process
    # Every arm is compared with `baseline` on the same questions (docs/evaluation.md). None: the arm
    # trained on a random selection where there is one, else the base model.
    baseline: Name | None = None
    alpha: float = Field(default=0.05, gt=0, lt=1)  # significance level, after Holm over the comparisons
    resamples: int = Field(default=10_000, ge=100)  # paired bootstrap of each difference, seeded by `seed`

    @model_validator(mode="before")
    @classmethod
    def _engine_model_from_arms(cls, data):
        engine = data.get("engine") if isinstance(data, dict) else None
        if isinstance(engine, dict) and "model" not in engine:
            data = {**data, "engine": {**engine, "model": ARM_MODEL}}
        return data

    @model_validator(mode="after")
    def _unique_names(self):
        if twice := repeated(benchmark.name for benchmark in self.benchmarks):
            raise ValueError(f"benchmark names must be unique; repeated: {twice}")
        return self
