"""`winnow compare RUN ARM_A ARM_B`: the paired comparison of any two arms (base models
included) or two runs (such as two seeds of one arm) on the questions both answered, one
line per benchmark, with the same statistics as the report (pipelines/report/stats.py).

The alpha, resamples and seed are those the run's evaluate stage recorded in its manifest
(`evaluate.alpha`, `evaluate.resamples`, `evaluate.seed`); Holm adjusts over the benchmarks.
"""

from __future__ import annotations

import numpy as np

from pipelines import views
from pipelines.report import comparisons, stats
from pipelines.report.comparisons import Answers, group_runs
from pipelines.report.results import load_answers, manifests_by_table, settings_of


def runs_of(name: str, answers: Answers) -> list[str]:
    """An arm's runs (every seed), or the one run `name` names."""
    groups = group_runs(answers)
    if name in groups:
        return groups[name]
    if name in answers:
        return [name]
    known = sorted({*groups, *answers})
    raise ValueError(f"{name!r} is not an evaluated arm or run here; evaluated: {', '.join(known) or 'none'}")


def compare_arms(run_dir: str, arm_a: str, arm_b: str) -> tuple[list[str], list[tuple], str]:
    """(columns, rows, a closing note) of A against B, one row per shared benchmark."""
    connection = views.connect(run_dir)
    answers = load_answers(connection)
    settings = settings_of(manifests_by_table(connection))
    runs_a, runs_b = runs_of(arm_a, answers), runs_of(arm_b, answers)
    benchmarks = sorted({b for run in runs_a for b in answers[run]} & {b for run in runs_b for b in answers[run]})
    results = {b: comparisons.paired(answers, runs_a, runs_b, b, settings) for b in benchmarks}
    results = {b: result for b, result in results.items() if result is not None}
    if not results:
        raise ValueError(f"{arm_a} and {arm_b} answered no question in common")
    adjusted = dict(zip(results, stats.holm([r.p_value for r in results.values()]), strict=True))
    columns = ["benchmark", "n", f"{arm_a} % [95% CI]", f"{arm_b} % [95% CI]", "difference, points [95% CI]",
               f"questions {arm_a} ahead", f"questions {arm_b} ahead", "p (sign-flip)", "verdict"]  # fmt: skip
    rows = []
    for benchmark, result in results.items():
        questions = comparisons.common_questions(answers, [*runs_a, *runs_b], benchmark)
        intervals = [_interval(answers, runs, benchmark, questions, settings) for runs in (runs_a, runs_b)]
        rows.append((
            benchmark,
            result.n,
            comparisons.format_accuracy(result.accuracy_a, *intervals[0]),
            comparisons.format_accuracy(result.accuracy_b, *intervals[1]),
            comparisons.format_difference(result.difference, result.low, result.high),
            result.a_ahead,
            result.b_ahead,
            comparisons.format_p(result.p_value).removeprefix("= "),
            comparisons.verdict(result, adjusted[benchmark], settings.alpha, arm_b, len(results), arm=arm_a),
        ))  # fmt: skip
    return columns, rows, _note(runs_a, runs_b, list(results.values()), settings)


def _interval(answers: Answers, runs: list[str], benchmark: str, questions: list[str], settings) -> tuple[float, float]:
    """An arm's accuracy interval on the shared questions: Wilson for one run, the two-level
    bootstrap for several seeds."""
    matrix = np.asarray(comparisons.vectors(answers, runs, benchmark, questions))
    return stats.accuracy_interval(matrix, settings.resamples, settings.seed)


def _note(runs_a: list[str], runs_b: list[str], results: list[stats.Paired], settings) -> str:
    """How the line was computed: the unit, the interval, the test, the verdict rule."""
    seeds = f"{len(runs_a)} and {len(runs_b)} runs, each arm's answers averaged per question over its seeds; "
    if len(runs_a) >= 2 and len(runs_b) >= 2:
        interval = "a two-level bootstrap (seeds within each arm, then questions)"
    else:
        interval = "a paired bootstrap of questions (training noise not in it)"
    methods = sorted({result.test.method for result in results})
    return (
        f"Paired on the questions both answered (each counted once): {seeds}difference interval from {interval}, "
        f"{settings.resamples:,} resamples, seed {settings.seed}; p from the {' and '.join(methods)} paired "
        f"sign-flip test on the per-question differences (with one seed each, the exact McNemar test); "
        f"significant at alpha = {settings.alpha} after Holm over {len(results)} benchmark(s)"
        + (", and only where the two-level interval excludes 0." if "two-level" in interval else ".")
    )
