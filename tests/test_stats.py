"""Each statistic pinned to a case worked out by hand, and to the library it calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipelines.report import stats

Z = 1.959963984540054  # the 97.5% normal quantile


def hand_wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    centre, half = p + Z**2 / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return (centre - half) / (1 + Z**2 / n), (centre + half) / (1 + Z**2 / n)


@pytest.mark.parametrize(("k", "n"), [(5, 20), (0, 60), (60, 60), (2, 60), (4, 60), (150, 300)])
def test_wilson_interval_is_the_hand_formula(k, n):
    assert stats.wilson(k, n) == pytest.approx(hand_wilson(k, n), abs=1e-12)


def test_wilson_at_zero_successes_is_not_a_point():
    low, high = stats.wilson(0, 60)
    assert low == 0 and high == pytest.approx(Z**2 / (60 + Z**2)) and high == pytest.approx(0.06017, abs=1e-5)
    assert stats.wilson(0, 0) == (0.0, 1.0)  # nothing counted: nothing known


def test_exact_mcnemar_by_hand_and_against_the_binomial_test():
    assert stats.mcnemar_p(3, 0) == pytest.approx(2 * 0.5**3)  # 0.25
    assert stats.mcnemar_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 2 P(X <= 2), X ~ Bin(12, 1/2)
    assert stats.mcnemar_p(2, 10) == stats.mcnemar_p(10, 2)
    assert stats.mcnemar_p(1, 1) == 1.0 and stats.mcnemar_p(0, 0) == 1.0
    for only_a, only_b in [(7, 19), (30, 12), (0, 22)]:
        expected = scipy_stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
        assert stats.mcnemar_p(only_a, only_b) == pytest.approx(expected, rel=1e-12)


def test_paired_counts_discordant_pairs_and_the_difference():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1])
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0])
    result = stats.paired([a], [b], resamples=2000, seed=0)
    assert (result.n, result.pairs, result.only_a, result.only_b) == (8, 8, 3, 1)
    assert result.difference == pytest.approx(5 / 8 - 3 / 8)
    assert result.p_value == pytest.approx(2 * (1 + 4) / 16)  # 2 P(X <= 1), X ~ Bin(4, 1/2)
    assert result.low <= result.difference <= result.high


def test_seeds_pool_seed_by_seed_and_the_accuracy_is_their_mean():
    first, second = np.array([1, 1, 0, 0]), np.array([1, 1, 1, 0])
    baseline = np.array([1, 0, 0, 0])
    result = stats.paired([first, second], [baseline], resamples=500, seed=0)
    # pairs: (first, baseline) gives only_a 1; (second, baseline) gives only_a 2; the baseline repeats
    assert (result.pairs, result.only_a, result.only_b) == (8, 3, 0)
    assert result.accuracy_a == pytest.approx((0.5 + 0.75) / 2) and result.accuracy_b == 0.25
    # three seeds against two: (a0, b0) only_a 1; (a1, b1) only_b 1; (a2, b0) only_a 2 (b's list repeats)
    assert stats.discordant(np.array([[1, 0], [0, 1], [1, 1]]), np.array([[0, 0], [1, 1]])) == (3, 1)


def test_the_bootstrap_interval_is_the_exact_bootstrap_distribution_s_percentiles():
    """Five of ten questions right for A, none for B: the resampled mean difference is K/10
    with K ~ Binomial(10, 1/2). P(K <= 1) = 0.011 < 0.025 < P(K <= 2) = 0.055, so the
    2.5th percentile is 0.2 and, by symmetry, the 97.5th is 0.8."""
    a, b = np.array([1] * 5 + [0] * 5), np.zeros(10)
    assert stats.bootstrap_interval(a, b, resamples=10_000, seed=0) == pytest.approx((0.2, 0.8))


def test_the_bootstrap_is_scipy_s_paired_percentile_bootstrap_seeded():
    rng = np.random.default_rng(7)
    a, b = (rng.random(120) < 0.5).astype(float), (rng.random(120) < 0.4).astype(float)
    ours = stats.bootstrap_interval(a, b, resamples=10_000, seed=3)
    assert ours == stats.bootstrap_interval(a, b, resamples=10_000, seed=3)  # seeded: the same every run
    library = scipy_stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        paired=True,
        n_resamples=10_000,
        batch=1000,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert ours == pytest.approx((library.low, library.high))
    d = a - b  # and it agrees with the normal approximation at this n
    half = Z * d.std(ddof=1) / math.sqrt(len(d))
    assert ours == pytest.approx((d.mean() - half, d.mean() + half), abs=0.02)


def test_a_difference_every_question_agrees_on_has_a_point_interval():
    assert stats.bootstrap_interval(np.ones(30), np.zeros(30), 10_000, 0) == (1.0, 1.0)
    assert stats.bootstrap_interval(np.zeros(30), np.zeros(30), 10_000, 0) == (0.0, 0.0)


def test_holm_by_hand_and_by_its_step_down_definition():
    p_values = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> kept monotone: 0.06
    assert stats.holm(p_values) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and stats.holm([]) == []
    rng = np.random.default_rng(1)
    for _ in range(50):
        p_values = list(rng.random(6) ** 3)
        for alpha in (0.01, 0.05, 0.1):
            rejected, m = set(), len(p_values)  # step down: reject the k-th smallest while p <= alpha / (m - k)
            for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i])):
                if p_values[index] > alpha / (m - rank):
                    break
                rejected.add(index)
            adjusted = stats.holm(p_values)
            assert {i for i in range(m) if adjusted[i] <= alpha} == rejected


def test_detectable_difference_by_hand():
    # Cohen's h = (z_0.975 + z_0.8) sqrt(2/n); p1 = sin^2(asin(sqrt(p0)) + h/2)
    assert stats.detectable_difference(60, 0.0) == pytest.approx(0.063994, abs=1e-6)
    assert stats.detectable_difference(300, 0.5) == pytest.approx(0.113379, abs=1e-6)
    assert stats.detectable_difference(10, 1.0) == pytest.approx(0.343719, abs=1e-6)  # only a fall fits
    assert stats.detectable_difference(0, 0.5) is None
    for n, p0, alpha in [(60, 0.0667, 0.05), (300, 0.3, 0.01), (1319, 0.8, 0.05 / 6)]:
        p1 = p0 + stats.detectable_difference(n, p0, alpha)
        h = 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p0))
        power = scipy_stats.norm.cdf(h * math.sqrt(n / 2) - scipy_stats.norm.ppf(1 - alpha / 2))
        assert power == pytest.approx(0.8, abs=1e-9)
    assert stats.detectable_difference(300, 0.3) < stats.detectable_difference(60, 0.3)


def test_verdicts_in_words():
    assert stats.verdict(0.01, 0.47, 0.47, 0.05, "random", 1) == "no significant difference from random (p = 0.47)"
    assert stats.verdict(0.1, 0.003, 0.012, 0.05, "random", 4) == "better than random (p = 0.003; Holm over 4: 0.012)"
    assert stats.verdict(-0.2, 1e-6, 4e-6, 0.05, "base-tiny", 4).startswith("worse than base-tiny (p < 0.0001")
    # significant alone, not after Holm: the words follow the adjusted p
    assert stats.verdict(0.1, 0.02, 0.08, 0.05, "random", 4).startswith("no significant difference")
    assert stats.format_accuracy(0.25, 0.1119, 0.4687) == "25.0 [11.2, 46.9]"
    assert stats.format_difference(0.55, 0.35, 0.75) == "+55.0 [+35.0, +75.0]"


def test_the_figures_docs_evaluation_md_quotes():
    assert stats.format_accuracy(4 / 60, *stats.wilson(4, 60)) == "6.7 [2.6, 15.9]"  # the base model
    assert stats.format_accuracy(2 / 60, *stats.wilson(2, 60)) == "3.3 [0.9, 11.4]"  # and its SFT arm
    assert round(stats.mcnemar_p(12, 2), 3) == 0.013
    assert round(100 * stats.detectable_difference(60, 0.0), 1) == 6.4
    assert round(100 * stats.detectable_difference(300, 0.5), 1) == 11.3
