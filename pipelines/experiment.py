"""Run an experiment's stages in dependency order; each stage skips itself when up to date."""

from __future__ import annotations

from collections.abc import Callable

from pipelines import run_lock, storage
from pipelines.config import ExperimentConfig
from pipelines.critique import stage as critique_stage
from pipelines.evaluate import stage as evaluate_stage
from pipelines.ingest import stage as ingest_stage
from pipelines.models import stage as models_stage
from pipelines.report import stage as report_stage
from pipelines.score import stage as score_stage
from pipelines.select import stage as select_stage
from pipelines.train import stage as train_stage

# Each stage returns {table it wrote: that table's manifest}, in dependency order.
STAGES: dict[str, Callable[[ExperimentConfig], dict[str, dict]]] = {
    "ingest": lambda config: {"pool": ingest_stage.run(config)},
    "models": models_stage.run,  # run() tells it the stages it serves: scorer warm-ups only for score
    "score": score_stage.run_all,
    "select": select_stage.run,
    "critique": critique_stage.run,
    "train": train_stage.run,
    "evaluate": lambda config: evaluate_stage.run(config, evaluation_arms(config)),
    "report": report_stage.run,
}


def evaluation_arms(config: ExperimentConfig) -> dict[str, str]:
    """What the evaluate stage compares: each trained arm, and the base model it started from."""
    arms = config.train.arms if config.train is not None else {}
    bases = {f"base-{arm.model}": arm.model for arm in arms.values() if arm.model in config.models}
    trained = {name: storage.join(config.run_dir, "models", name) for name in arms}
    return {**dict(sorted(bases.items())), **trained}


# The stage running now, for messages about an error or an interruption ("interrupted in score").
running: dict[str, str | None] = {"stage": None}


def run(config: ExperimentConfig, only: list[str] | None = None) -> dict[str, dict]:
    """Run every stage (or those in `only`) in order; returns {table: manifest}."""
    unknown = sorted(set(only or []) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; stages: {', '.join(STAGES)}")
    manifests: dict[str, dict] = {}
    chosen = [name for name in STAGES if not only or name in only]
    with run_lock.held(config.run_dir):  # one run at a time in a run folder (pipelines/run_lock.py)
        for name in chosen:
            running["stage"] = name
            if name == "models":  # the stages after it (None: none, build all): it builds what they read
                manifests.update(models_stage.run(config, chosen[chosen.index(name) + 1 :] or None))
            else:
                manifests.update(STAGES[name](config))
    running["stage"] = None
    return manifests
