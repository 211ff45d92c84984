"""The `ingest:` section of an experiment config."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from pipelines.fences import Name
from pipelines.ingest.mathematics import ALL_MODULES, DEFAULT_MODULES, DIFFICULTY_LEVELS
from pipelines.settings import Strict, repeated

# A JSON Lines line or JSON array item past this is one "row too long" reject, skipped unread:
# 16 MiB holds a max_text_chars conversation (100,000 characters, at most 12 bytes each as JSON
# escapes: 1.2 MB) many times over, while reading and parsing a line at the limit took 49 MB
# here (docs/ingest.md, "Bounded reading").
MAX_LINE_BYTES = 16 * 2**20
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


class ConversationsSource(Strict):
    """Seeded conversations recombined from a real corpus (pipelines/ingest/conversations.py)."""

    kind: Literal["conversations"]
    name: Name = "conversations"
    rows: int = Field(gt=0)
    seed: int = 0
    corpus: list[str] = Field(min_length=1)  # files, folders, globs of pool data in any ingest format
    exclude: list[str] = []  # benchmark test files: corpus records matching their questions are dropped
    prompt_median_chars: int = Field(default=120, gt=0)  # log-normal targets, per turn
    response_median_chars: int = Field(default=360, gt=0)
    length_sigma: float = Field(default=0.9, gt=0, le=3)
    multi_turn_fraction: float = Field(default=0.2, ge=0, le=1)
    max_turns: int = Field(default=4, ge=1, le=16)  # user turns of a multi-turn row
    near_dup_fraction: float = Field(default=0.05, ge=0, le=0.5)  # f: f(1 - f) of rows edit the row before
    max_corpus_bytes: int = Field(default=256 * 2**20, gt=0)  # the files' size and the text a worker holds


Source = Annotated[FileSource | MathematicsSource | ConversationsSource, Field(discriminator="kind")]


class IngestConfig(Strict):
    sources: list[Source] = Field(min_length=1)
    max_text_chars: int = Field(default=100_000, gt=0)  # a longer conversation is rejected
    max_line_bytes: int = Field(default=MAX_LINE_BYTES, ge=1024)  # a longer line or item: rejected unread
    rows_per_unit: int = Field(default=10_000, gt=0)  # generated rows per resumable unit
    bucket_bytes: int = Field(default=64 * 2**20, gt=0)  # input bytes per dedupe bucket

    @model_validator(mode="after")
    def _unique_names(self):
        if twice := repeated(source.name for source in self.sources):
            raise ValueError(f"source names must be unique; repeated: {twice}")
        return self

    @model_validator(mode="after")
    def _lines_hold_texts(self):
        # a conversation of max_text_chars needs at least that many bytes on its line
        if self.max_line_bytes < self.max_text_chars:
            raise ValueError(
                f"max_line_bytes ({self.max_line_bytes}) is below max_text_chars ({self.max_text_chars}): "
                "rows that long could never be read; raise max_line_bytes or lower max_text_chars"
            )
        return self
