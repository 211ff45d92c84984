"""A scorer's model by name, as the score stage reads it: by path, never trained there.

A name is a `models:` entry, a folder or a hub name (pipelines/models/loading.py), or a model
this run trains: a `train.warmup` entry (the IFD method scores with a short warm-up model,
METHODS.md) or a `train.arms` entry, read from RUN/models/<NAME>. The models stage builds a
warm-up a scorer names before the score stage runs (pipelines/models/scorer_warmups.py); the
train stage trains the arms. A run model that is not there stops the scorer with
WarmupNotBuilt (a user's error, exit 2) naming the config block and the command that builds it.

This module imports nothing from train/ or score/: reading a model by path needs neither.
"""

from __future__ import annotations

from pipelines import runs, storage
from pipelines.models import loading
from pipelines.models.less_checkpoints import BUILD_IT, WarmupNotBuilt


def run_model(config, name: str, train=None) -> str | None:
    """`train.warmup.<NAME>` or `train.arms.<NAME>` when `name` is a model this run trains (under
    `train`, else the config's `train:`), else None. The train stage resolves its base models
    by this rule too (pipelines/train/stage.py: model_ref), so both read a name alike."""
    train = train if train is not None else getattr(config, "train", None)
    if train is None or name in config.models:  # a `models:` entry wins
        return None
    for block in ("warmup", "arms"):
        if name in getattr(train, block):
            return f"train.{block}.{name}"
    return None


def resolve(config, name: str, field: str) -> loading.ModelRef:
    """The model `field` (e.g. score.model_loss.model) names; a run model must be built already."""
    block = run_model(config, name)
    if block is None:
        return loading.resolve(name, config.models, config.run_dir)
    where = storage.join(config.run_dir, "models", name)
    if runs.read_manifest(config.run_dir, f"models/{name}") is None:
        builder = BUILD_IT if block.startswith("train.warmup") else "the train stage trains it (winnow train)"
        raise WarmupNotBuilt(f"{field}: {name!r} is the model of {block}, and it is not built in {where}; {builder}")
    return loading.ModelRef(where)
