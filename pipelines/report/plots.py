"""The report's plots, each a PNG (bytes) drawn with matplotlib's Agg backend from DuckDB
query results; a plot whose tables the run does not have is not drawn (None)."""

from __future__ import annotations

import io
import math

import duckdb
import numpy as np

SCORE_COLUMNS = {  # view -> columns whose distributions the report shows
    "scores_compression": ("compression_ratio",),
    "scores_model_loss": ("ifd", "loss_given_prompt", "n_response_tokens"),
}


def _figure(width: float = 8.0, height: float = 4.5):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=(width, height), dpi=100)


def _png(plt, figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def score_distributions(connection, views: set[str]) -> bytes | None:
    """Histograms of each score column: the pool, and each selection over it."""
    panels = [(view, column) for view, columns in SCORE_COLUMNS.items() if view in views for column in columns]
    if not panels:
        return None
    selections = _selection_names(connection, views)
    plt, figure = _figure(4.0 * min(len(panels), 2), 3.2 * ((len(panels) + 1) // 2))
    for index, (view, column) in enumerate(panels, start=1):
        axes = figure.add_subplot((len(panels) + 1) // 2, min(len(panels), 2), index)
        values = _values(connection, view, column, None)
        if len(values) == 0:
            continue
        bins = np.histogram_bin_edges(values, bins=40)
        axes.hist(values, bins=bins, density=True, color="lightgray", label="pool")
        for name in selections:
            axes.hist(_values(connection, view, column, name), bins=bins, density=True, histtype="step", label=name)
        axes.set_title(f"{view.removeprefix('scores_')}.{column}", fontsize=9)
    figure.axes[0].legend(fontsize=7)
    return _png(plt, figure)


def _values(connection, view: str, column: str, selection: str | None) -> np.ndarray:
    """Finite values of one score column, over the pool or one selection (names are ours)."""
    relation = connection.table(view)
    if selection is not None:
        chosen = connection.table("selections").filter(
            duckdb.ColumnExpression("selection") == duckdb.ConstantExpression(selection)
        )
        relation = relation.join(chosen.select("id"), "id")
    fetched = relation.select(column).fetchnumpy()[column]  # a masked array when there are nulls
    values = np.ma.asarray(fetched).compressed().astype(float)
    return values[np.isfinite(values)]


def _selection_names(connection, views: set[str]) -> list[str]:
    if "selections" not in views:
        return []
    return [name for (name,) in connection.execute("SELECT DISTINCT selection FROM selections ORDER BY 1").fetchall()]


def overlap_heatmap(connection, views: set[str]) -> bytes | None:
    if "selections" not in views:
        return None
    from pipelines import views as run_views

    _, rows = run_views.run_query(connection, "selection_overlap")
    names = sorted({a for a, *_ in rows})
    matrix = np.zeros((len(names), len(names)))
    for a, b, _, jaccard in rows:
        matrix[names.index(a), names.index(b)] = jaccard
    plt, figure = _figure(1.2 * len(names) + 2.5, 1.0 * len(names) + 1.5)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, label="Jaccard")
    axes.set_title("Overlap between selections")
    return _png(plt, figure)


def training_curves(connection, views: set[str]) -> bytes | None:
    arms = sorted(view.removeprefix("train_metrics_") for view in views if view.startswith("train_metrics_"))
    if not arms:
        return None
    plt, figure = _figure()
    axes = figure.add_subplot()
    for arm in arms:
        steps = connection.table(f"train_metrics_{arm}").order("step").select("step", "loss").fetchnumpy()
        axes.plot(steps["step"], steps["loss"], marker="." if len(steps["step"]) < 50 else None, label=arm)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("training loss (mean NLL of loss tokens)")
    axes.legend(fontsize=8)
    axes.set_title("Training curves")
    return _png(plt, figure)


def accuracy_bars(results) -> bytes | None:
    """Bars per arm and benchmark with the results table's 95% intervals (Wilson for one run,
    the two-level bootstrap for seeds); n under each benchmark."""
    if results.num_rows == 0:
        return None
    rows = results.to_pylist()
    arms = _arm_order(rows)
    sizes = {r["benchmark"]: r["n"] for r in sorted(rows, key=lambda r: r["n"])}  # the largest n wins
    benchmarks = sorted(sizes)
    by_key = {(r["arm"], r["benchmark"]): r for r in rows}
    plt, figure = _figure(max(6.0, 1.2 * len(benchmarks) * max(1, len(arms)) / 2), 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(arms)
    for index, arm in enumerate(arms):
        present = [b for b in benchmarks if (arm, b) in by_key]
        heights = np.array([100 * by_key[(arm, b)]["accuracy"] for b in present])
        low = np.array([100 * by_key[(arm, b)]["accuracy_low"] for b in present])
        high = np.array([100 * by_key[(arm, b)]["accuracy_high"] for b in present])
        x = np.array([benchmarks.index(b) for b in present]) + index * width
        axes.bar(x, heights, width, label=arm)
        errors = np.clip(np.vstack([heights - low, high - heights]), 0, None)  # the mean of seeds can sit off-centre
        axes.errorbar(x, heights, yerr=errors, fmt="none", ecolor="black", capsize=3, linewidth=1)
    labels = [f"{b}\n(n = {sizes[b]})" for b in benchmarks]
    axes.set_xticks(np.arange(len(benchmarks)) + 0.4 - width / 2, labels)
    axes.set_ylim(0, _top(rows))
    axes.set_ylabel("accuracy (%), 95% interval")
    axes.legend(fontsize=8)
    axes.set_title("Accuracy per arm and benchmark")
    return _png(plt, figure)


def accuracy_vs_compute(results) -> bytes | None:
    """Each arm's accuracy over every question of every benchmark (Wilson interval) against
    its compute; arms are told apart by colour and marker in a legend, so labels never overlap."""
    if results.num_rows == 0:
        return None
    rows = results.to_pylist()
    pooled = _pooled_by_arm(rows)
    plt, figure = _figure(7.5, 4.5)
    axes = figure.add_subplot()
    markers = "osD^vP*Xh<>p"
    for index, (arm, point) in enumerate(pooled.items()):
        x, y = max(point["seconds"], 1.0), 100 * point["accuracy"]
        errors = [[max(y - 100 * point["low"], 0)], [max(100 * point["high"] - y, 0)]]
        seeds = f" x {point['runs']} seeds" if point["runs"] > 1 else ""
        label = f"{arm} (n = {point['questions']}{seeds})"
        axes.errorbar([x], [y], yerr=errors, fmt=markers[index % len(markers)], capsize=3, label=label)
    axes.set_xscale("log")
    axes.set_ylim(0, _top([{"accuracy_high": p["high"]} for p in pooled.values()]))
    axes.set_xlabel("compute: data + training wall seconds (log; base models plotted at 1)")
    axes.set_ylabel("accuracy over all benchmarks (%), 95% interval")
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes.set_title("Accuracy vs compute")
    return _png(plt, figure)


def _arm_order(rows: list[dict]) -> list[str]:
    methods = {r["arm"]: r["method"] for r in rows}
    return sorted(methods, key=lambda arm: (methods[arm] != "base", arm))


def _pooled_by_arm(rows: list[dict]) -> dict[str, dict]:
    """Arm -> its accuracy over every benchmark (questions weighted alike), its 95% interval and
    compute. One run: Wilson over the questions. Several seeds: each benchmark's interval (the
    report's two-level bootstrap, training noise in it) read as a normal one and combined with
    the benchmarks' weights; never Wilson over pooled seeds' answers, which are not independent."""
    from pipelines.report.stats import wilson

    pooled: dict[str, dict] = {}
    for arm in _arm_order(rows):
        own = [r for r in rows if r["arm"] == arm]
        questions, runs = sum(r["n"] for r in own), max(r["runs"] for r in own)
        accuracy = sum(r["accuracy"] * r["n"] for r in own) / questions if questions else 0.0
        if runs == 1:
            low, high = wilson(round(accuracy * questions), questions)
        else:
            spread = math.sqrt(sum((r["n"] / questions * _sd(r)) ** 2 for r in own)) if questions else 0.0
            low, high = max(0.0, accuracy - Z95 * spread), min(1.0, accuracy + Z95 * spread)
        pooled[arm] = {"accuracy": accuracy, "low": low, "high": high, "questions": questions,
                       "runs": runs, "seconds": own[0]["compute_seconds"]}  # fmt: skip
    return pooled


Z95 = 1.959963984540054


def _sd(row: dict) -> float:
    """The standard deviation a 95% interval implies, read as a normal one."""
    return (row["accuracy_high"] - row["accuracy_low"]) / (2 * Z95)


def _top(rows: list[dict]) -> float:
    """The y-axis top in %: above every interval, and at least 10 so all-zero results still
    draw a readable axis from 0."""
    return max(10.0, 1.15 * 100 * max(r["accuracy_high"] for r in rows))
