"""Greedy selectors as Ray tasks: load their inputs, run, checkpoint, return the picked ids.

Rows are held in id order, so a run that resumes from a checkpoint sees the same row
positions as the run that wrote it. A checkpoint (`state.npz` in the selection's work
folder) is written every `checkpoint_seconds`; a resumed run goes on from it and picks
exactly what a clean run picks.
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import storage, views
from pipelines.score import render


def tie_keys(ids: list[str], seed: int) -> np.ndarray:
    """A seeded md5 of each id (the SQL selectors' random order), as uint64."""
    return np.array(
        [int.from_bytes(hashlib.md5(f"{seed}:{i}".encode()).digest()[:8], "big") for i in ids], dtype=np.uint64
    )


def _candidate_rows(inputs: dict, columns_sql: str) -> pa.Table:
    """Rows of the input tables for the candidate ids, sorted by id."""
    connection = views.duckdb_connection(keep_order=False)
    for name, files in inputs.items():
        views.relation(connection, files).create_view(name)
    table = connection.sql(columns_sql).to_arrow_table()
    return table.take(pc.sort_indices(table, [("id", "ascending")]))


def load_embeddings(inputs: dict, dtype: str) -> tuple[list[str], np.ndarray]:
    sql = "SELECT e.id, e.embedding FROM embedding e SEMI JOIN candidates c ON c.id = e.id"
    table = _candidate_rows(inputs, sql)
    column = table.column("embedding").combine_chunks()
    vectors = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    return table.column("id").to_pylist(), vectors.astype(dtype, copy=False)


def load_texts(inputs: dict, text: str) -> tuple[list[str], list[bytes]]:
    table = _candidate_rows(inputs, "SELECT p.id, p.messages FROM pool p SEMI JOIN candidates c ON c.id = p.id")
    texts = render.render_column(table.column("messages"), text).to_pylist()
    return table.column("id").to_pylist(), [t.encode("utf-8") for t in texts]


class Checkpoint:
    """A dict of arrays saved atomically to the work folder, at most every `every` seconds."""

    def __init__(self, location: str, every: float):
        self.location, self.every, self.last = location, every, time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.every

    def load(self) -> dict | None:
        if not storage.exists(self.location):
            return None
        with storage.open_input(self.location, compression=None) as stream:
            return dict(np.load(io.BytesIO(stream.read()), allow_pickle=False))

    def save(self, arrays: dict) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        fs, path = storage.resolve(self.location)
        with fs.open_output_stream(path + ".tmp") as out:
            out.write(buffer.getvalue())
        fs.move(path + ".tmp", path)
        self.last = time.monotonic()


def run_kcenter(inputs: dict, spec: dict, budget: int, seed_ids: list[str], checkpoint_at: str) -> dict:
    from pipelines.models.loading import pick_device, set_threads
    from pipelines.select import kcenter

    set_threads(None, spec["num_cpus"])  # torch's own default oversubscribes a shared node
    ids, vectors = load_embeddings(inputs, spec["dtype"])
    position = {row_id: index for index, row_id in enumerate(ids)}
    seeds = [position[i] for i in seed_ids if i in position]
    keys = tie_keys(ids, spec["seed"])
    device = pick_device(spec["device"], spec["num_gpus"])
    engine = kcenter.KCenter(vectors, len(seeds) + budget, spec["dtype"], device, spec["chunk_rows"])
    checkpoint = Checkpoint(checkpoint_at, spec["checkpoint_seconds"])
    saved = checkpoint.load()
    if saved is None:
        state = engine.begin(seeds, first=int(np.argmin(keys)))
    else:
        state = engine.resume(
            kcenter.State(
                centers=saved["centers"].tolist(),
                seeds=int(saved["seeds"]),
                radii=saved["radii"].tolist(),
                min_distance=saved["min_distance"],
            )
        )
    budget = min(budget, len(ids) - state.seeds)
    while len(state.centers) - state.seeds < budget:
        engine.step(state, keys)
        if checkpoint.due():
            engine.snapshot(state)
            checkpoint.save(
                {
                    "centers": np.array(state.centers),
                    "seeds": np.array(state.seeds),
                    "radii": np.array(state.radii),
                    "min_distance": state.min_distance,
                }
            )
    picked = state.centers[state.seeds :]
    return {
        "ids": [ids[i] for i in picked],
        "candidates": len(ids),
        "seeded_with": state.seeds,
        "radius_first": state.radii[1] if len(state.radii) > 1 else None,
        "radius_last": state.radii[-1] if state.radii else None,
        "covering_radius": engine.covering_radius(),
        "resumed": saved is not None,
        "device": device,
    }


def run_zip(inputs: dict, spec: dict, budget: int, checkpoint_at: str, workers: int) -> dict:
    from pipelines.select import zip as zip_select

    ids, rows = load_texts(inputs, spec["text"])
    engine = zip_select.Zip(rows, spec["level"], spec["mode"], workers)
    checkpoint = Checkpoint(checkpoint_at, spec["checkpoint_seconds"])
    saved = checkpoint.load()
    if saved is None:
        state = engine.begin()
    else:
        state = zip_select.State(saved["scores"], saved["selected"].tolist(), int(saved["rounds"]))

    def after_round(state):
        if checkpoint.due():
            checkpoint.save(
                {"scores": state.scores, "selected": np.array(state.selected), "rounds": np.array(state.rounds)}
            )

    try:
        engine.run(state, budget, spec["k1"], spec["k2"], spec["k3"], after_round)
    finally:
        engine.close()
    return {
        "ids": [ids[i] for i in state.selected],
        "candidates": len(ids),
        "rounds": state.rounds,
        "selected_ratio": zip_select.exact_ratio([rows[i] for i in state.selected], spec["level"]),
        "resumed": saved is not None,
    }
