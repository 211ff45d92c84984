"""`winnow compare RUN ARM_A ARM_B`: the paired comparison of two arms (or two runs, such as
two seeds of one arm) on the questions both answered, one line per benchmark.

The alpha, resamples and seed are those the run's evaluate stage recorded in its manifest
(`evaluate.alpha`, `evaluate.resamples`, `evaluate.seed`); Holm adjusts over the benchmarks.
"""

from __future__ import annotations

from pipelines import views
from pipelines.report import stats
from pipelines.report.comparisons import Answers, group_runs, paired
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
    results = {b: paired(answers, runs_a, runs_b, b, settings) for b in benchmarks}
    results = {b: result for b, result in results.items() if result is not None}
    if not results:
        raise ValueError(f"{arm_a} and {arm_b} answered no question in common")
    adjusted = dict(zip(results, stats.holm([r.p_value for r in results.values()]), strict=True))
    columns = ["benchmark", "n", f"{arm_a} % [95% CI]", f"{arm_b} % [95% CI]", "difference, points [95% CI]",
               f"only {arm_a} right", f"only {arm_b} right", "verdict"]  # fmt: skip
    rows = []
    for benchmark, result in results.items():
        low_a, high_a = _interval(runs_a, result.accuracy_a, result.n)
        low_b, high_b = _interval(runs_b, result.accuracy_b, result.n)
        rows.append((
            benchmark,
            result.n,
            stats.format_accuracy(result.accuracy_a, low_a, high_a),
            stats.format_accuracy(result.accuracy_b, low_b, high_b),
            stats.format_difference(result.difference, result.low, result.high),
            result.only_a,
            result.only_b,
            stats.verdict(result.difference, result.p_value, adjusted[benchmark], settings.alpha, arm_b, len(results)),
        ))  # fmt: skip
    seeds = f"{len(runs_a)} and {len(runs_b)} runs pooled seed by seed; " if max(len(runs_a), len(runs_b)) > 1 else ""
    note = (
        f"Paired on the questions both answered: {seeds}difference interval from a paired bootstrap "
        f"({settings.resamples:,} resamples, seed {settings.seed}); p from the exact McNemar test on the "
        f"discordant pairs; significant at alpha = {settings.alpha} after Holm over {len(results)} benchmark(s)."
    )
    return columns, rows, note


def _interval(runs: list[str], accuracy: float, n: int) -> tuple[float, float]:
    """Wilson interval of an arm's accuracy on the shared questions, every run's answers
    pooled: its mean accuracy over runs times n x runs is the count of right answers."""
    return stats.wilson(round(accuracy * n * len(runs)), n * len(runs))
