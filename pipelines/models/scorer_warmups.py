"""The scorers' warm-up models, built by the models stage for a run that scores.

Two scorers read a model trained on a sample of the pool:
- `model_loss` (IFD) may name a `train.warmup` entry: a short SFT into RUN/models/<NAME>
  (pipelines/train/warmup.py);
- `less` always reads its LoRA warm-up, configured by `score.less.warmup`, in
  RUN/models/less_warmup (pipelines/models/less_warmup.py).

Both are training runs, so they are built here, where models are built, and the score stage
only reads them by path (scorer_models.py, less_checkpoints.py). The models stage calls
`build` only when the score stage is among the stages it serves: `winnow train` on a config
with `score.less` trains no warm-up. Each is skipped when up to date (their identities are
their own stages', unchanged by where they are built).
"""

from __future__ import annotations

from pipelines.models import scorer_models


def ifd_warmups(config) -> list[str]:
    """The `train.warmup` names a scorer reads: score.model_loss.model, when it names one."""
    model_loss = config.score.model_loss if config.score is not None else None
    name = model_loss.model if model_loss is not None else None
    return [name] if name and scorer_models.run_model(config, name) == f"train.warmup.{name}" else []


def build(config) -> dict[str, dict]:
    """Build (or skip, when up to date) each warm-up the config's scorers read; {table: manifest}."""
    manifests = {}
    for name in ifd_warmups(config):
        from pipelines.train import warmup  # the train loop's modules load only for a warm-up

        manifests[f"models/{name}"] = warmup.ensure(config, name)
    less = config.score.less if config.score is not None else None
    if less is not None:
        from pipelines.models import less_warmup

        manifests[less_warmup.TABLE] = less_warmup.build(config, less)
    return manifests
