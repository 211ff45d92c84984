"""SelectIT: a model rates each example 1-5 under several rating prompts; its uncertainty weighs it.

For a row, model m and rating prompt j, the model reads the rating prompt (the instruction and
response inside it, ending with an answer prefix) and gives next-token probabilities; q_r is
the probability of rating r in {1..5} (summed over the tokens that spell it, see `digit_ids`).
- Distribution: p_r = q_r / sum q (the digits' share; `rating_mass` = sum q is kept).
- Token level: s_mj = r* x sum_r (p_r* - p_r) / 4, r* the most probable rating (the lowest
  on a tie): the rating, weighted by how far its probability stands above the other four.
- Sentence level: S_m = mean_j s_mj / (1 + alpha x std_j s_mj), std over the k prompts with
  divisor k (NumPy's default, as the reference).
- Model level: selectit = sum_m w_m S_m with w_m = N_m / sum N (N_m: model m's parameter
  count) unless the config gives weights. The reference script hard-codes 7/20, 13/20 and
  70/90 for its 7B, 13B and 70B models, which sum to 1.78 and are not proportional to size;
  Winnow uses N_m / sum N (7/90, 13/90, 70/90 there).
The reference also hard-codes Llama-2's digit token ids and divides the certainty by k - 1
with k the number of prompts (4 only because it used 5 prompts); neither is done here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

import schemas
from pipelines.score import parts
from schemas.scores import SELECTIT

BUILTIN_PROMPTS = Path(__file__).resolve().parent / "prompts" / "selectit_rating.txt"
RATINGS = ("1", "2", "3", "4", "5")


def load_prompts(path: str | None, k: int) -> list[str]:
    """The first k rating prompts of the file (one a line, blank lines skipped)."""
    location = Path(path).expanduser() if path else BUILTIN_PROMPTS
    if not location.is_file():
        raise FileNotFoundError(f"selectit prompts: no such file {location}")
    prompts = [line.strip() for line in location.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(prompts) < k:
        raise ValueError(f"selectit prompts: {location} has {len(prompts)} prompts; k = {k} needs that many")
    return prompts[:k]


def digit_ids(tokenizer) -> list[list[int]]:
    """For each rating 1..5, every vocabulary token that decodes to the digit alone or to one
    space and the digit (byte-level BPE has both "3" and " 3"; SentencePiece's "▁3" decodes
    to "3"), special tokens excluded. Never hard-coded: they are read from the tokenizer."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    found: list[list[int]] = [[] for _ in RATINGS]
    for token_id, text in zip(ids, texts, strict=True):
        if text in RATINGS or (text.startswith(" ") and text[1:] in RATINGS):
            found[int(text.strip()) - 1].append(token_id)
    missing = [RATINGS[r] for r, tokens in enumerate(found) if not tokens]
    if missing:
        raise ValueError(f"selectit: the tokenizer has no single token for the rating(s) {missing}")
    return found


def distribution(probabilities: np.ndarray, ids: list[list[int]]) -> tuple[np.ndarray, float]:
    """(p_1..p_5 renormalised over the five ratings, the mass they had) from a next-token distribution."""
    q = np.array([probabilities[tokens].sum() for tokens in ids], dtype=np.float64)
    mass = float(q.sum())
    return (q / mass if mass > 0 else np.full(len(RATINGS), 1 / len(RATINGS))), mass


def token_score(p: np.ndarray) -> float:
    best = int(np.argmax(p))
    certainty = float(np.sum(p[best] - p)) / (len(RATINGS) - 1)
    return (best + 1) * certainty


def sentence_score(token_scores: list[float], alpha: float) -> float:
    values = np.asarray(token_scores, dtype=np.float64)
    return float(values.mean() / (1 + alpha * values.std()))


def model_weights(weights: list[float] | None, parameter_counts: list[int]) -> np.ndarray:
    chosen = np.asarray(weights if weights is not None else parameter_counts, dtype=np.float64)
    return chosen / chosen.sum()


def combine(batch: pa.Table, n_models: int, alpha: float, weights: list[float] | None) -> pa.Table:
    """Ray Data step after the models' actor pools: their rating distributions -> scores/selectit."""
    counts = [int(batch[f"_params_{m}"][0].as_py()) for m in range(n_models)] if batch.num_rows else [1] * n_models
    w = model_weights(weights, counts)
    probs = [batch[f"_probs_{m}"].to_pylist() for m in range(n_models)]
    mass = [batch[f"_mass_{m}"].to_pylist() for m in range(n_models)]
    truncated = np.zeros(batch.num_rows, dtype=bool)
    for m in range(n_models):
        truncated |= batch[f"_truncated_{m}"].to_numpy(zero_copy_only=False)
    rows = []
    for index, example_id in enumerate(batch["id"].to_pylist()):
        row = {"id": example_id, "truncated": bool(truncated[index])}
        if probs[0][index] is None:  # no response to rate
            rows.append(row)
            continue
        tokens = [[token_score(np.asarray(p)) for p in probs[m][index]] for m in range(n_models)]
        sentences = [sentence_score(t, alpha) for t in tokens]
        row.update(
            selectit=float(np.dot(w, sentences)),
            selectit_sentence=sentences[0],
            selectit_token=tokens[0][0],
            model_sentence=sentences,
            token_scores=tokens,
            rating_probs=[probs[m][index] for m in range(n_models)],
            rating_mass=[mass[m][index] for m in range(n_models)],
        )
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=SELECTIT)
    schemas.check("scores/selectit", table, SELECTIT)
    cpu = batch[parts.CPU_COLUMN] if parts.CPU_COLUMN in batch.column_names else pa.array([0.0] * batch.num_rows)
    return table.append_column(parts.CPU_COLUMN, cpu)
