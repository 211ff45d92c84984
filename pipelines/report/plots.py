"""The report's plots, each a PNG (bytes) drawn with matplotlib's Agg backend from DuckDB
query results; a plot whose tables the run does not have is not drawn (None)."""

from __future__ import annotations

import io

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
    if results.num_rows == 0:
        return None
    rows = results.to_pylist()
    arms = sorted({r["arm"] for r in rows})
    benchmarks = sorted({r["benchmark"] for r in rows})
    accuracy = {(r["arm"], r["benchmark"]): r["accuracy"] for r in rows}
    plt, figure = _figure(max(6.0, 1.2 * len(benchmarks) * max(1, len(arms)) / 2), 4.5)
    axes = figure.add_subplot()
    width = 0.8 / len(arms)
    for index, arm in enumerate(arms):
        heights = [100 * accuracy.get((arm, b), 0.0) for b in benchmarks]
        axes.bar(np.arange(len(benchmarks)) + index * width, heights, width, label=arm)
    axes.set_xticks(np.arange(len(benchmarks)) + 0.4 - width / 2, benchmarks, rotation=20, ha="right")
    axes.set_ylabel("accuracy (%)")
    axes.legend(fontsize=8)
    axes.set_title("Accuracy per arm and benchmark")
    return _png(plt, figure)


def accuracy_vs_compute(results) -> bytes | None:
    if results.num_rows == 0:
        return None
    per_arm: dict[str, list] = {}
    for row in results.to_pylist():
        per_arm.setdefault(row["arm"], [row["compute_seconds"], []])[1].append(row["accuracy"])
    plt, figure = _figure(7.0, 4.5)
    axes = figure.add_subplot()
    for arm, (seconds, accuracies) in sorted(per_arm.items()):
        x, y = max(seconds, 1.0), 100 * float(np.mean(accuracies))
        axes.scatter([x], [y])
        axes.annotate(arm, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("compute: data + training wall seconds (log; base models plotted at 1)")
    axes.set_ylabel("mean accuracy over benchmarks (%)")
    axes.set_title("Accuracy vs compute")
    return _png(plt, figure)
