"""The `score.near_dup` and `score.semantic_dup` blocks: MinHash-LSH near-duplicates and
SemDeDup semantic duplicates (docs/cleaning.md says why each default)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.settings import Strict


class KeepRule(Strict):
    """Which row of a duplicate cluster is kept (the others are skipped by selections)."""

    keep: Literal["lowest_id", "best"] = "lowest_id"
    keep_by: str | None = None  # keep: best: the `scorer.column` that ranks a cluster's rows
    keep_order: Literal["max", "min"] = "max"  # keep: best: the highest (max) or lowest (min) value wins

    @model_validator(mode="after")
    def _keep_by_with_best(self):
        if (self.keep == "best") != (self.keep_by is not None):
            raise ValueError("keep: best needs keep_by (a `scorer.column` such as model_loss.ifd), and only it")
        if self.keep_by is not None:
            from pipelines.select.columns import parse

            parse(self.keep_by)  # raises, listing the columns there are
        return self


class NearDupScorer(KeepRule):
    threshold: float = Field(default=0.8, gt=0, le=1)  # Jaccard of word-shingle sets: a pair at or above is a duplicate
    shingle: int = Field(default=5, gt=0)  # words a shingle (5-grams, as Gopher, RefinedWeb and DataTrove use)
    num_perm: int = Field(default=128, gt=0)  # permutations the bands x rows split may use
    bands: int | None = Field(default=None, gt=0)  # None: chosen from the threshold with `rows`
    rows: int | None = Field(default=None, gt=0)
    false_negative_weight: float = Field(default=0.95, gt=0, lt=1)  # misses weigh this much when choosing bands
    seed: int = 1  # the permutations' seed
    text: Literal["conversation", "prompt", "response", "json"] = "conversation"
    max_bucket: int = Field(default=1000, gt=1)  # larger LSH buckets pair each member with the lowest id only
    rows_per_part: int = Field(default=100_000, gt=0)

    @model_validator(mode="after")
    def _consistent(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither (then they are chosen from `threshold`)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} is more than num_perm = {self.num_perm}")
        return self

    def bands_and_rows(self) -> tuple[int, int]:
        if self.bands is not None:
            return self.bands, self.rows
        from pipelines.score.near_dup_minhash import choose_bands

        return choose_bands(self.threshold, self.num_perm, self.false_negative_weight)


class SemanticDupScorer(KeepRule):
    """SemDeDup: rows of one k-means cluster (scores/clusters) whose embeddings' cosine is at
    least `threshold` are duplicates; needs the embedding and clusters scorers."""

    threshold: float = Field(default=0.95, gt=0, le=1)  # cosine of L2-normalised embeddings (SemDeDup's 1 - eps)
    block_mb: float = Field(default=256, gt=0)  # a similarity block's memory: rows x cluster size x 4 bytes
    rows_per_part: int = Field(default=100_000, gt=0)
