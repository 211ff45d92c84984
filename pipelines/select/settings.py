"""The `select:` section: named selections, each a method, a budget and its parameters.

```yaml
select:
  random_1k: {method: random, budget: 1000, seed: 0}
  top_ifd:
    method: top_k
    score: model_loss.ifd
    budget: 0.05                     # a float in (0, 1): a fraction of the pool
    where:
      - {column: model_loss.ifd, op: "<", value: 1}
      - {column: model_loss.truncated, op: "=", value: false}
  km_ifd: {method: top_k, score: model_loss.ifd, budget: 1000, allocation: clusters_equal}
  diverse: {method: kcenter, budget: 1000}
  zip: {method: zip, budget: 1000, mode: fast}
```
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from pipelines.fences import Name
from pipelines.settings import Strict

OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "between", "in", "is_null", "not_null")
ALLOCATIONS = ("global", "source_quotas", "clusters_equal", "clusters_proportional")
EXPORTS = ("parquet", "jsonl", "alpaca", "sharegpt")


def _selectable(column: str) -> str:
    from pipelines.select.columns import parse

    parse(column)  # raises, listing the columns there are
    return column


class Condition(Strict):
    """A filter on a column named `table.column` (e.g. `model_loss.ifd`, `pool.source`)."""

    column: str
    op: Literal[OPERATORS]  # type: ignore[valid-type]
    value: bool | int | float | str | list[bool | int | float | str] | None = None

    @field_validator("column")
    @classmethod
    def _known_column(cls, column: str) -> str:
        return _selectable(column)

    @model_validator(mode="after")
    def _value_fits_operator(self):
        listed = isinstance(self.value, list)
        if self.op in ("is_null", "not_null") and self.value is not None:
            raise ValueError(f"{self.op} takes no value")
        if self.op == "between" and not (listed and len(self.value) == 2):
            raise ValueError("between takes a value [low, high]")
        if self.op == "in" and not (listed and self.value):
            raise ValueError("in takes a non-empty list")
        if self.op not in ("between", "in", "is_null", "not_null") and (listed or self.value is None):
            raise ValueError(f"{self.op} takes one value")
        return self


class Common(Strict):
    budget: int | float  # an int >= 1: rows; a float in (0, 1): a fraction of the pool's rows
    seed: int = 0
    where: list[Condition] = []  # only rows meeting every condition are candidates
    export: list[Literal[EXPORTS]] = []  # type: ignore[valid-type]  # training files under exports/<NAME>/
    # clean pools (docs/selection.md): skip rows that scores/near_dup (or semantic_dup) does not
    # keep, and rows scores/contamination flags; a table not in the run skips nothing
    dedupe: Literal["near", "semantic", "off"] = "near"
    decontaminate: bool = True

    @field_validator("budget")
    @classmethod
    def _budget(cls, budget: int | float) -> int | float:
        if isinstance(budget, float) and not 0 < budget < 1:
            raise ValueError("a fractional budget is a float in (0, 1); give a count as an int")
        if isinstance(budget, int) and budget < 1:
            raise ValueError("a budget is at least 1 row")
        return budget


class Ranked(Common):
    """SQL selectors: rank the candidates, then allocate the budget over the ranking."""

    method: Literal["random", "top_k", "bottom_k"]
    score: str | None = None  # `table.column`, for top_k and bottom_k
    allocation: Literal[ALLOCATIONS] = "global"  # type: ignore[valid-type]
    quotas: dict[str, int | float] = {}  # source_quotas: source -> rows, or fraction of the budget

    @field_validator("score")
    @classmethod
    def _known_score(cls, score: str | None) -> str | None:
        return score if score is None else _selectable(score)

    @model_validator(mode="after")
    def _consistent(self):
        if (self.method == "random") != (self.score is None):
            raise ValueError("top_k and bottom_k need `score`; random takes none")
        if (self.allocation == "source_quotas") != bool(self.quotas):
            raise ValueError("`quotas` goes with allocation: source_quotas, and only with it")
        return self


class Greedy(Common):
    checkpoint_seconds: float = Field(default=30.0, ge=0)  # how often a run saves where it stands


class KCenter(Greedy):
    """Greedy farthest-point selection (k-center) over the embedding table."""

    method: Literal["kcenter"]
    start_from: Name | None = None  # an earlier selection's rows seed it
    dtype: Literal["float32", "float16"] = "float32"  # how the embeddings are held in memory
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_rows: int = Field(default=2048, gt=0)  # rows in a block of k-center's screens (kcenter.py)
    num_cpus: float = Field(default=1, gt=0)
    num_gpus: float = Field(default=0, ge=0)


class Zip(Greedy):
    """ZIP (Entropy Law): greedy selection that keeps the selected set's compression ratio low."""

    method: Literal["zip"]
    mode: Literal["exact", "fast"] = "fast"
    k1: int = Field(default=10_000, gt=0)
    k2: int = Field(default=200, gt=0)
    k3: int = Field(default=100, gt=0)
    level: int = Field(default=9, ge=0, le=9)
    text: Literal["conversation", "prompt", "response", "json"] = "json"
    workers: int | None = Field(default=None, gt=0)  # compression threads; default: the task's CPUs
    num_cpus: float = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _stages_nest(self):
        if not self.k3 <= self.k2 <= self.k1:
            raise ValueError(f"ZIP needs k3 <= k2 <= k1 (got k1={self.k1}, k2={self.k2}, k3={self.k3})")
        return self


Selection = Annotated[Ranked | KCenter | Zip, Field(discriminator="method")]
SelectConfig = dict[Name, Selection]
