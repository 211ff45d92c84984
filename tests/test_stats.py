"""Each statistic pinned to a case worked out by hand, and to the library it calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pipelines.report import comparisons, stats

Z = 1.959963984540054  # the 97.5% normal quantile


def hand_wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    centre, half = p + Z**2 / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return (centre - half) / (1 + Z**2 / n), (centre + half) / (1 + Z**2 / n)


@pytest.mark.parametrize(("k", "n"), [(5, 20), (0, 60), (60, 60), (2, 60), (4, 60), (150, 300)])
def test_wilson_interval_is_the_hand_formula_and_scipy_s(k, n):
    assert stats.wilson(k, n) == pytest.approx(hand_wilson(k, n), abs=1e-12)
    library = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert stats.wilson(k, n) == pytest.approx((library.low, library.high), abs=1e-12)


def test_wilson_at_zero_successes_is_not_a_point():
    low, high = stats.wilson(0, 60)
    assert low == 0 and high == pytest.approx(Z**2 / (60 + Z**2)) and high == pytest.approx(0.06017, abs=1e-5)
    assert stats.wilson(0, 0) == (0.0, 1.0)  # nothing counted: nothing known


def one_seed_each(only_a: int, only_b: int, alike: int = 5) -> float:
    """The sign-flip p of two one-seed arms: A alone right on `only_a` questions, B alone on
    `only_b`, both right on `alike` (which change nothing)."""
    a = np.array([[1] * only_a + [0] * only_b + [1] * alike], dtype=float)
    b = np.array([[0] * only_a + [1] * only_b + [1] * alike], dtype=float)
    return stats.sign_flip(a, b).p_value


def test_one_seed_each_is_exact_mcnemar_by_hand():
    assert one_seed_each(3, 0) == pytest.approx(2 * 0.5**3)  # 0.25
    assert one_seed_each(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 2 P(X <= 2), X ~ Bin(12, 1/2)
    assert one_seed_each(2, 10) == one_seed_each(10, 2)
    assert one_seed_each(1, 1) == 1.0 and one_seed_each(0, 0) == 1.0


def test_the_sign_flip_test_is_the_exact_mcnemar_test_for_one_seed_each():
    """One seed a side: d_q is -1, 0 or +1, the zeros flip to themselves, and the sum of the
    +-1 flips is 2 Bin(m, 1/2) - m: McNemar's binomial test of the discordant questions."""
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(1, 400))
        a = (rng.random((1, n)) < rng.random()).astype(float)
        b = (rng.random((1, n)) < rng.random()).astype(float)
        only_a, only_b = int(np.sum(a > b)), int(np.sum(a < b))
        test = stats.sign_flip(a, b)
        expected = 1.0 if only_a + only_b == 0 else scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert test.method == "exact" and test.p_value == pytest.approx(expected, rel=1e-9)
        if n < 60:  # the whole comparison reports the same p (fewer: each runs a bootstrap)
            assert stats.paired(list(a), list(b), resamples=200).p_value == test.p_value


def the_issue_s_case() -> tuple[np.ndarray, np.ndarray]:
    """cft (one seed) against sft_random (two seeds) on 60 questions, as in issue 25: cft
    alone right on 2 questions (both random seeds wrong), random's two seeds both right on 6
    and one of them on 3 (cft wrong), 49 alike. Seed pairs: 4 for cft, 6 x 2 + 3 = 15 against."""
    cft = np.zeros((1, 60))
    random = np.zeros((2, 60))
    cft[0, :2] = 1
    random[:, 2:8] = 1
    random[0, 8:11] = 1
    return cft, random


def test_the_issue_s_figures_by_hand():
    """The per-question differences, scaled by the seeds (1 x 2), are +2 twice, -2 six times
    and -1 three times: 11 questions differ, sum -11. Flipped: S = 4J + 2K - 19 with J ~
    Bin(8, 1/2) (the 2s) and K ~ Bin(3, 1/2) (the 1s). S <= -11 needs 4J + 2K <= 8: J = 0
    (8 ways), J = 1 with K <= 2 (8 x 7 = 56), J = 2 with K = 0 (28): 92 of 2^11 = 2048; by
    symmetry as many with S >= 11. p = 184 / 2048 = 0.0898. McNemar on the 4 against 15 seed
    pairs said 0.019."""
    cft, random = the_issue_s_case()
    result = stats.paired(list(cft), list(random), resamples=2000)
    assert (result.n, result.a_ahead, result.b_ahead) == (60, 2, 9)
    assert result.p_value == 184 / 2048 and result.test.method == "exact"
    assert result.difference == pytest.approx(2 / 60 - (6 + 1.5) / 60)
    assert round(scipy_stats.binomtest(4, 19).pvalue, 3) == 0.019  # McNemar on the old seed-pair count
    assert result.interval == "questions" and result.sd_seeds is None  # one seed on one side


def test_a_small_multi_seed_case_enumerated_by_hand():
    """A (one seed) right on q1 q2 q4 q5; B's seeds right on q2 q3 q5 and on q5. d_q (x2):
    +2, +1, -1, +2, 0, 0; |d| = 2, 1, 1, 2, observed sum 4. Of the 16 sign patterns, |S| >= 4
    when both 2s agree (+4 or -4) and the 1s do not cancel against them: 3 + 3, p = 6/16.
    Seed-pair McNemar counted 5 against 1 'pairs' on 6 questions and gave 7/32."""
    a = np.array([[1, 1, 0, 1, 1, 0]], dtype=float)
    b = np.array([[0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 1, 0]], dtype=float)
    assert stats.sign_flip(a, b).p_value == pytest.approx(6 / 16)
    assert stats.sign_flip(b, a).p_value == pytest.approx(6 / 16)  # symmetric in the arms
    # two seeds each: d (x4) = 2(a0 + a1) - 2(b0 + b1): the same arms with A's seed repeated
    assert stats.sign_flip(np.vstack([a, a]), b).p_value == pytest.approx(6 / 16)
    two = np.array([[1, 1, 1, 1], [1, 0, 1, 1]], dtype=float)
    none = np.zeros((3, 4))
    # d (x6) = 3 * right(two) - 0: 6, 3, 6, 6, all positive; only the all-plus and all-minus
    # patterns reach |S| = 21: p = 2/16
    assert stats.sign_flip(two, none).p_value == pytest.approx(2 / 16)


def test_monte_carlo_is_used_only_past_the_budget_and_agrees_with_the_exact_p():
    cft, random = the_issue_s_case()
    estimate = stats.sign_flip(cft, random, seed=5, budget=0)
    assert estimate.method == "Monte Carlo" and estimate.monte_carlo_se == pytest.approx(0.0009, abs=0.0001)
    assert abs(estimate.p_value - 184 / 2048) < 4 * estimate.monte_carlo_se
    assert stats.sign_flip(cft, random, seed=5, budget=0) == estimate  # seeded
    assert stats.MONTE_CARLO_FLIPS >= 100_000


def test_a_p_value_is_never_zero():
    a, b = np.ones((1, 1500)), np.zeros((1, 1500))  # 2 / 2^1500 underflows a float
    p = stats.sign_flip(a, b).p_value
    assert 0 < p <= stats.SMALLEST_P
    assert stats.sign_flip(np.zeros((2, 5)), np.zeros((3, 5))).p_value == 1.0  # nothing differs


def test_the_two_level_bootstrap_covers_known_seed_noise_where_questions_alone_do_not():
    """Both arms drawn alike (true difference 0): each question has a difficulty, each seed's
    training shifts every answer's log-odds by N(0, 0.5), five seeds an arm, 80 questions.
    Measured here: the two-level interval holds 0 in 290 of 300 runs (96.7%); resampling
    questions alone (the seeds' means fixed) in 195 (65%)."""
    rng = np.random.default_rng(2)
    two_level = questions_only = 0
    runs = 300

    def arm(logit):
        shift = rng.normal(0, 0.5, (5, 1))
        return (rng.random((5, 80)) < 1 / (1 + np.exp(-(logit + shift)))).astype(float)

    for run in range(runs):
        logit = rng.normal(-0.5, 1.5, 80)
        a, b = arm(logit), arm(logit)
        result = stats.paired(list(a), list(b), resamples=1000, seed=run)
        assert result.interval == "seeds and questions"
        two_level += result.low <= 0 <= result.high
        d = a.mean(axis=0) - b.mean(axis=0)
        draws = d[rng.integers(0, 80, size=(1000, 80))].mean(axis=1)
        questions_only += np.quantile(draws, 0.025) <= 0 <= np.quantile(draws, 0.975)
    assert two_level / runs >= 0.91 and questions_only / runs <= 0.75


def test_which_source_dominates():
    rng = np.random.default_rng(4)
    base = (rng.random(200) < 0.5).astype(float)
    # seeds that disagree wholesale: one seed right on everything, one on nothing
    a = np.array([np.ones(200), np.zeros(200)])
    b = np.array([base, base])
    assert stats.paired(list(a), list(b), resamples=500).dominant == "seeds"
    # identical seeds: all the noise is in the questions
    c = np.array([base, base])
    d = np.array([np.roll(base, 1), np.roll(base, 1)])
    result = stats.paired(list(c), list(d), resamples=500)
    assert result.dominant == "questions" and result.sd_seeds == 0


def test_an_accuracy_with_seeds_is_not_wilson_on_pooled_answers():
    one = (np.arange(60) < 15).astype(float)[None, :]
    assert stats.accuracy_interval(one) == pytest.approx(stats.wilson(15, 60))
    # two seeds far apart (10/60 and 30/60): the seed spread is in the interval
    seeds = np.array([np.arange(60) < 10, np.arange(60) < 30], dtype=float)
    low, high = stats.accuracy_interval(seeds, resamples=4000)
    pooled_low, pooled_high = stats.wilson(40, 120)  # the old interval: 120 "trials"
    assert high - low > pooled_high - pooled_low
    assert low <= stats.wilson(20, 60)[0] and high >= stats.wilson(20, 60)[1]  # never below Wilson at n
    # every seed wrong everywhere: a point bootstrap, so Wilson at n questions holds it open
    assert stats.accuracy_interval(np.zeros((2, 60))) == pytest.approx(stats.wilson(0, 60))


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


def test_the_verdict_rule():
    cft, random = the_issue_s_case()
    single = stats.paired(list(cft), list(random), resamples=500)
    assert stats.significant(single, 0.01, 0.05) and not stats.significant(single, 0.05, 0.05)
    # both seeded: a p below alpha is not enough when the two-level interval holds 0
    rng = np.random.default_rng(8)
    a = (rng.random((2, 100)) < 0.5).astype(float)
    seeded = stats.paired(list(a), list(a[::-1]), resamples=500)
    assert seeded.both_seeded and seeded.low <= 0 <= seeded.high and not stats.significant(seeded, 0.001, 0.05)
    ahead = stats.paired([np.ones(100), np.ones(100)], [np.zeros(100), np.zeros(100)], resamples=500)
    assert stats.significant(ahead, 0.001, 0.05)


def test_the_figures_docs_evaluation_md_quotes():
    assert comparisons.format_accuracy(4 / 60, *stats.wilson(4, 60)) == "6.7 [2.6, 15.9]"  # the issue's base model
    assert comparisons.format_accuracy(2 / 60, *stats.wilson(2, 60)) == "3.3 [0.9, 11.4]"  # and its SFT arm
    assert round(one_seed_each(12, 2), 3) == 0.013
    assert round(100 * stats.detectable_difference(60, 0.0), 1) == 6.4
    assert round(100 * stats.detectable_difference(300, 0.5), 1) == 11.3
    cft, random = the_issue_s_case()
    result = stats.paired(list(cft), list(random), resamples=500)
    assert round(result.p_value, 3) == 0.090
    assert comparisons.verdict(result, result.p_value, 0.05, "sft_random", 1, arm="cft") == (
        "no significant difference from sft_random (p = 0.09); 11 of 60 questions differ (2 ahead, 9 behind);"
        " ignores training noise (a single-seed arm); sft_random's 2 seeds: sd 3.5 points, 10.0 to 15.0%"
    )
