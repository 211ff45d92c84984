"""Every arm against the run's baseline arm, per benchmark, from per-question results.

Input is `Answers`: run -> benchmark -> {question_id: correct}. A run is one evaluated model:
an arm, or one seed of an arm (`<arm>@s<seed>`, pipelines/train/settings.py). Rows come out
one per arm (or per run, when each run is its own group) and benchmark, with the accuracy's
Wilson interval, the paired difference from the baseline with its bootstrap interval, the
exact McNemar p-value, its Holm adjustment over every comparison in the table, the verdict in
words, and the smallest difference the comparison could have detected.
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


def describe(answers: Answers, runs: list[str], benchmark: str) -> dict:
    """An arm's accuracy on one benchmark: the mean over its runs, a Wilson interval over
    every (run, question) answer, and the spread across seeds."""
    results = [answers[run][benchmark] for run in runs if benchmark in answers[run]]
    accuracies = [sum(result.values()) / len(result) if result else 0.0 for result in results]
    correct, total = sum(sum(result.values()) for result in results), sum(len(result) for result in results)
    low, high = stats.wilson(correct, total)
    return {
        "n": len(results[0]) if results else 0,
        "runs": len(results),
        "correct": correct,
        "accuracy": mean(accuracies) if accuracies else 0.0,
        "accuracy_low": low,
        "accuracy_high": high,
        "accuracy_seed_sd": stdev(accuracies) if len(accuracies) > 1 else None,
    }


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
    rows = []
    for arm, runs in arms.items():
        for benchmark in sorted({b for run in runs for b in answers[run]}):
            row = {"arm": arm, "benchmark": benchmark, **describe(answers, runs, benchmark)}
            row.update(_difference(answers, runs, baseline, baseline_runs, benchmark, settings))
            rows.append(row)
    tested = [row for row in rows if row["p_value"] is not None]
    for row, adjusted in zip(tested, stats.holm([row["p_value"] for row in tested]), strict=True):
        row["p_holm"] = adjusted
        row["significant"] = adjusted < settings.alpha
        row["verdict"] = stats.verdict(
            row["difference"], row["p_value"], adjusted, settings.alpha, baseline, len(tested)
        )
    baseline_accuracy = {row["benchmark"]: row["accuracy"] for row in rows if row["arm"] == baseline}
    family_alpha = settings.alpha / max(len(tested), 1)  # what Holm asks of the strongest single result
    for row in rows:
        if row["benchmark"] in baseline_accuracy:
            base = baseline_accuracy[row["benchmark"]]
            row["detectable_difference"] = stats.detectable_difference(row["n"], base, family_alpha)
        else:
            row["detectable_difference"] = None
    return rows


def _difference(answers, runs, baseline, baseline_runs, benchmark, settings) -> dict:
    empty = dict.fromkeys(("difference", "difference_low", "difference_high", "p_value", "p_holm", "significant"))
    if baseline is None or not baseline_runs:
        return {**empty, "baseline": baseline, "verdict": NO_BASELINE}
    if set(runs) <= set(baseline_runs):
        return {**empty, "baseline": baseline, "verdict": BASELINE_VERDICT}
    result = paired(answers, runs, baseline_runs, benchmark, settings)
    if result is None:
        return {**empty, "baseline": baseline, "verdict": f"{baseline} did not answer these questions"}
    return {
        **empty,
        "baseline": baseline,
        "difference": result.difference,
        "difference_low": result.low,
        "difference_high": result.high,
        "p_value": result.p_value,
    }


def significantly_best(answers: Answers, arms: dict[str, list[str]], benchmark: str, alpha: float) -> str | None:
    """The arm with the highest accuracy on a benchmark, if it beats every other arm by an
    exact McNemar test at `alpha` after Holm over those comparisons; else None."""
    present = {arm: runs for arm, runs in arms.items() if any(benchmark in answers[run] for run in runs)}
    if len(present) < 2:
        return None
    accuracy = {arm: describe(answers, runs, benchmark)["accuracy"] for arm, runs in present.items()}
    ranked = sorted(accuracy, key=accuracy.get, reverse=True)
    top, others = ranked[0], ranked[1:]
    if accuracy[top] == accuracy[others[0]]:
        return None
    p_values = []
    for other in others:
        questions = common_questions(answers, [*present[top], *present[other]], benchmark)
        top_vectors = np.asarray(vectors(answers, present[top], benchmark, questions))
        only_top, only_other = stats.discordant(
            top_vectors, np.asarray(vectors(answers, present[other], benchmark, questions))
        )
        p_values.append(stats.mcnemar_p(only_top, only_other) if only_top > only_other else 1.0)
    return top if all(p < alpha for p in stats.holm(p_values)) else None
