"""The accuracy-vs-compute plot's interval counts each question once: Wilson over questions
for one run, the benchmarks' (two-level bootstrap) intervals combined for several seeds."""

from __future__ import annotations

import math

import pytest

from pipelines.report import plots
from pipelines.report.stats import wilson


def _row(arm, benchmark, n, runs, accuracy, low, high, seconds=10.0):
    return {"arm": arm, "method": "SFT", "benchmark": benchmark, "n": n, "runs": runs, "accuracy": accuracy,
            "accuracy_low": low, "accuracy_high": high, "compute_seconds": seconds}  # fmt: skip


def test_one_run_is_wilson_over_its_questions():
    rows = [_row("a", "gsm8k", 100, 1, 0.30, 0.2, 0.4), _row("a", "math", 300, 1, 0.10, 0.07, 0.14)]
    point = plots._pooled_by_arm(rows)["a"]
    assert point["accuracy"] == pytest.approx((30 + 30) / 400)
    assert (point["low"], point["high"]) == pytest.approx(wilson(60, 400))
    assert point["questions"] == 400


def test_several_seeds_combine_each_benchmarks_interval_never_wilson_on_pooled_answers():
    rows = [_row("a", "gsm8k", 100, 2, 0.30, 0.20, 0.40), _row("a", "math", 300, 2, 0.10, 0.04, 0.16)]
    point = plots._pooled_by_arm(rows)["a"]
    sd = math.sqrt((0.25 * 0.10 / 1.96) ** 2 + (0.75 * 0.06 / 1.96) ** 2)
    assert (point["low"], point["high"]) == pytest.approx((0.15 - 1.96 * sd, 0.15 + 1.96 * sd), abs=1e-4)
    pooled_wilson = wilson(round(0.15 * 800), 800)  # 800 "answers": what the plot used to draw
    assert point["high"] - point["low"] > pooled_wilson[1] - pooled_wilson[0]
