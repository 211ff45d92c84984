"""The seeded row sample the model scorers share (model_loss, SelectIT, LESS).

A scorer with `sample_fraction` < 1 scores the rows whose seeded hash of the id falls below
the fraction: the same rows on every machine and every run, and a grown pool's old rows keep
their draw. The other rows are written with null scores, so the table still has one row per
pool row and selectors see them as unscored.

This module sits below the scorers and imports none of them: the actors (model_loss.py,
selectit_model.py, less.py) and the builders that dispatch to them (costly.py, stage.py)
all take the draw from here, so no scorer imports back up into a builder.
"""

from __future__ import annotations

import hashlib


def in_sample(example_id: str, fraction: float, seed: int) -> bool:
    """Whether a row is in a scorer's sample: its seeded id hash, as a fraction of 2^64, is below `fraction`."""
    if fraction >= 1:
        return True
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{example_id}".encode()).digest()[:8], "big") / 2**64
    return draw < fraction


def fingerprint(settings) -> dict:
    """The sample's part of a scorer's identity (none for a whole pool): a changed sample re-scores."""
    return {"sample": [settings.sample_fraction, settings.sample_seed]} if settings.sample_fraction < 1 else {}
