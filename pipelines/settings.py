"""The base of every config model: unknown keys are errors, values are immutable."""

from collections import Counter

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def repeated(values) -> list:
    """The values that occur more than once, sorted (for "must be unique" errors)."""
    return sorted(value for value, count in Counter(values).items() if count > 1)
