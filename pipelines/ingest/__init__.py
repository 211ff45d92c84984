"""Ingest: input files and generated sources -> the `pool` table (and `rejects/ingest`).

Map (one Ray Data task per unit: read, adapt, normalise, hash, stage by bucket) then reduce
(one task per bucket: drop exact duplicates). Rows read = kept + duplicates + rejected,
checked before the stage commits. The stage is `pipelines.ingest.stage.run`.
"""
