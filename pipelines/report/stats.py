"""The statistics every accuracy and every difference in Winnow carries.

- `wilson`: the 95% Wilson score interval of a proportion (scipy's binomtest), which stays
  inside [0, 1] and is honest at 0/n, where the normal interval collapses to a point.
- `paired`: two arms on the same questions. The difference in accuracy, its paired
  bootstrap interval (scipy.stats.bootstrap, paired, percentile, seeded; the question is
  the unit resampled) and the exact McNemar p-value: a two-sided binomial test of the
  discordant pairs (questions one arm got right and the other wrong) against 1/2.
- `holm`: Holm's step-down adjustment of several p-values (one comparison per arm and
  benchmark), so "significant" keeps its meaning when a run compares many arms.
- `detectable_difference`: the smallest increase over a baseline accuracy that a run with n
  questions per arm detects with 80% power (arcsine / Cohen's h normal approximation for
  two independent proportions: pairing only helps when the arms agree on most questions).

Seeds: an arm trained with several seeds has one result vector per seed. Its accuracy is
the mean over seeds; in a comparison, per question, the difference is (mean over the arm's
seeds) - (mean over the baseline's seeds), and McNemar pools the pairs seed by seed (seed i
of one arm with seed i of the other, the shorter list repeating).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
POWER = 0.8


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(low, high) of the Wilson score interval; (0, 1) when there is nothing to count."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    interval = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs; 1 when there are none."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(only_a), int(discordant), 0.5).pvalue)


@dataclass(frozen=True)
class Paired:
    n: int  # questions both arms answered
    pairs: int  # (question, seed pairing) pairs McNemar counts
    accuracy_a: float  # mean over A's seeds, on these questions
    accuracy_b: float
    difference: float  # accuracy_a - accuracy_b
    low: float  # paired bootstrap interval of the difference
    high: float
    only_a: int  # pairs A got right and B wrong
    only_b: int
    p_value: float  # exact McNemar


def paired(
    runs_a: list[np.ndarray],
    runs_b: list[np.ndarray],
    resamples: int = 10_000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Paired:
    """Compare A with B: each a list of 0/1 vectors (one per seed), aligned by question."""
    a = np.asarray([np.asarray(run, dtype=float) for run in runs_a])
    b = np.asarray([np.asarray(run, dtype=float) for run in runs_b])
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"paired: both arms need the same questions; got shapes {a.shape} and {b.shape}")
    per_question_a, per_question_b = a.mean(axis=0), b.mean(axis=0)
    low, high = bootstrap_interval(per_question_a, per_question_b, resamples, seed, confidence)
    only_a, only_b = discordant(a, b)
    n = a.shape[1]
    accuracy_a = float(per_question_a.mean()) if n else 0.0
    accuracy_b = float(per_question_b.mean()) if n else 0.0
    return Paired(
        n=n,
        pairs=max(len(a), len(b)) * n,
        accuracy_a=accuracy_a,
        accuracy_b=accuracy_b,
        difference=accuracy_a - accuracy_b,
        low=low,
        high=high,
        only_a=only_a,
        only_b=only_b,
        p_value=mcnemar_p(only_a, only_b),
    )


def discordant(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(pairs A right and B wrong, pairs B right and A wrong) of two [seeds, questions]
    arrays, seed i of A paired with seed i of B, the shorter list repeating."""
    count = max(len(a), len(b))
    paired_a = np.asarray(a)[[r % len(a) for r in range(count)]]
    paired_b = np.asarray(b)[[r % len(b) for r in range(count)]]
    return int(np.sum((paired_a == 1) & (paired_b == 0))), int(np.sum((paired_a == 0) & (paired_b == 1)))


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
        rng=np.random.default_rng(seed),
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


def detectable_difference(n: int, baseline: float, alpha: float = 0.05, power: float = POWER) -> float | None:
    """The smallest change from `baseline` accuracy a two-sided test at `alpha` detects with
    `power`, with n questions per arm: an increase, or a decrease where no increase fits."""
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


def format_p(p: float) -> str:
    if p < 0.0001:
        return "< 0.0001"
    if p < 0.1:  # two significant digits: 0.012, 0.0031
        return f"= {p:.2g}"
    return f"= {p:.2f}"


def verdict(difference: float, p_value: float, p_holm: float, alpha: float, baseline: str, comparisons: int) -> str:
    """The comparison in words, e.g. "no significant difference from random (p = 0.47)"."""
    if p_holm < alpha:
        words = f"{'better' if difference > 0 else 'worse'} than {baseline}"
    else:
        words = f"no significant difference from {baseline}"
    holm_note = f"; Holm over {comparisons}: {format_p(p_holm).removeprefix('= ')}" if comparisons > 1 else ""
    return f"{words} (p {format_p(p_value)}{holm_note})"


def format_accuracy(accuracy: float, low: float, high: float) -> str:
    """In %: "12.5 [5.1, 27.0]"."""
    return f"{100 * accuracy:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def format_difference(difference: float, low: float, high: float) -> str:
    """In points: "+3.3 [-2.1, +8.0]"."""
    return f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
