"""The costly scorers' builders for the score stage (SelectIT, LESS): they only dispatch.

- `selectit_scorer`: one Ray Data actor pool a model, chained in one streaming pipeline (each
  pool appends its model's rating distributions to the batch), then a plain step that turns
  them into scores (pipelines/score/selectit.py).
- `less_scorer`: the warm-up checkpoints read by path (built before, by the models stage:
  pipelines/models/less_warmup.py), the target sets' mean gradient features in one Ray task,
  then pool rows in an actor pool.

A scorer with `sample_fraction` < 1 scores a seeded sample of the rows; the draw lives below
every scorer, in pipelines/score/sampling.py, so the actor modules this file dispatches to
never import it back.
"""

from __future__ import annotations

from pipelines import fault_tolerance
from pipelines.models import less_checkpoints, loading
from pipelines.score import parts, sampling
from pipelines.score.runner import Scorer

COLUMNS = ["id", "messages"]  # what both read from the pool


def selectit_scorer(config, settings) -> Scorer:
    from pipelines.score import selectit
    from pipelines.score.selectit_model import SelectitActor

    refs = [loading.resolve(model, config.models, config.run_dir) for model in settings.models]
    prompts = selectit.load_prompts(settings.prompts, settings.k)
    keys = ("answer_prefix", "template", "max_length", "batch_size", "max_batch_tokens", "dtype")
    actor_settings = {**_placement(settings), **{key: getattr(settings, key) for key in keys}, "prompts": prompts}

    def score(files, parts_dir, progress):
        def apply(dataset):
            for index, ref in enumerate(refs):  # one actor pool a model, all streaming at once
                dataset = dataset.map_batches(
                    SelectitActor,
                    fn_constructor_args=(ref.location, ref.trust_remote_code, index, actor_settings),
                    **actor_pool(settings, "score selectit"),
                )
            combine = {"n_models": len(refs), "alpha": settings.alpha, "weights": settings.weights}
            return dataset.map_batches(selectit.combine, batch_format="pyarrow", num_cpus=0.25, fn_kwargs=combine)

        return _write(files, apply, parts_dir, "scores/selectit", settings, progress)

    fingerprint = {
        "scorer": "selectit",
        "models": [ref.fingerprint() for ref in refs],
        "weights": settings.weights,
        "prompts": prompts,
        "alpha": settings.alpha,
        **{key: actor_settings[key] for key in ("answer_prefix", "template", "max_length", "dtype")},
        **sampling.fingerprint(settings),
    }
    return Scorer("selectit", fingerprint, "pool", COLUMNS, score)


def less_scorer(config, settings) -> Scorer:
    import ray

    from pipelines.score import less, less_targets

    warm = less_checkpoints.read(config, settings)  # built by the models stage; read here by path only
    base = less_checkpoints.base_model(config, settings)
    model = {
        "base": base.location,
        "trust_remote_code": base.trust_remote_code,
        "checkpoints": less_checkpoints.checkpoint_dirs(config.run_dir, warm),
        "lrs": [c["lr"] for c in warm["checkpoints"]],
    }
    targets = {name: less_targets.read(name, t, config.run_dir) for name, t in settings.targets.items()}
    keys = ("dim", "seed", "max_length", "template", "batch_size", "rows_per_chunk", "cache_mb")
    actor_settings = {**_placement(settings), **{key: getattr(settings, key) for key in keys}}

    def score(files, parts_dir, progress):
        task = ray.remote(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus)(less.target_means)
        means = ray.get(task.remote(model, targets, actor_settings))["means"]

        def apply(dataset):
            return dataset.map_batches(
                less.LessActor,
                fn_constructor_args=(model, means, actor_settings),
                **actor_pool(settings, "score less"),
            )

        return _write(files, apply, parts_dir, "scores/less", settings, progress)

    fingerprint = {
        "scorer": "less",
        "warmup": {key: warm["identity"][key] for key in ("config_hash", "inputs_hash", "code_version")},
        "targets": {name: less_targets.fingerprint(rows) for name, rows in targets.items()},
        **{key: actor_settings[key] for key in ("dim", "seed", "max_length", "template")},
        **sampling.fingerprint(settings),
    }
    return Scorer("less", fingerprint, "pool", COLUMNS, score)


def _placement(settings) -> dict:
    keys = ("device", "num_gpus", "num_cpus", "threads", "sample_fraction", "sample_seed")
    return {key: getattr(settings, key) for key in keys}


def actor_pool(settings, label: str) -> dict:
    """map_batches options of a scorer's model actors (`rows_per_call` a call, `concurrency`
    actors), refused first where the pool would starve the reads (embedded Ray)."""
    import ray.data

    pool_cpus = settings.concurrency * settings.num_cpus
    setting = f"score.{label.split()[-1]}.num_cpus x concurrency"
    fault_tolerance.refuse_starving_pool(label, setting, pool_cpus, parts.ACTOR_IO_CPUS)
    return {
        "batch_format": "pyarrow",
        "batch_size": settings.rows_per_call,
        "compute": ray.data.ActorPoolStrategy(size=settings.concurrency),
        "num_cpus": settings.num_cpus,
        "num_gpus": settings.num_gpus,
        **fault_tolerance.actor_options(),
    }


def _write(files, apply, parts_dir: str, table: str, settings, progress) -> float:
    rows_per_block = settings.rows_per_call  # one block a call, so every actor gets work
    return parts.map_and_write(
        files, COLUMNS, apply, parts_dir, table, settings.rows_per_part, progress, rows_per_block=rows_per_block
    )
