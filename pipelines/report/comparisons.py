"""Every arm against the run's baseline arm, per benchmark, from per-question results.

Input is `Answers`: run -> benchmark -> {question_id: correct}. A run is one evaluated model:
an arm, or one seed of an arm (`<arm>@s<seed>`, pipelines/train/settings.py). Rows come out
one per arm (or per run, when each run is its own group) and benchmark, with the accuracy's
interval, the paired difference from the baseline with its interval, the sign-flip p-value
on the questions (pipelines/report/stats.py), its Holm adjustment over every comparison in
the table, the verdict in words (with the questions each side is ahead on and what the
verdict says about training noise), and the smallest difference the run could have detected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import mean, stdev

import numpy as np

from pipelines.report import stats
from pipelines.train.settings import arm_of, seed_of

Answers = dict[str, dict[str, dict[str, bool]]]
BASELINE_VERDICT = "the baseline"
NO_BASELINE = "no baseline arm to compare with"


@dataclass(frozen=True)
class Settings:
    baseline: str | None  # an arm name; None: default_baseline's choice
    alpha: float = 0.05
    resamples: int = 10_000
    seed: int = 0


def group_runs(runs: Iterable[str]) -> dict[str, list[str]]:
    """Arm -> its runs, seeds in numeric order (s2 before s10); arms sorted, base models first."""
    groups: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda run: (seed_of(run) or 0, run)):
        groups.setdefault(arm_of(run), []).append(run)
    return dict(sorted(groups.items(), key=lambda item: (not item[0].startswith("base-"), item[0])))


def default_baseline(arms: dict[str, list[str]], manifest_of: Callable[[str], dict | None]) -> str | None:
    """The arm (name -> its runs) trained on a random selection where there is one, else the
    first base model (an evaluated arm that no training stage wrote), else None."""
    for arm, runs in arms.items():
        trained = next((m for run in runs if (m := manifest_of(f"models/{run}")) is not None), {})
        reference = trained.get("data") or ""
        selection = manifest_of(f"selections/{reference.removeprefix('selection:')}") or {}
        if reference.startswith("selection:") and selection.get("method") == "random":
            return arm
    return next((arm for arm in arms if arm.startswith("base-")), None)


def describe(answers: Answers, runs: list[str], benchmark: str, settings: Settings | None = None) -> dict:
    """An arm's accuracy on one benchmark: the mean over its runs, its 95% interval (Wilson
    for one run, the two-level bootstrap over seeds and questions for several) and the
    spread across seeds."""
    settings = settings or Settings(baseline=None)
    present = [run for run in runs if benchmark in answers[run]]
    results = [answers[run][benchmark] for run in present]
    accuracies = run_accuracies(answers, present, benchmark)
    questions = common_questions(answers, present, benchmark)
    if questions:
        runs_matrix = np.asarray(vectors(answers, present, benchmark, questions))
        low, high = stats.accuracy_interval(runs_matrix, settings.resamples, settings.seed)
    else:
        low, high = stats.wilson(0, 0)
    return {
        "n": len(results[0]) if results else 0,
        "runs": len(results),
        "correct": sum(sum(result.values()) for result in results),
        "accuracy": mean(accuracies) if accuracies else 0.0,
        "accuracy_low": low,
        "accuracy_high": high,
        "accuracy_seed_sd": stdev(accuracies) if len(accuracies) > 1 else None,
    }


def run_accuracies(answers: Answers, runs: list[str], benchmark: str) -> list[float]:
    """Each run's accuracy on the benchmark (runs that did not answer it left out)."""
    results = [answers[run][benchmark] for run in runs if benchmark in answers[run]]
    return [sum(result.values()) / len(result) if result else 0.0 for result in results]


def vectors(answers: Answers, runs: list[str], benchmark: str, questions: list[str]) -> list[np.ndarray]:
    return [np.array([answers[run][benchmark][q] for q in questions], dtype=float) for run in runs]


def common_questions(answers: Answers, runs: list[str], benchmark: str) -> list[str]:
    sets = [set(answers[run].get(benchmark, {})) for run in runs]
    return sorted(set.intersection(*sets)) if sets else []


def paired(answers: Answers, runs_a: list[str], runs_b: list[str], benchmark: str, settings: Settings):
    """stats.Paired of A against B on the questions both answered (None when there are none)."""
    questions = common_questions(answers, [*runs_a, *runs_b], benchmark)
    if not questions:
        return None
    a, b = vectors(answers, runs_a, benchmark, questions), vectors(answers, runs_b, benchmark, questions)
    return stats.paired(a, b, settings.resamples, settings.seed)


def compare(answers: Answers, arms: dict[str, list[str]], baseline: str | None, settings: Settings) -> list[dict]:
    """One row per arm and benchmark; `baseline` is an arm of `arms` (or None)."""
    baseline_runs = arms.get(baseline, []) if baseline else []
    rows, compared = [], []
    for arm, runs in arms.items():
        for benchmark in sorted({b for run in runs for b in answers[run]}):
            row = {"arm": arm, "benchmark": benchmark, **describe(answers, runs, benchmark, settings)}
            result = _difference(answers, runs, baseline, baseline_runs, benchmark, settings, row)
            rows.append(row)
            if result is not None:
                compared.append((row, result))
    adjusted_p = stats.holm([result.p_value for _, result in compared])
    for (row, result), p_holm in zip(compared, adjusted_p, strict=True):
        row["p_holm"] = p_holm
        row["significant"] = stats.significant(result, p_holm, settings.alpha)
        row["verdict"] = verdict(result, p_holm, settings.alpha, baseline, len(compared), arm=row["arm"])
    baseline_accuracy = {row["benchmark"]: row["accuracy"] for row in rows if row["arm"] == baseline}
    family_alpha = settings.alpha / max(len(compared), 1)  # what Holm asks of the strongest single result
    for row in rows:
        if row["benchmark"] in baseline_accuracy:
            base = baseline_accuracy[row["benchmark"]]
            row["detectable_difference"] = stats.detectable_difference(row["n"], base, family_alpha)
        else:
            row["detectable_difference"] = None
    return rows


def _difference(answers, runs, baseline, baseline_runs, benchmark, settings, row) -> stats.Paired | None:
    """Fill `row`'s comparison columns; the stats.Paired, or None where nothing was tested."""
    row.update(dict.fromkeys(("difference", "difference_low", "difference_high", "p_value", "p_holm", "significant")))
    row["baseline"] = baseline
    if baseline is None or not baseline_runs:
        row["verdict"] = NO_BASELINE
        return None
    if set(runs) <= set(baseline_runs):
        row["verdict"] = BASELINE_VERDICT
        return None
    result = paired(answers, runs, baseline_runs, benchmark, settings)
    if result is None:
        row["verdict"] = f"{baseline} did not answer these questions"
        return None
    row.update(difference=result.difference, difference_low=result.low, difference_high=result.high)
    row["p_value"] = result.p_value
    return result


def significantly_best(answers: Answers, arms: dict[str, list[str]], benchmark: str, settings: Settings) -> str | None:
    """The arm with the highest accuracy on a benchmark, if it beats every other arm by the
    verdict rule (sign-flip p after Holm over those comparisons; with seeds on both sides,
    the two-level interval above 0 too); else None."""
    present = {arm: runs for arm, runs in arms.items() if any(benchmark in answers[run] for run in runs)}
    if len(present) < 2:
        return None
    # the mean over seeds only: describe() would also bootstrap an interval nobody reads here
    accuracy = {arm: mean(run_accuracies(answers, runs, benchmark)) for arm, runs in present.items()}
    ranked = sorted(accuracy, key=accuracy.get, reverse=True)
    top, others = ranked[0], ranked[1:]
    if accuracy[top] == accuracy[others[0]]:
        return None
    results = [paired(answers, present[top], present[other], benchmark, settings) for other in others]
    if any(result is None or result.difference <= 0 for result in results):
        return None
    adjusted_p = stats.holm([result.p_value for result in results])
    beaten = [stats.significant(result, p, settings.alpha) for result, p in zip(results, adjusted_p, strict=True)]
    return top if all(beaten) else None


def verdict(result: stats.Paired, p_holm: float, alpha: float, baseline: str, comparisons: int, arm: str) -> str:
    """The comparison in words, e.g. "worse than sft_random (p = 0.0013; Holm over 6: 0.0078);
    11 of 60 questions differ (3 ahead, 8 behind); ...": then what it says of training noise."""
    if stats.significant(result, p_holm, alpha):
        words = f"{'better' if result.difference > 0 else 'worse'} than {baseline}"
    elif p_holm < alpha:  # the test passes; the interval with seed noise in it holds 0
        words = f"no significant difference from {baseline} once seed noise is counted"
    else:
        words = f"no significant difference from {baseline}"
    holm_note = f"; Holm over {comparisons}: {format_p(p_holm).removeprefix('= ')}" if comparisons > 1 else ""
    monte_carlo = f", Monte Carlo +- {result.test.monte_carlo_se:.1g}" if result.test.monte_carlo_se is not None else ""
    differ = result.a_ahead + result.b_ahead
    counts = f"{differ} of {result.n} questions differ ({result.a_ahead} ahead, {result.b_ahead} behind)"
    test = f"p {format_p(result.p_value)}{monte_carlo}{holm_note}"
    return f"{words} ({test}); {counts}; {noise_note(result, arm, baseline)}"


def noise_note(result: stats.Paired, arm: str, baseline: str) -> str:
    """What the verdict says about training noise: which source dominates when both arms have
    2+ seeds; else that it ignores training noise, beside the seed spread there is to see."""
    if result.both_seeded:
        return (
            f"{result.dominant} dominate the noise (sd {100 * result.sd_seeds:.1f} points from seeds, "
            f"{100 * result.sd_questions:.1f} from questions)"
        )
    sides = ((baseline, result.seed_accuracies_b), (arm, result.seed_accuracies_a))
    seeded = [(name, seeds) for name, seeds in sides if len(seeds) > 1]
    if not seeded:
        return "ignores training noise (one seed each: its size is unknown)"
    name, accuracies = seeded[0]
    return (
        f"ignores training noise (a single-seed arm); {name}'s {len(accuracies)} seeds: sd "
        f"{100 * stdev(accuracies):.1f} points, {100 * min(accuracies):.1f} to {100 * max(accuracies):.1f}%"
    )


def format_p(p: float) -> str:
    """ "= 0.47", "= 0.012", "< 0.0001": never 0."""
    if p < 0.0001:
        return "< 0.0001"
    if p < 0.1:  # two significant digits: 0.012, 0.0031
        return f"= {p:.2g}"
    return f"= {p:.2f}"


def format_accuracy(accuracy: float, low: float, high: float) -> str:
    """In %: "12.5 [5.1, 27.0]"."""
    return f"{100 * accuracy:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def format_difference(difference: float, low: float, high: float) -> str:
    """In points: "+3.3 [-2.1, +8.0]"."""
    return f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
