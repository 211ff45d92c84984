"""Run an experiment's stages in dependency order; each stage skips itself when up to date."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.config import ExperimentConfig
from pipelines.ingest import stage as ingest_stage

STAGES: dict[str, Callable[[ExperimentConfig], dict]] = {
    "ingest": ingest_stage.run,
}


def run(config: ExperimentConfig, only: list[str] | None = None) -> dict[str, dict]:
    """Run every stage (or those in `only`) in order; returns each stage's manifest."""
    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; stages: {', '.join(STAGES)}")
    return {name: stage(config) for name, stage in STAGES.items() if not only or name in only}
