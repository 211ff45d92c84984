"""`winnow compare`, the `evals` view and the SQL comparisons on the hand-made runs of
tests/report_runs.py: counts worked out by hand, the SQL against the report's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import views
from pipelines.report import compare, comparisons, results, stats
from pipelines.report.comparisons import Settings
from tests.report_runs import QUESTIONS, RIGHT, RIGHT_SEEDED, make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    make_run(folder)
    return folder


def named(connection, query: str, **parameters) -> list[dict]:
    columns, rows = views.run_query(connection, query, parameters)
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_the_evals_view_holds_every_run_s_answers_with_its_arm_and_seed(run_dir):
    connection = views.connect(str(run_dir))
    rows = connection.execute(
        "SELECT run, arm, seed, benchmark, count(*), count(*) FILTER (correct) FROM evals GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    expected = sorted(
        (run, run.split("@s")[0], int(run.split("@s")[1]) if "@s" in run else None, benchmark, QUESTIONS, len(right))
        for run, benchmarks in RIGHT.items()
        for benchmark, right in benchmarks.items()
    )
    assert sorted(rows, key=str) == sorted(expected, key=str)
    assert "eval_sft_random@s0_gsm8k" in views.views(connection)


@pytest.fixture(scope="module")
def seeded_run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeded")
    make_run(folder, right=RIGHT_SEEDED)
    return folder


def test_paired_comparison_sql_counts_each_question_once(run_dir):
    connection = views.connect(str(run_dir))
    rows = {row["benchmark"]: row for row in named(connection, "paired_comparison", a="sft_top", b="sft_random")}
    gsm8k = rows["gsm8k"]  # q0-15 against the seeds' means: q0-3 1, q4-5 1/2, the rest 0
    assert (gsm8k["n"], gsm8k["a_seeds"], gsm8k["b_seeds"]) == (20, 1, 2)
    assert (gsm8k["a_ahead"], gsm8k["b_ahead"], gsm8k["tied"]) == (12, 0, 8)  # never more than n
    assert (gsm8k["a_accuracy"], gsm8k["b_accuracy"], gsm8k["difference"]) == (0.8, 0.25, 0.55)
    assert gsm8k["p_value"] is None  # seeds on one side: the sign-flip p is winnow compare's
    math500 = rows["math-500"]  # q0-2 against q0-3 at 1/2 each
    assert (math500["a_ahead"], math500["b_ahead"]) == (3, 1)
    questions = named(connection, "paired_questions", a="sft_top", b="sft_random")
    q04 = next(row for row in questions if (row["benchmark"], row["question_id"]) == ("gsm8k", "q04"))
    assert (q04["a_right"], q04["a_runs"], q04["b_right"], q04["b_runs"], q04["difference"], q04["ahead"]) == (
        1, 1, 1, 2, 0.5, 1
    )  # fmt: skip
    assert len([row for row in questions if row["benchmark"] == "gsm8k"]) == QUESTIONS


def mcnemar(only_a: int, only_b: int) -> float:
    """The exact McNemar p: scipy's two-sided binomial test of the discordant questions."""
    from scipy.stats import binomtest

    return 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue


def test_the_sql_gives_the_report_s_numbers_with_one_seed_and_with_several(run_dir, seeded_run_dir):
    """One seed each: the SQL's exact McNemar p is the report's sign-flip p. Several seeds:
    n, the questions each side is ahead on and the accuracies agree; p only in the report."""
    cases = [
        (run_dir, "sft_random@s1", "sft_random@s0"),
        (run_dir, "cft", "base-tiny"),
        (run_dir, "sft_top", "sft_random"),
        (seeded_run_dir, "sft_top", "sft_random"),
    ]
    for folder, arm_a, arm_b in cases:
        connection = views.connect(str(folder))
        answers = results.load_answers(connection)
        runs_a, runs_b = compare.runs_of(arm_a, answers), compare.runs_of(arm_b, answers)
        for row in named(connection, "paired_comparison", a=arm_a, b=arm_b):
            report = comparisons.paired(answers, runs_a, runs_b, row["benchmark"], Settings(None, resamples=200))
            assert (row["n"], row["a_ahead"], row["b_ahead"]) == (report.n, report.a_ahead, report.b_ahead)
            accuracies = (report.accuracy_a, report.accuracy_b)
            assert (row["a_accuracy"], row["b_accuracy"]) == pytest.approx(accuracies, abs=1e-6)
            if len(runs_a) == len(runs_b) == 1:
                assert row["p_value"] == pytest.approx(report.p_value, rel=1e-9)
                assert row["p_value"] == pytest.approx(mcnemar(row["a_ahead"], row["b_ahead"]), rel=1e-9)
            else:
                assert row["p_value"] is None


def test_the_disagreements_list_names_each_question_the_arms_split_on(run_dir):
    connection = views.connect(str(run_dir))
    rows = named(connection, "disagreements", a="cft", b="sft_random")
    on_gsm8k = {row["question_id"]: row for row in rows if row["benchmark"] == "gsm8k"}
    # cft q0-4; sft_random seed 0 q0-3, seed 1 q0-5: q4 (cft 1/1, random 1/2) and q5 (0/1 against 1/2)
    assert sorted(on_gsm8k) == ["q04", "q05"]
    assert (on_gsm8k["q04"]["a_right"], on_gsm8k["q04"]["b_right"], on_gsm8k["q04"]["b_runs"]) == (1, 1, 2)
    assert on_gsm8k["q04"]["b_extracted"] == ["1", "1"]
    on_math = sorted(row["question_id"] for row in rows if row["benchmark"] == "math-500")
    assert on_math == ["q00", "q01", "q02", "q03"]  # cft got none; each is right for one random seed


def test_compare_prints_the_paired_comparison_per_benchmark(run_dir):
    columns, rows, note = compare.compare_arms(str(run_dir), "sft_top", "sft_random")
    assert columns[0] == "benchmark" and columns[-1] == "verdict"
    by_benchmark = {row[0]: dict(zip(columns, row, strict=True)) for row in rows}
    gsm8k = by_benchmark["gsm8k"]
    assert gsm8k["n"] == 20 and (gsm8k["questions sft_top ahead"], gsm8k["questions sft_random ahead"]) == (12, 0)
    assert gsm8k["sft_top % [95% CI]"] == comparisons.format_accuracy(0.8, *stats.wilson(16, 20))
    # two seeds: the two-level bootstrap, never narrower than Wilson at 20 questions; not Wilson on 40 answers
    low, high = stats.accuracy_interval(np.array([[i < 4 for i in range(20)], [i < 6 for i in range(20)]], float))
    assert gsm8k["sft_random % [95% CI]"] == comparisons.format_accuracy(0.25, low, high)
    assert gsm8k["sft_random % [95% CI]"] != comparisons.format_accuracy(0.25, *stats.wilson(10, 40))
    assert gsm8k["difference, points [95% CI]"].startswith("+55.0 [")
    # d_q x 2: 1, 1 (q4, q5) and 2 ten times (q6-15), all one way: p = 2 / 2^12
    assert gsm8k["p (sign-flip)"] == "0.00049"
    assert gsm8k["verdict"] == (
        "better than sft_random (p = 0.00049; Holm over 2: 0.00098); 12 of 20 questions differ (12 ahead, 0 behind);"
        " ignores training noise (a single-seed arm); sft_random's 2 seeds: sd 7.1 points, 20.0 to 30.0%"
    )
    # math-500: d_q x 2 = 1, 1, 1, -1: p = P(|S| >= 2) = 10/16
    assert by_benchmark["math-500"]["verdict"].startswith(
        "no significant difference from sft_random (p = 0.62; Holm over 2: 0.62); 4 of 20 questions differ"
    )
    assert "1 and 2 runs, each arm's answers averaged per question" in note and "10,000 resamples, seed 0" in note
    assert "exact paired sign-flip test" in note and "pairs" not in note


def test_compare_with_seeds_on_both_sides_counts_training_noise(seeded_run_dir):
    columns, rows, note = compare.compare_arms(str(seeded_run_dir), "sft_top", "sft_random")
    gsm8k = dict(zip(columns, rows[0], strict=True))
    # sft_top's seeds: q0-15 and q0-11; sft_random's: q0-3 and q0-5
    assert gsm8k["n"] == 20 and (gsm8k["questions sft_top ahead"], gsm8k["questions sft_random ahead"]) == (12, 0)
    assert "dominate the noise (sd " in gsm8k["verdict"] and "two-level bootstrap" in note
    assert gsm8k["verdict"].startswith("better than sft_random")
    answers = results.load_answers(views.connect(str(seeded_run_dir)))
    result = comparisons.paired(answers, ["sft_top@s0", "sft_top@s1"], ["sft_random@s0", "sft_random@s1"], "gsm8k",
                                Settings(None))  # fmt: skip
    assert result.interval == "seeds and questions" and gsm8k["verdict"].split("; ")[-1].startswith(result.dominant)
    # seed sd: sqrt(var([0.8, 0.6]) / 2 + var([0.2, 0.3]) / 2) with var over the seeds (ddof 0)
    assert result.sd_seeds == pytest.approx(math.sqrt(0.01 / 2 + 0.0025 / 2))


def test_compare_takes_any_two_arms_and_one_seed_s_run(run_dir):
    _, rows, _ = compare.compare_arms(str(run_dir), "sft_random@s1", "sft_random@s0")
    assert [row[5:7] for row in rows] == [(2, 0), (2, 2)]
    assert "one seed each" in rows[0][-1]
    # neither arm is the baseline: cft against the base model, the kind of sentence a report may make
    columns, rows, _ = compare.compare_arms(str(run_dir), "cft", "base-tiny")
    gsm8k = dict(zip(columns, rows[0], strict=True))  # cft q0-4 against base q0-1: 3 discordant, p = 2/8
    assert (gsm8k["questions cft ahead"], gsm8k["questions base-tiny ahead"], gsm8k["p (sign-flip)"]) == (3, 0, "0.25")
    with pytest.raises(ValueError, match="evaluated: base-tiny, cft, sft_random, sft_random@s0"):
        compare.compare_arms(str(run_dir), "sft_top", "nope")


def test_the_winnow_compare_command(run_dir, monkeypatch):
    from typer.testing import CliRunner

    from pipelines import cli

    monkeypatch.setattr(cli.console, "width", 400)  # whole verdicts on one line each
    result = CliRunner().invoke(cli.app, ["compare", str(run_dir), "sft_top", "sft_random"])
    assert result.exit_code == 0, result.output
    assert "better than sft_random" in result.output and "sign-flip" in result.output
    missing = CliRunner().invoke(cli.app, ["compare", str(run_dir), "sft_top", "nope"])
    assert missing.exit_code == 2 and "not an evaluated arm" in missing.output


def test_the_accuracy_query_shows_each_run_s_interval_and_verdict(run_dir):
    rows = named(views.connect(str(run_dir)), "accuracy")
    top = next(row for row in rows if (row["arm"], row["benchmark"]) == ("sft_top", "gsm8k"))
    assert (top["n"], top["accuracy"]) == (20, 0.8)
    assert (top["low"], top["high"]) == pytest.approx(stats.wilson(16, 20), abs=5e-4)
    assert top["verdict"].startswith("better than sft_random")
    seed = next(row for row in rows if (row["arm"], row["benchmark"]) == ("sft_random@s1", "gsm8k"))
    assert seed["verdict"] == "the baseline"  # a seed of the baseline arm is the baseline


def test_the_default_baseline_is_the_random_arm_else_the_base_model(run_dir):
    from pipelines.report import comparisons, results

    manifests = results.manifests_by_table(views.connect(str(run_dir)))
    arms = {"base-tiny": ["base-tiny"], "sft_top": ["sft_top"], "sft_random": ["sft_random@s1"]}
    assert comparisons.default_baseline(arms, manifests.get) == "sft_random"  # found through a seed's run
    del arms["sft_random"]
    assert comparisons.default_baseline(arms, manifests.get) == "base-tiny"
    assert comparisons.default_baseline({"sft_top": ["sft_top"]}, manifests.get) is None
