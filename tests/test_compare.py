"""`winnow compare`, the `evals` view and the SQL comparisons on the hand-made run of
tests/report_runs.py: counts worked out by hand, p-values against scipy."""

from __future__ import annotations

import pytest
from scipy import stats as scipy_stats

from pipelines import views
from pipelines.report import compare, stats
from tests.report_runs import QUESTIONS, RIGHT, make_run


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


def test_paired_comparison_sql_pools_seeds_and_its_p_is_the_exact_mcnemar(run_dir):
    connection = views.connect(str(run_dir))
    rows = {row["benchmark"]: row for row in named(connection, "paired_comparison", a="sft_top", b="sft_random")}
    gsm8k = rows["gsm8k"]  # q0-15 against seed 0 (q0-3) and seed 1 (q0-5)
    assert (gsm8k["n"], gsm8k["pairs"], gsm8k["only_a"], gsm8k["only_b"]) == (20, 40, 22, 0)
    assert (gsm8k["both_right"], gsm8k["both_wrong"]) == (4 + 6, 8)
    assert (gsm8k["a_accuracy"], gsm8k["b_accuracy"], gsm8k["difference"]) == (0.8, 0.25, 0.55)
    math500 = rows["math-500"]  # q0-2 against q0-1 and q2-3
    assert (math500["only_a"], math500["only_b"]) == (3, 1)
    for row in rows.values():
        expected = scipy_stats.binomtest(row["only_a"], row["only_a"] + row["only_b"], 0.5).pvalue
        assert row["mcnemar_p"] == pytest.approx(expected, abs=1e-6)
        assert row["mcnemar_p"] == pytest.approx(stats.mcnemar_p(row["only_a"], row["only_b"]), abs=1e-6)
    one_seed = named(connection, "paired_comparison", a="sft_random@s1", b="sft_random@s0")
    assert [(r["benchmark"], r["pairs"], r["only_a"], r["only_b"]) for r in one_seed] == [
        ("gsm8k", 20, 2, 0),
        ("math-500", 20, 2, 2),
    ]
    assert [r["mcnemar_p"] for r in one_seed] == pytest.approx([0.5, 1.0])


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
    assert gsm8k["n"] == 20 and (gsm8k["only sft_top right"], gsm8k["only sft_random right"]) == (22, 0)
    assert gsm8k["sft_top % [95% CI]"] == stats.format_accuracy(0.8, *stats.wilson(16, 20))
    assert gsm8k["sft_random % [95% CI]"] == stats.format_accuracy(0.25, *stats.wilson(10, 40))
    assert gsm8k["difference, points [95% CI]"].startswith("+55.0 [")
    p_math = stats.mcnemar_p(3, 1)  # 0.625; Holm over two: the larger p is multiplied by 1, so it stays
    assert (
        by_benchmark["math-500"]["verdict"]
        == f"no significant difference from sft_random (p = {p_math:.2f}; Holm over 2: 0.62)"
    )
    assert gsm8k["verdict"].startswith("better than sft_random")
    assert "1 and 2 runs pooled seed by seed" in note and "10,000 resamples, seed 0" in note


def test_compare_takes_one_seed_s_run_and_names_what_exists(run_dir):
    _, rows, _ = compare.compare_arms(str(run_dir), "sft_random@s1", "sft_random@s0")
    assert [row[5:7] for row in rows] == [(2, 0), (2, 2)]
    with pytest.raises(ValueError, match="evaluated: base-tiny, cft, sft_random, sft_random@s0"):
        compare.compare_arms(str(run_dir), "sft_top", "nope")


def test_the_winnow_compare_command(run_dir, monkeypatch):
    from typer.testing import CliRunner

    from pipelines import cli

    monkeypatch.setattr(cli.console, "width", 250)  # whole verdicts on one line each
    result = CliRunner().invoke(cli.app, ["compare", str(run_dir), "sft_top", "sft_random"])
    assert result.exit_code == 0, result.output
    assert "better than sft_random" in result.output and "exact McNemar" in result.output
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
