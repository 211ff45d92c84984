"""The LESS warm-up's checkpoints as the score stage reads them: by path, never trained there.

The models stage builds them (pipelines/models/less_warmup.py) before the score stage runs,
from the `score.less.warmup` block, into the table `models/less_warmup/`. The LESS scorer
only reads that table: its manifest must be finished and carry the identity the current
config gives (the warm-up settings and the base model's fingerprint), else the scorer stops
with a line naming `score.less.warmup` and the command that builds it. Both sides take the
identity from here, so what the models stage skips as up to date is what the scorer accepts.

This module imports nothing from train/ or score/: reading checkpoints by path needs neither.
"""

from __future__ import annotations

from pipelines import runs, storage
from pipelines.models import loading

TABLE = "models/less_warmup"
STAGE = "less-warmup"
STAGE_VERSION = 1
BUILD_IT = (  # the score job alone (python -m ray_jobs.score) trains nothing: name the job that builds it too
    "the models stage builds it (winnow score, winnow run --stage models, or python -m ray_jobs.models)"
)


class WarmupNotBuilt(FileNotFoundError):  # a FileNotFoundError: reported as a user's error (exit 2)
    """A model a scorer reads from the run folder is not built there: no finished LESS warm-up
    that matches score.less.warmup, or no train.warmup model a scorer names (scorer_models.py)."""


def base_model(config, settings) -> loading.ModelRef:
    """The model the warm-up's LoRA trains on: `score.less.warmup.model`, else `score.less.model`."""
    return loading.resolve(settings.warmup.model or settings.model, config.models, config.run_dir)


def identity(config, settings) -> dict:
    """The warm-up's stage identity: its settings and the base model, not the pool (a grown pool keeps it)."""
    name = TABLE.removeprefix("models/")
    if name in config.models:
        raise ValueError(f"models: the name {name!r} is the LESS warm-up's table")
    fingerprint = {"model": base_model(config, settings).fingerprint()}
    return runs.stage_identity(STAGE, settings.warmup.model_dump(), fingerprint, STAGE_VERSION)


def read(config, settings) -> dict:
    """The finished warm-up's manifest for these settings; WarmupNotBuilt when it is missing or stale."""
    manifest = runs.read_manifest(config.run_dir, TABLE)
    where = storage.join(config.run_dir, *TABLE.split("/"))
    if manifest is None:
        raise WarmupNotBuilt(f"score.less: no finished LESS warm-up in {where}; {BUILD_IT} from score.less.warmup")
    if manifest.get("identity") != identity(config, settings):
        raise WarmupNotBuilt(
            f"score.less: the LESS warm-up in {where} was built from other score.less.warmup settings "
            f"or another base model; {BUILD_IT} again"
        )
    return manifest


def checkpoint_dirs(run_dir: str, manifest: dict) -> list[str]:
    """Each kept checkpoint's folder (LoRA adapter and Adam state), in step order."""
    return [storage.join(run_dir, *TABLE.split("/"), c["name"]) for c in manifest["checkpoints"]]
