"""LESS: how much a pool row's training gradient points where a target set's gradients point.

For every warm-up checkpoint c (built by the models stage, pipelines/models/less_warmup.py, and
read here by path) and target set T:
  cos_c(x, T) = mean over target rows z of <f_c(x), g_c(z)>, with f_c the L2-normalised
  projection of x's Adam update direction and g_c that of z's plain gradient
  (pipelines/score/gradients.py). Since every g is unit length, the mean cosine is
  <f_c(x), mean_z g_c(z)>: a target set is kept as one mean vector per checkpoint.
  less_T(x) = sum over c of lr_c x cos_c(x, T), lr_c the mean learning rate of the steps
  since the previous checkpoint (an epoch's average, as LESS weights them), and
  less(x) = max over target sets of less_T(x) (the reference takes the max over a target's
  subtasks). Rows with no assistant turn, none left within max_length, or outside the
  scorer's sample (`sample_fraction`) get nulls.
Target means are computed once, in one Ray task; pool rows in an actor pool.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

import schemas
from pipelines.score import parts, sampling
from schemas.scores import LESS


def target_means(model: dict, rows: dict[str, list[list[dict]]], settings: dict) -> dict:
    """{"means": (checkpoints, targets, dim) array, "used": rows with a loss token a target}."""
    from pipelines.score.gradients import GradientFeaturizer

    featurizer = GradientFeaturizer(model["base"], model["trust_remote_code"], model["checkpoints"], settings)
    means, used = [], {}
    for name, messages in rows.items():
        examples = [e for e in map(featurizer.encode, messages) if e is not None and e.n_loss_tokens]
        if not examples:
            raise ValueError(f"less target {name!r}: no row keeps an answer token within max_length")
        total = None
        for start in range(0, len(examples), settings["batch_size"]):
            chunk = featurizer.features(examples[start : start + settings["batch_size"]], adam=False).sum(axis=1)
            total = chunk if total is None else total + chunk
        means.append(total / len(examples))
        used[name] = len(examples)
    return {"means": np.stack(means, axis=1), "used": used}


class LessActor:
    """One featurizer an actor (base model, every checkpoint's adapter and Adam moments)."""

    def __init__(self, model: dict, means: np.ndarray, settings: dict):
        from pipelines.score.gradients import GradientFeaturizer

        self.featurizer = GradientFeaturizer(model["base"], model["trust_remote_code"], model["checkpoints"], settings)
        self.lrs = np.array(model["lrs"], dtype=np.float64)
        self.means = means.astype(np.float64)  # (checkpoints, targets, dim)
        self.batch_size, self.settings = settings["batch_size"], settings

    def __call__(self, batch: pa.Table) -> pa.Table:
        started = time.process_time()
        rows = self.score(batch["messages"].to_pylist(), batch["id"].to_pylist())
        table = pa.Table.from_pylist(rows, schema=LESS)
        schemas.check("scores/less", table, LESS)
        return parts.with_cpu(table, time.process_time() - started)

    def score(self, messages: list[list[dict]], ids: list[str]) -> list[dict]:
        examples = [self.featurizer.encode(m) for m in messages]
        rows = [_row(i, e) for i, e in zip(ids, examples, strict=True)]
        fraction, seed = self.settings["sample_fraction"], self.settings["sample_seed"]
        scored = [
            i
            for i, e in enumerate(examples)
            if e is not None and e.n_loss_tokens and sampling.in_sample(ids[i], fraction, seed)
        ]
        for start in range(0, len(scored), self.batch_size):
            chosen = scored[start : start + self.batch_size]
            features = self.featurizer.features([examples[i] for i in chosen], adam=True)
            cosines = np.einsum("cbd,ctd->bct", features.astype(np.float64), self.means)  # (rows, ckpts, targets)
            by_target = np.einsum("bct,c->bt", cosines, self.lrs)
            for index, cosine, values in zip(chosen, cosines, by_target, strict=True):
                row = rows[index]
                row["less"], row["less_by_target"], row["mean_cosine"] = (
                    float(values.max()),
                    values.tolist(),
                    cosine.tolist(),
                )
        return rows


def _row(example_id: str, example) -> dict:
    return {
        "id": example_id,
        "less": None,
        "less_by_target": None,
        "mean_cosine": None,
        "n_loss_tokens": example.n_loss_tokens if example is not None else 0,
        "truncated": example.truncated if example is not None else False,
    }
