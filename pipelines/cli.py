"""The `winnow` command."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipelines import config as config_module
from pipelines import experiment, ray_runtime, storage, views

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Score, select and train on instruction data, on Ray."
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole, for people and for grep
REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
SCORES = {"scores_compression", "scores_model_loss", "scores_embedding", "scores_clusters"}
DEMO_QUERIES = {  # what `winnow demo` prints, each when the tables it reads are there
    "pool_by_source": {"pool"},
    "rejects_by_reason": {"rejects"},
    "score_summary": SCORES,
    "selection_summary": {"selections"},
    "selection_overlap_matrix": {"selections"},
    "critique_summary": {"critiques", "cft"},
    "accuracy": {"eval_summary"},
}


def _load(config_path: Path, run_dir: str | None) -> config_module.ExperimentConfig:
    try:
        return config_module.load(config_path, run_dir)
    except config_module.ConfigError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


def _run_stages(config: config_module.ExperimentConfig, only: list[str] | None) -> dict[str, dict]:
    try:
        manifests = experiment.run(config, only)
    finally:
        ray_runtime.shutdown_if_embedded()
    for name, manifest in manifests.items():
        console.print(
            f"[bold]{name}[/bold]: {manifest['rows_in']:,} rows in, {manifest['rows_out']:,} out, "
            f"{manifest['rows_rejected']:,} rejected ({manifest['wall_seconds']:.1f} s)",
            highlight=False,
        )
    return manifests


@app.command()
def ingest(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Read the config's sources into the run's pool table."""
    _run_stages(_load(config, run_dir), ["ingest"])


@app.command()
def score(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Build the config's small models and run its scorers (the pool must be ingested)."""
    _run_stages(_load(config, run_dir), ["models", "score"])


@app.command()
def select(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Build every selection named under `select:` (the scores they use must exist)."""
    _run_stages(_load(config, run_dir), ["select"])


@app.command()
def critique(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Write candidate answers, teacher critiques and CFT examples (`critique:`)."""
    _run_stages(_load(config, run_dir), ["models", "critique"])


@app.command()
def train(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Train every arm under `train:` that is not trained yet."""
    _run_stages(_load(config, run_dir), ["models", "train"])


@app.command("eval", hidden=True)  # DESIGN.md's name for it
@app.command()
def evaluate(config: Path, run_dir: str = typer.Option(None, help="Override the config's run_dir.")):
    """Evaluate every trained arm and its base model on the benchmarks under `evaluate:`."""
    _run_stages(_load(config, run_dir), ["models", "evaluate"])


@app.command()
def run(
    config: Path,
    run_dir: str = typer.Option(None, help="Override the config's run_dir."),
    stage: list[str] = typer.Option(None, help="Run only these stages (repeatable)."),
):
    """Run every stage of an experiment that is not already up to date."""
    _run_stages(_load(config, run_dir), stage or None)


@app.command()
def demo(
    run_dir: str = typer.Option(None, help="Where to write the demo run (default: the config's)."),
    config: Path = typer.Option(DEMO_CONFIG, help="The demo experiment."),
):
    """Run the whole pipeline on an embedded local Ray and print a summary."""
    loaded = _load(config, run_dir)
    _run_stages(loaded, None)
    connection = views.connect(loaded.run_dir)
    present = set(views.views(connection))
    for query, needs in DEMO_QUERIES.items():
        if needs <= present:
            _print_result(query, *views.run_query(connection, query))
    console.print(f'\nQuery it: winnow sql {loaded.run_dir} "SELECT * FROM pool LIMIT 5"', highlight=False)
    report = storage.join(loaded.run_dir, "report", "index.html")
    if storage.exists(report):
        console.print(f"The report: {report}", highlight=False)


@app.command()
def report(run: str = typer.Argument(..., help="A run folder.")):
    """Write RUN/report/index.html (results table and plots) and RUN/results."""
    from pipelines.report import stage as report_stage

    try:
        report_stage.build(run)
    except FileNotFoundError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


@app.command()
def compare(
    run: str = typer.Argument(..., help="A run folder."),
    arm_a: str = typer.Argument(..., help="An arm (its seeds pooled) or one run, e.g. sft_random@s1."),
    arm_b: str = typer.Argument(..., help="The arm to compare it with."),
):
    """Paired comparison of two arms on the same questions: accuracies with 95% intervals,
    the difference with its bootstrap interval, the exact McNemar p and the verdict."""
    from pipelines.report import compare as comparing

    try:
        columns, rows, note = comparing.compare_arms(run, arm_a, arm_b)
    except (FileNotFoundError, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    _print_result(f"{arm_a} against {arm_b}", columns, rows)
    console.print(note, highlight=False)


@app.command()
def sql(
    run: str = typer.Argument(..., help="A run folder."),
    query: str = typer.Argument(None, help="SQL text, or the name of a query in sql/. Omit for a prompt."),
    param: list[str] = typer.Option(None, "--param", "-p", help="NAME=VALUE, bound to $NAME."),
):
    """Query a run's tables with DuckDB (one view per table)."""
    try:
        connection = views.connect(run)
    except FileNotFoundError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    parameters = dict(p.split("=", 1) for p in param or [])
    if query:
        title = query if query in views.named_queries() else "result"
        _print_result(title, *views.run_query(connection, query, parameters))
        return
    _prompt(connection)


def _prompt(connection) -> None:
    console.print(
        f"views: {', '.join(views.views(connection))}; named queries: "
        f"{', '.join(views.named_queries())}; end a query with ';', Ctrl-D to leave"
    )
    buffer = ""
    for line in sys.stdin:
        buffer += line
        if not buffer.strip().endswith(";"):
            continue
        try:
            _print_result("result", *views.run_query(connection, buffer.strip()))
        except Exception as error:  # a typo in a query should not end the session
            errors.print(f"[red]{error}[/red]", highlight=False)
        buffer = ""


def _print_result(title: str, columns: list[str], rows: list[tuple]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
