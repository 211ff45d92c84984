"""Built-in source `mathematics`: school-math question/answer rows with exact answers.

Rows come from DeepMind's `mathematics-dataset` generators (through `mathematics_compat`).
Row `i` depends only on (seed, i): each row reseeds the generators from a hash of both, so any
block of rows can be made by any worker, in any order, and a resumed run makes the same rows.

The two splits are disjoint by construction: a question belongs to `heldout` when a hash of
its text falls below `heldout_fraction`, otherwise to `train`; each split redraws until it
gets a question of its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from pipelines.ingest import mathematics_compat

# Every generator of mathematics-dataset 1.0.1, by area (checked against the package by a test).
_GENERATORS_BY_AREA = {
    "algebra": "linear_1d linear_1d_composed linear_2d linear_2d_composed polynomial_roots "
    "polynomial_roots_composed sequence_next_term sequence_nth_term",
    "arithmetic": "add_or_sub add_or_sub_in_base add_sub_multiple div mixed mul "
    "mul_div_multiple nearest_integer_root simplify_surd",
    "calculus": "differentiate differentiate_composed",
    "comparison": "closest closest_composed kth_biggest kth_biggest_composed pair pair_composed sort sort_composed",
    "measurement": "conversion time",
    "numbers": "base_conversion div_remainder div_remainder_composed gcd gcd_composed "
    "is_factor is_factor_composed is_prime is_prime_composed lcm lcm_composed "
    "list_prime_factors list_prime_factors_composed place_value place_value_composed "
    "round_number round_number_composed",
    "polynomials": "add coefficient_named collect compose evaluate evaluate_composed expand simplify_power",
    "probability": "swr_p_level_set swr_p_sequence",
}
ALL_MODULES = tuple(f"{area}__{name}" for area, names in _GENERATORS_BY_AREA.items() for name in names.split())

# Fast generators with short exact answers (arithmetic, number facts, comparisons, linear
# equations); measured at 300-6,000 rows/s per core here. Slower ones (polynomials,
# calculus, probability: 15-200 rows/s) can be named in the config.
DEFAULT_MODULES = (
    "algebra__linear_1d",
    "algebra__linear_2d",
    "algebra__sequence_next_term",
    "arithmetic__add_or_sub",
    "arithmetic__add_sub_multiple",
    "arithmetic__div",
    "arithmetic__mixed",
    "arithmetic__mul",
    "arithmetic__mul_div_multiple",
    "comparison__closest",
    "comparison__kth_biggest",
    "comparison__pair",
    "comparison__sort",
    "measurement__conversion",
    "numbers__div_remainder",
    "numbers__gcd",
    "numbers__is_prime",
    "numbers__lcm",
    "numbers__list_prime_factors",
    "numbers__place_value",
    "numbers__round_number",
)
DIFFICULTY_LEVELS = {"easy": (0, 3), "medium": (1, 3), "hard": (2, 3), "any": (0, 1)}
MAX_ATTEMPTS = 10_000  # a held-out split of 1% needs ~100 draws a row; this is far above


@dataclass(frozen=True)
class MathRow:
    index: int
    question: str
    answer: str
    module: str


def _entropy_fn(level: int, num_levels: int):
    """The package's difficulty band: maps an entropy range to its level-th sub-range."""

    def restrict(entropy_range):
        low, high = entropy_range
        length = high - low
        return (low + length * level / num_levels, low + length * (level + 1) / num_levels)

    return restrict


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}__{key}" if prefix else key
        flat.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
    return flat


@cache
def available_modules(difficulty: str = "any") -> dict[str, object]:
    """Generator name -> callable returning a Problem, for one difficulty band."""
    modules = mathematics_compat.load()["modules"]
    return _flatten(modules.train(_entropy_fn(*DIFFICULTY_LEVELS[difficulty])))


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_of(question: str, heldout_fraction: float) -> str:
    return "heldout" if _hash_int(question) < heldout_fraction * 2**64 else "train"


def generate(
    start: int,
    stop: int,
    *,
    seed: int,
    modules: tuple[str, ...],
    difficulty: str,
    split: str,
    heldout_fraction: float,
) -> Iterator[MathRow]:
    """Rows `start..stop-1` of the source; module of row i is modules[i % len(modules)]."""
    generators = available_modules(difficulty)
    settings = _length_limits()
    for index in range(start, stop):
        name = modules[index % len(modules)]
        yield _one_row(index, name, generators[name], seed, split, heldout_fraction, settings)


def _one_row(index, name, generator, seed, split, heldout_fraction, limits) -> MathRow:
    max_question, max_answer = limits
    for attempt in range(MAX_ATTEMPTS):
        mathematics_compat.seed_everything(_hash_int(f"{seed}:{index}:{attempt}"))
        try:
            problem = generator()
        except AssertionError:  # the package's own "resample" signal; draw again
            continue
        question, answer = str(problem.question), str(problem.answer)
        if len(question) > max_question or len(answer) > max_answer:
            continue  # the package's generate.py drops these too
        if split_of(question, heldout_fraction) == split:
            return MathRow(index=index, question=question, answer=answer, module=name)
    raise RuntimeError(f"mathematics: no {split} question for row {index} after {MAX_ATTEMPTS} draws")


def _length_limits() -> tuple[int, int]:
    from mathematics_dataset import generate_settings

    return generate_settings.MAX_QUESTION_LENGTH, generate_settings.MAX_ANSWER_LENGTH
