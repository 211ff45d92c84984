"""The `ingest:` section of an experiment config."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from pipelines.fences import Name
from pipelines.ingest.mathematics import ALL_MODULES, DEFAULT_MODULES, DIFFICULTY_LEVELS
from pipelines.settings import Strict, repeated

FORMATS = ("auto", "openai", "sharegpt", "alpaca", "gsm8k", "math", "qa", "cft")


def _known_modules(modules: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [m for m in modules if m not in ALL_MODULES]
    if unknown or not modules:
        raise ValueError(f"unknown modules {unknown}; allowed: {', '.join(ALL_MODULES)}")
    return modules


# mathematics-dataset modules, checked against those it has (the source and the benchmark)
Modules = Annotated[tuple[str, ...], AfterValidator(_known_modules)]
Difficulty = Literal[tuple(DIFFICULTY_LEVELS)]  # type: ignore[valid-type]


class FileSource(Strict):
    kind: Literal["files"]
    name: Name
    paths: list[str] = Field(min_length=1)  # files, folders, globs (** too), s3:// or gs:// URIs
    format: Literal[FORMATS] = "auto"  # type: ignore[valid-type]
    hf_splits: list[str] | None = None  # splits of a DatasetDict saved with save_to_disk
    optional: bool = False  # when the paths match nothing: skip the source instead of failing
    max_rows_per_file: int | None = Field(default=None, gt=0)  # read only each file's first rows


class MathematicsSource(Strict):
    kind: Literal["mathematics"]
    name: Name = "mathematics"
    rows: int = Field(gt=0)
    seed: int = 0
    modules: Modules = DEFAULT_MODULES
    difficulty: Difficulty = "any"
    split: Literal["train", "heldout"] = "train"
    heldout_fraction: float = Field(default=0.05, gt=0, le=0.5)


Source = Annotated[FileSource | MathematicsSource, Field(discriminator="kind")]


class IngestConfig(Strict):
    sources: list[Source] = Field(min_length=1)
    max_text_chars: int = Field(default=100_000, gt=0)  # a longer conversation is rejected
    rows_per_unit: int = Field(default=10_000, gt=0)  # generated rows per resumable unit
    bucket_bytes: int = Field(default=64 * 2**20, gt=0)  # input bytes per dedupe bucket

    @model_validator(mode="after")
    def _unique_names(self):
        if twice := repeated(source.name for source in self.sources):
            raise ValueError(f"source names must be unique; repeated: {twice}")
        return self
