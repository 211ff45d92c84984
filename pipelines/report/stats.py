"""The statistics every accuracy and every difference in Winnow carries.

The unit is the question. An arm trained with several seeds answers each question once per
seed; those answers are not independent trials (a question every seed misses is one hard
question, not several), so each arm's answers are first averaged per question over its
seeds, and every test and interval counts each question once. Two sources of noise are
apart: which questions the benchmark drew (question noise) and which model training
happened to produce (seed noise, seen only when an arm was trained more than once).

- `wilson`: the 95% Wilson score interval of one run's accuracy (closed form; equal to scipy's
  binomtest(...).proportion_ci(method="wilson"), tests/test_stats.py), which
  stays inside [0, 1] and is honest at 0/n, where the normal interval collapses to a point.
- `sign_flip`: the exact paired sign-flip (randomization) test of the per-question
  differences d_q = mean over A's seeds - mean over B's seeds. Under "no difference" each
  d_q's sign is + or - with probability 1/2; p = P(|sum of flipped d_q| >= |sum d_q|). The
  d_q are multiples of 1/(k_A k_B), so the sum is an integer after scaling and its null
  distribution is built exactly by a dynamic program over the questions; only where that
  table would be too large is it estimated from 100,000 seeded random flips, with the
  Monte-Carlo standard error stated. With one seed on each side it is the exact McNemar
  test (a two-sided binomial test of the discordant questions against 1/2; tests/test_stats.py).
- `paired`: accuracies, the difference, its 95% interval, the test, the questions each arm
  is ahead on. With 2+ seeds on both sides the interval is a two-level bootstrap (seeds
  within each arm, then questions, the same for both arms), so seed noise is in it, and
  `Paired.dominant` names the larger source; otherwise the paired bootstrap of questions.
- `accuracy_interval`: Wilson for one run; for several seeds the two-level bootstrap of the
  one arm, never narrower than the Wilson interval at n questions (a percentile bootstrap
  collapses near 0% and 100%).
- `holm`: Holm's step-down adjustment over every comparison of a table; `significant`: the
  verdict rule (Holm-adjusted p < alpha, and, with seeds on both sides, the two-level
  interval excludes 0).
- `detectable_difference`: the smallest change from a baseline accuracy that n questions
  detect with 80% power, for one model per arm (arcsine / Cohen's h approximation for two
  independent proportions; pairing can only do better, training noise makes it worse).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
POWER = 0.8
MONTE_CARLO_FLIPS = 100_000
EXACT_CELL_BUDGET = 100_000_000  # DP cell updates (about a second): beyond, Monte Carlo
SMALLEST_P = sys.float_info.min  # a true p is never 0: one that underflows a float is this


def wilson(correct: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) of the Wilson score interval; (0, 1) when there is nothing to count.
    `correct` may be fractional (a mean over seeds times n): the formula is continuous."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = norm.ppf(1 - (1 - confidence) / 2)
    share = min(max(correct / n, 0.0), 1.0)
    centre = share + z * z / (2 * n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    # rounding leaves 0/n's low at ~1e-17: the interval always holds the share itself
    return min(max(0.0, (centre - half) / scale), share), max(min(1.0, (centre + half) / scale), share)


@dataclass(frozen=True)
class SignFlip:
    p_value: float
    method: str  # "exact" or "Monte Carlo"
    monte_carlo_se: float | None  # the standard error of a Monte-Carlo p; None when exact


def sign_flip(
    a: np.ndarray, b: np.ndarray, seed: int = 0, flips: int = MONTE_CARLO_FLIPS, budget: int = EXACT_CELL_BUDGET
) -> SignFlip:
    """The two-sided paired sign-flip test of two [seeds, questions] 0/1 arrays: exact where
    the dynamic program's table fits `budget` cell updates, else `flips` seeded flips."""
    k_a, k_b = len(a), len(b)
    scaled = k_b * np.rint(a.sum(axis=0)).astype(np.int64) - k_a * np.rint(b.sum(axis=0)).astype(np.int64)
    steps = np.abs(scaled[scaled != 0])  # a question both arms score alike flips to itself: no information
    if len(steps) == 0:
        return SignFlip(1.0, "exact", None)
    unit = int(np.gcd.reduce(steps))
    steps, observed = steps // unit, abs(int(scaled.sum())) // unit  # integers: no float ties
    if observed == 0:
        return SignFlip(1.0, "exact", None)
    if len(steps) * 2 * int(steps.sum()) <= budget:
        return SignFlip(max(_exact_tail(steps, observed), SMALLEST_P), "exact", None)
    return _monte_carlo(steps, observed, seed, flips)


def _exact_tail(steps: np.ndarray, observed: int) -> float:
    """P(|sum of +-step| >= observed), each sign a fair coin: the distribution of the sum is
    built one question at a time over the sums reachable so far."""
    total = int(steps.sum())
    distribution = np.zeros(2 * total + 1)
    distribution[total] = 1.0
    reach = 0
    for step in sorted(int(s) for s in steps):
        low, high = total - reach, total + reach + 1
        window = distribution[low:high] / 2
        distribution[low:high] = 0.0
        distribution[low - step : high - step] += window
        distribution[low + step : high + step] += window
        reach += step
    tails = distribution[: total - observed + 1].sum() + distribution[total + observed :].sum()
    return float(min(tails, 1.0))


def _monte_carlo(steps: np.ndarray, observed: int, seed: int, flips: int) -> SignFlip:
    rng = np.random.default_rng(seed)
    hits, batch = 0, 2_000
    for start in range(0, flips, batch):
        signs = rng.integers(0, 2, size=(min(batch, flips - start), len(steps)), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs.astype(np.int64) @ steps) >= observed))
    p = (hits + 1) / (flips + 1)  # the observed signs count as one flip: never 0, valid at any flips
    return SignFlip(p, "Monte Carlo", math.sqrt(p * (1 - p) / flips))


def two_level_draws(a: np.ndarray, b: np.ndarray | None, resamples: int, seed: int) -> np.ndarray:
    """Bootstrap draws of mean(a) - mean(b) (or of mean(a) when b is None): each draw takes
    seeds with replacement within each arm, then questions with replacement, the same
    questions for both arms (paired)."""
    rng = np.random.default_rng(seed)
    questions, draws, batch = a.shape[1], [], 1_000  # batches bound memory at 1,000 x n
    for start in range(0, resamples, batch):
        size = min(batch, resamples - start)
        chosen = rng.integers(0, questions, size=(size, questions))
        offsets = (chosen + questions * np.arange(size)[:, None]).ravel()
        times_drawn = np.bincount(offsets, minlength=size * questions).reshape(size, questions) / questions
        draw = _seed_resample(times_drawn @ a.T, rng)  # each seed's accuracy on the drawn questions
        if b is not None:
            draw = draw - _seed_resample(times_drawn @ b.T, rng)
        draws.append(draw)
    return np.concatenate(draws)


def _seed_resample(seed_accuracies: np.ndarray, rng) -> np.ndarray:
    """[draws]: the mean of each row's seeds drawn with replacement ([draws, seeds] in)."""
    size, count = seed_accuracies.shape
    weights = rng.multinomial(count, np.full(count, 1 / count), size=size) / count
    return np.einsum("ds,ds->d", weights, seed_accuracies)


def _percentiles(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def accuracy_interval(runs: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% interval of an arm's accuracy from its [seeds, questions] answers: Wilson for one
    run; for several, the two-level bootstrap widened to hold Wilson at n questions."""
    runs = np.asarray(runs, dtype=float)
    questions = runs.shape[1]
    wilson_low, wilson_high = wilson(float(runs.mean(axis=0).sum()), questions)
    if len(runs) == 1 or questions == 0:
        return wilson_low, wilson_high
    low, high = _percentiles(two_level_draws(runs, None, resamples, seed), CONFIDENCE)
    return min(low, wilson_low), max(high, wilson_high)


@dataclass(frozen=True)
class Paired:
    n: int  # questions both arms answered: the unit of every count below
    seeds_a: int
    seeds_b: int
    accuracy_a: float  # mean over A's seeds, on these questions
    accuracy_b: float
    difference: float  # accuracy_a - accuracy_b
    low: float  # 95% interval of the difference
    high: float
    interval: str  # "questions" (paired bootstrap) or "seeds and questions" (two-level bootstrap)
    a_ahead: int  # questions where A's mean over seeds is above B's
    b_ahead: int
    p_value: float  # the sign-flip test
    test: SignFlip
    seed_accuracies_a: tuple[float, ...]  # each seed's accuracy on these questions
    seed_accuracies_b: tuple[float, ...]
    sd_questions: float | None  # the difference's bootstrap sd from questions alone (seeds fixed)
    sd_seeds: float | None  # and from seeds alone (questions fixed); None unless both have 2+ seeds

    @property
    def both_seeded(self) -> bool:
        return self.seeds_a >= 2 and self.seeds_b >= 2

    @property
    def dominant(self) -> str | None:
        """ "seeds" or "questions": the larger source of noise in the difference."""
        if self.sd_seeds is None or self.sd_questions is None:
            return None
        return "seeds" if self.sd_seeds > self.sd_questions else "questions"


def paired(runs_a: list[np.ndarray], runs_b: list[np.ndarray], resamples: int = 10_000, seed: int = 0) -> Paired:
    """Compare A with B: each a list of 0/1 vectors (one per seed), aligned by question."""
    a = np.asarray([np.asarray(run, dtype=float) for run in runs_a])
    b = np.asarray([np.asarray(run, dtype=float) for run in runs_b])
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"paired: both arms need the same questions; got shapes {a.shape} and {b.shape}")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    both_seeded = len(a) >= 2 and len(b) >= 2
    if both_seeded:
        low, high = _percentiles(two_level_draws(a, b, resamples, seed), CONFIDENCE)
        seed_variance = a.mean(axis=1).var() / len(a) + b.mean(axis=1).var() / len(b)
        sd_questions, sd_seeds = float(np.sqrt((mean_a - mean_b).var() / a.shape[1])), float(np.sqrt(seed_variance))
    else:
        low, high = bootstrap_interval(mean_a, mean_b, resamples, seed)
        sd_questions = sd_seeds = None
    test = sign_flip(a, b, seed)
    return Paired(
        n=a.shape[1],
        seeds_a=len(a),
        seeds_b=len(b),
        accuracy_a=float(mean_a.mean()),
        accuracy_b=float(mean_b.mean()),
        difference=float(mean_a.mean() - mean_b.mean()),
        low=low,
        high=high,
        interval="seeds and questions" if both_seeded else "questions",
        a_ahead=int(np.sum(mean_a > mean_b)),
        b_ahead=int(np.sum(mean_a < mean_b)),
        p_value=test.p_value,
        test=test,
        seed_accuracies_a=tuple(float(x) for x in a.mean(axis=1)),
        seed_accuracies_b=tuple(float(x) for x in b.mean(axis=1)),
        sd_questions=sd_questions,
        sd_seeds=sd_seeds,
    )


def bootstrap_interval(
    a: np.ndarray, b: np.ndarray, resamples: int, seed: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b), resampling questions (pairs) together."""
    differences = a - b
    if len(differences) == 0:
        return -1.0, 1.0
    if np.ptp(differences) == 0:  # every resample has the same mean: the interval is that point
        return float(differences[0]), float(differences[0])
    from scipy.stats import bootstrap

    result = bootstrap(
        (a, b),
        _difference_of_means,
        paired=True,
        vectorized=True,
        n_resamples=resamples,
        batch=1000,  # bounds memory: 1,000 resamples of n questions at a time
        confidence_level=confidence,
        method="percentile",  # BCa is undefined on the all-or-nothing vectors small runs give
        rng=np.random.default_rng(seed),  # `rng=` needs scipy 1.15
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _difference_of_means(a, b, axis=-1):
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values in the input order: the k-th smallest is multiplied by
    (m - k + 1), kept monotone, and capped at 1; reject where adjusted < alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda index: p_values[index])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def significant(result: Paired, p_holm: float, alpha: float) -> bool:
    """The verdict rule: the Holm-adjusted sign-flip p is below alpha and, where both arms
    have 2+ seeds, the two-level interval (seed noise in it) excludes 0 too."""
    if p_holm >= alpha:
        return False
    return not result.both_seeded or result.low > 0 or result.high < 0


def detectable_difference(n: int, baseline: float, alpha: float = 0.05, power: float = POWER) -> float | None:
    """The smallest change from `baseline` accuracy a two-sided test at `alpha` detects with
    `power`, with n questions and one model per arm, as two independent proportions: an
    increase, or a decrease where no increase fits."""
    if n <= 0:
        return None
    from scipy.stats import norm

    effect = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * math.sqrt(2 / n)  # Cohen's h
    angle = math.asin(math.sqrt(min(max(baseline, 0.0), 1.0)))
    if angle + effect / 2 <= math.pi / 2:
        return math.sin(angle + effect / 2) ** 2 - baseline
    if angle - effect / 2 >= 0:
        return baseline - math.sin(angle - effect / 2) ** 2
    return None  # no accuracy in [0, 1] is that far from the baseline: nothing is detectable
