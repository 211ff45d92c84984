"""The score stage: every scorer named in the config, in order (clusters need embeddings)."""

from __future__ import annotations

from pipelines import fault_tolerance
from pipelines.config import ExperimentConfig
from pipelines.models import scorer_models
from pipelines.ray_runtime import ensure_ray
from pipelines.score import (
    clusters,
    compression,
    contamination_benchmarks,
    costly,
    embedding,
    model_loss,
    parts,
    sampling,
)
from pipelines.score.near_dup import scorer as near_dup_scorer
from pipelines.score.runner import Scorer, run
from pipelines.score.semantic_dup import scorer as semantic_dup_scorer

ORDER = (
    "compression",
    "embedding",
    "model_loss",
    "clusters",
    "selectit",
    "less",
    "near_dup",
    "semantic_dup",
    "contamination",
)
POOL_COLUMNS = ["id", "messages"]


def run_all(config: ExperimentConfig) -> dict:
    """Run each configured scorer; returns {scores/<name>: manifest}."""
    if config.score is None:
        return {}
    manifests = {}
    for name in ORDER:
        settings = getattr(config.score, name)
        if settings is not None:
            ensure_ray(config.ray)
            manifests[f"scores/{name}"] = run(config.run_dir, BUILDERS[name](config, settings))
            if name in FOUND:
                _say_found(config.run_dir, name)
    return manifests


def _compression(config, settings) -> Scorer:
    def score(files, parts_dir, progress):
        def apply(dataset):
            return dataset.map_batches(
                compression.score_batch,
                batch_format="pyarrow",
                batch_size=None,  # a whole read block: a batch size would keep Ray Data from fusing the read in
                fn_kwargs={"level": settings.level, "text": settings.text},
                **fault_tolerance.task_options(),
            )

        return parts.map_and_write(
            files,
            POOL_COLUMNS,
            apply,
            parts_dir,
            "scores/compression",
            settings.rows_per_part,
            progress,
            io_cpus=1,  # no rows_per_block: read, score and write fuse into one task a part
        )

    return Scorer(
        "compression",
        {"scorer": "compression", "level": settings.level, "text": settings.text},
        "pool",
        POOL_COLUMNS,
        score,
    )


def _model_loss(config, settings) -> Scorer:
    ref = scorer_models.resolve(config, settings.model, "score.model_loss.model")  # a warm-up: built by models
    keys = (
        "max_length",
        "batch_size",
        "max_batch_tokens",
        "template",
        "response_marker",
        "response_tokens",
        "dtype",
        "device",
        "num_gpus",
        "num_cpus",
        "threads",
        "sample_fraction",
        "sample_seed",
        "engine",
        "cpu_kv_cache_gib",
    )
    actor_settings = {key: getattr(settings, key) for key in keys}
    columns = [*POOL_COLUMNS, "meta"] if settings.template == "alpaca" else POOL_COLUMNS  # alpaca renders from meta
    engine_env = {}
    if settings.engine == "vllm":
        from pipelines.generate.vllm_engine import actor_env
        from pipelines.score.vllm_losses import engine_config

        engine_env = actor_env(engine_config(ref.location, actor_settings))

    def score(files, parts_dir, progress):
        def apply(dataset):
            return dataset.map_batches(
                model_loss.ModelLossActor,
                fn_constructor_args=(ref.location, ref.trust_remote_code, actor_settings),
                **costly.actor_pool(settings, "score model_loss"),
                **engine_env,
            )

        return parts.map_and_write(
            files,
            columns,
            apply,
            parts_dir,
            "scores/model_loss",
            settings.rows_per_part,
            progress,
            rows_per_block=settings.rows_per_call,  # one block a call, so every actor gets work
        )

    fingerprint = {
        "scorer": "model_loss",
        "model": ref.fingerprint(),
        "max_length": settings.max_length,
        "template": settings.template,
        "response_marker": settings.response_marker,
        **({"response_tokens": "prefix"} if settings.response_tokens == "prefix" else {}),  # old identities hold
        "dtype": settings.dtype,
        **({"engine": "vllm"} if settings.engine == "vllm" else {}),  # equal to 3e-5, not bit for bit
        **sampling.fingerprint(settings),  # in the identity, so in the manifest too
    }
    return Scorer("model_loss", fingerprint, "pool", columns, score)


def _clusters(config, settings) -> Scorer:
    import ray

    from pipelines import runs

    embedding_manifest = runs.read_manifest(config.run_dir, "scores/embedding") or {"identity": {}}
    task_settings = {
        "k": settings.k,
        "seed": settings.seed,
        "iterations": settings.iterations,
        "max_points_per_centroid": settings.max_points_per_centroid,
        "rows_per_part": 50_000,
    }

    def score(files, parts_dir, progress):
        task = ray.remote(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus)(clusters.fit_and_assign)
        result = ray.get(task.remote(files, parts_dir, task_settings, max(1, int(settings.num_cpus))))
        progress.advance(result["rows"])
        return result["cpu_seconds"]

    fingerprint = {
        "scorer": "clusters",
        **{k: v for k, v in task_settings.items() if k != "rows_per_part"},
        "embedding": embedding_manifest["identity"].get("config_hash"),
    }
    return Scorer("clusters", fingerprint, "scores/embedding", ["id", "embedding"], score)


FOUND = {  # what a cleaning scorer found, said on the console: (flagged, total)
    "near_dup": (
        "SELECT count(*) FILTER (WHERE cluster_size > 1), count(*) FILTER (WHERE NOT keep), count(*) "
        "FROM scores_near_dup",
        "score near_dup: {0:,} of {2:,} rows have a near-duplicate; {1:,} not kept (selections skip them)",
    ),
    "semantic_dup": (
        "SELECT count(*) FILTER (WHERE cluster_size > 1), count(*) FILTER (WHERE NOT keep), count(*) "
        "FROM scores_semantic_dup",
        "score semantic_dup: {0:,} of {2:,} rows have a semantic duplicate; {1:,} not kept "
        "(selections with dedupe: semantic skip them)",
    ),
    "contamination": (
        "SELECT count(*) FILTER (WHERE contaminated), count(*) FROM scores_contamination",
        "score contamination: {0:,} of {1:,} rows hold a benchmark question (selections skip them; "
        "winnow sql RUN contamination)",
    ),
}


def _say_found(run_dir: str, name: str) -> None:
    from pipelines import views
    from pipelines.progress import note

    query, sentence = FOUND[name]
    note(sentence.format(*views.connect(run_dir).execute(query).fetchone()))


BUILDERS = {
    "compression": _compression,
    "embedding": embedding.scorer,  # its backends and cached ONNX export live there
    "model_loss": _model_loss,
    "clusters": _clusters,
    "selectit": costly.selectit_scorer,
    "less": costly.less_scorer,
    "near_dup": near_dup_scorer,
    "semantic_dup": semantic_dup_scorer,
    "contamination": contamination_benchmarks.scorer,
}
