"""Warm-up models: a short SFT on a sample of the pool, for scorers that need one.

The IFD method scores with a model first fine-tuned briefly on a small sample of the pool
(cluster-sampled in the reference); LESS starts from a warm-up LoRA model. A `train.warmup`
entry trains such a model into models/<NAME>, exactly as an arm is trained, on
- `random`: `rows` pool rows in a seeded hash order;
- `clusters`: `rows` pool rows in equal shares of the clusters of scores/clusters (the first
  row of every cluster, then the second, ...; within a cluster in the seeded hash order).
A scorer uses it by name (`score.model_loss.model: <NAME>`): the models stage builds it
(pipelines/models/scorer_warmups.py calls `ensure`) for a run that scores, and the score
stage reads it by path (pipelines/models/scorer_models.py), never training it there.
"""

from __future__ import annotations

from pipelines import runs, storage, views
from pipelines.train import stage as train_stage
from pipelines.train.settings import TrainConfig

RANDOM = """
SELECT id, messages FROM pool
ORDER BY md5($seed || ':' || id)
LIMIT $rows
"""
BY_CLUSTER = """
SELECT id, messages FROM (
    SELECT p.id, p.messages, md5($seed || ':' || p.id) AS draw,
           row_number() OVER (PARTITION BY c.cluster ORDER BY md5($seed || ':' || p.id)) AS turn
    FROM pool p JOIN clusters c USING (id)
)
ORDER BY turn, draw
LIMIT $rows
"""


def run(config, train: TrainConfig | None = None) -> dict[str, dict]:
    """Train every warm-up model not yet trained; returns {models/<NAME>: manifest}."""
    train = train if train is not None else getattr(config, "train", None)
    if train is None:
        return {}
    return {f"models/{name}": ensure(config, name, train) for name in train.warmup}


def ensure(config, name: str, train: TrainConfig | None = None) -> dict:
    """The warm-up model `name`, trained now unless it is up to date."""
    train = train if train is not None else getattr(config, "train", None)
    warmup = train.warmup[name]
    tables = ["pool"] + (["scores/clusters"] if warmup.sample == "clusters" else [])

    def fingerprint() -> dict:
        found = {}
        for table in tables:
            manifest = runs.read_manifest(config.run_dir, table)
            if manifest is None:
                hint = (  # the models stage builds it before score: clusters must come from an earlier run
                    " (sample: clusters needs the embedding and clusters scorers finished first, in a run "
                    "without this warm-up named by score.model_loss.model)"
                    if table != "pool"
                    else ""
                )
                raise RuntimeError(f"warmup {name}: {table} is not finished in {config.run_dir}{hint}")
            found[table] = manifest["identity"]
        return found

    reference = f"sample:{warmup.sample}:{warmup.rows}"
    source = train_stage.Source(reference, fingerprint, lambda: sample(config.run_dir, warmup))
    return train_stage.run_one(config, train, f"warmup-{name}", name, warmup, source)


def sample(run_dir: str, warmup):
    """(file, row, record, error) of the sampled pool rows, in sample order."""
    connection = views.duckdb_connection()
    views.relation(connection, storage.list_files(storage.join(run_dir, "pool"), ".parquet")).create_view("pool")
    query = RANDOM
    if warmup.sample == "clusters":
        files = storage.list_files(storage.join(run_dir, "scores", "clusters"), ".parquet")
        views.relation(connection, files).create_view("clusters")
        query = BY_CLUSTER
    result = connection.execute(query, {"seed": str(warmup.seed), "rows": warmup.rows})
    row = 0
    while batch := result.fetchmany(4096):
        for example_id, messages in batch:
            row += 1
            yield "pool", row, {"id": example_id, "messages": messages}, None
