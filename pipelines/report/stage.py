"""The report stage: `results` (a table) and `report/index.html` with its PNG plots.

Its inputs are every other finished table of the run, so it is redone whenever one of them
changes and skipped otherwise. `winnow report RUN` builds it for any run folder.
"""

from __future__ import annotations

import schemas
from pipelines import runs, storage, views
from pipelines.progress import note
from pipelines.report import cleaning, evidence, page, plots, results

STAGE_VERSION = 3  # 2: intervals, paired comparisons, seeds; 3: the question is the unit (issue 25)
OWN_TABLES = ("report", "results")
PLOTS = {  # name -> (caption, what it needs: "views" or "results")
    "score_distributions": ("Score distributions: the pool (grey) and each selection", "views"),
    "selection_overlap": ("Overlap between selections (Jaccard index)", "views"),
    "training_curves": ("Training loss per optimizer step, per arm", "views"),
    "accuracy": ("Accuracy per arm and benchmark, with 95% intervals (seed noise in them for seeded arms)", "results"),
    "accuracy_vs_compute": ("Accuracy over every benchmark's questions against the compute each arm cost", "results"),
}
DRAW = {
    "score_distributions": plots.score_distributions,
    "selection_overlap": plots.overlap_heatmap,
    "training_curves": plots.training_curves,
    "accuracy": plots.accuracy_bars,
    "accuracy_vs_compute": plots.accuracy_vs_compute,
}


def run(config) -> dict[str, dict]:
    return {"report": build(config.run_dir, title=f"Winnow: {config.name}")}


def build(run_dir: str, title: str | None = None) -> dict:
    connection = views.connect(run_dir)
    inputs = {
        table: runs.stable_hash(manifest.get("identity"))
        for table, manifest in results.manifests_by_table(connection).items()
        if table not in OWN_TABLES
    }
    title = title or f"Winnow: {run_dir.rstrip('/').rsplit('/', 1)[-1]}"
    identity = runs.stage_identity("report", {"title": title}, inputs, STAGE_VERSION)
    stage = runs.StageRun(run_dir, "report", "report", identity)
    if (manifest := stage.finished()) is not None:
        note("report: up to date; skipped")
        return manifest
    stage.open_work()
    present = set(views.views(connection))
    table = results.results(connection)
    schemas.check("results", table)
    report_dir = storage.join(stage.work_dir, "report")
    figures, drawn, missing = [], [], []
    for name, (caption, source) in PLOTS.items():
        png = DRAW[name](connection, present) if source == "views" else DRAW[name](table)
        if png is None:
            missing.append(caption)
            continue
        _write_bytes(storage.join(report_dir, f"{name}.png"), png)
        figures.append(page.figure(name, png, caption))
        drawn.append(name)
    rows, settings = table.to_pylist(), results.settings_of(results.manifests_by_table(connection))
    sections = {
        "conclusion": page.conclusion(rows, settings.alpha) + sampled_scores(connection),
        "results": page.results_table(rows, results.best_arms(connection, settings)),
        "comparison": page.comparison_table(rows),
        "alpha": f"{settings.alpha:g}",
        "appendix": cleaning.section(run_dir) + evidence.section(connection, run_dir),
    }
    document = page.page(title, run_dir, sections, figures, missing)
    _write_bytes(storage.join(report_dir, "index.html"), document.encode("utf-8"))
    results_dir = storage.join(stage.work_dir, "results")
    storage.write_parquet_atomic(table, storage.join(results_dir, "part-00000.parquet"))
    manifest = {"rows_in": len(inputs), "rows_out": table.num_rows, "rows_rejected": 0, "plots": drawn}
    committed = stage.commit({"results": results_dir, "report": report_dir}, manifest)
    note(f"report: {storage.join(run_dir, 'report', 'index.html')}")
    return committed


SAMPLED = {"scores/model_loss": "loss_given_prompt", "scores/selectit": "selectit_sentence", "scores/less": "less"}


def sampled_scores(connection) -> str:
    """A sentence for each scorer that scored a sample only: a selection by its scores drew
    from those rows, not from the pool (the reader must know, to compare it with random)."""
    sentences = []
    for table, manifest in results.manifests_by_table(connection).items():
        sample = manifest.get("settings", {}).get("sample")
        if table not in SAMPLED or not sample:
            continue
        view = table.replace("/", "_")  # the view of a table folder (pipelines/views.py)
        scored, total = connection.execute(f'SELECT count("{SAMPLED[table]}"), count(*) FROM {view}').fetchone()
        sentences.append(
            f" {table.removeprefix('scores/')} scored a seeded {sample[0]:.0%} sample of the pool ({scored:,} of"
            f" {total:,} rows have scores): selections by its scores drew from those rows only."
        )
    return "".join(sentences)


def _write_bytes(location: str, data: bytes) -> None:
    fs, path = storage.resolve(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)
