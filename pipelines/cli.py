"""The `winnow` command.

The terminal is for people: one line and a progress bar a stage, and an error in a few
lines naming what and where (exit 2 for a user's mistake, 1 otherwise, 130 for Ctrl-C).
Tracebacks and the libraries' own output go to the run's logs (RUN/logs/); `--debug`
shows tracebacks here too.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from pipelines import config as config_module
from pipelines import display, experiment, failures, ray_runtime, run_lock, run_logs, storage, uris, views
from pipelines.display import visible

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Score, select and train on instruction data, on Ray."
)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # error lines stay whole, for people and for grep
NATIVE_OUTPUT_TO_LOG = False  # main() sets it: native code's stderr goes to RUN/logs/native.log
REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
SCORES = {"scores_compression", "scores_model_loss", "scores_embedding", "scores_clusters"}
StageName = enum.Enum("StageName", {name: name for name in experiment.STAGES}, type=str)
RUN_DIR_HELP = "Override the config's run_dir."
ADDRESS_HELP = "The Ray to use (HOST:PORT, ray://..., auto); default: RAY_ADDRESS, else a Ray of the run's own."
options = {"debug": False}  # set by --debug, wherever it stands on the command line
DEMO_QUERIES = {  # what `winnow demo` prints, each when the tables it reads are there
    "pool_by_source": {"pool"},
    "rejects_by_reason": {"rejects"},
    "score_summary": SCORES,
    "near_dup": {"scores_near_dup"},
    "contamination": {"scores_contamination"},
    "selection_summary": {"selections"},
    "selection_overlap_matrix": {"selections"},
    "critique_summary": {"critiques", "cft"},
    "accuracy": {"eval_summary"},
}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Print tracebacks here too (always in RUN/logs/).")):
    options["debug"] = debug


def _reported(where: Callable[[], str | None]):
    """Failures inside as a few lines naming `where()` (the stage); see pipelines.failures."""
    return failures.reported(where, errors, debug=lambda: options["debug"])


def _load(config_path: Path, run_dir: str | None) -> config_module.ExperimentConfig:
    try:
        return config_module.load(config_path, run_dir)
    except config_module.ConfigError as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None


def _run_stages(
    config: config_module.ExperimentConfig, only: list[str] | None, address: str | None = None
) -> dict[str, dict]:
    with _reported(lambda: experiment.running["stage"]):
        run_logs.start(config.run_dir, ["winnow", *sys.argv[1:]])
        if NATIVE_OUTPUT_TO_LOG:
            run_logs.native_output_to_log()
        try:
            ray_runtime.configure(config.run_dir, address)
            manifests = experiment.run(config, only)
        finally:
            ray_runtime.shutdown()
    for name, manifest in manifests.items():
        console.print(f"[bold]{name}[/bold]: {_summary(manifest)}", highlight=False)
    return manifests


def _summary(manifest: dict) -> str:
    seconds = f"({manifest['wall_seconds']:.1f} s)"
    if "duplicates" in manifest:  # ingest: every row read is accounted for
        return (
            f"{manifest['rows_in']:,} rows read = {manifest['rows_out']:,} kept + {manifest['duplicates']:,} "
            f"duplicates + {manifest['rows_rejected']:,} rejected {seconds}"
        )
    counts = f"{manifest['rows_in']:,} rows in, {manifest['rows_out']:,} out, {manifest['rows_rejected']:,} rejected"
    return f"{counts} {seconds}"


@app.command()
def ingest(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Read the config's sources into the run's pool table."""
    _run_stages(_load(config, run_dir), ["ingest"], address)


@app.command()
def score(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Build the config's models (the scorers' warm-ups too) and run its scorers (the pool must be ingested)."""
    _run_stages(_load(config, run_dir), ["models", "score"], address)


@app.command()
def select(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Build every selection named under `select:` (the scores they use must exist)."""
    _run_stages(_load(config, run_dir), ["select"], address)


@app.command()
def critique(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Write candidate answers, teacher critiques and CFT examples (`critique:`)."""
    _run_stages(_load(config, run_dir), ["models", "critique"], address)


@app.command()
def train(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Train every arm under `train:` that is not trained yet."""
    _run_stages(_load(config, run_dir), ["models", "train"], address)


@app.command("eval", hidden=True)  # DESIGN.md's name for it
@app.command()
def evaluate(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Evaluate every trained arm and its base model on the benchmarks under `evaluate:`."""
    _run_stages(_load(config, run_dir), ["models", "evaluate"], address)


@app.command()
def run(
    config: Path,
    run_dir: str = typer.Option(None, help=RUN_DIR_HELP),
    stage: list[StageName] = typer.Option(
        None, help=f"Run only these stages (repeatable): {', '.join(experiment.STAGES)}."
    ),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Run every stage of an experiment that is not already up to date."""
    _run_stages(_load(config, run_dir), [name.value for name in stage] if stage else None, address)


@app.command()
def demo(
    run_dir: str = typer.Option(None, help="Where to write the demo run (default: the config's)."),
    config: Path = typer.Option(DEMO_CONFIG, help="The demo experiment."),
    address: str = typer.Option(None, help=ADDRESS_HELP),
):
    """Run the whole pipeline on an embedded local Ray and print a summary."""
    loaded = _load(config, run_dir)
    _run_stages(loaded, None, address)
    with _reported(lambda: "demo summary"):
        connection = views.connect(loaded.run_dir)
        present = set(views.views(connection))
        for query, needs in DEMO_QUERIES.items():
            if needs <= present:
                _print_result(query, *views.run_query(connection, query))
    shown = visible(loaded.run_dir)  # a path is not markup: "[x]" in it stays
    console.print(f'\nQuery it: winnow sql {shown} "SELECT * FROM pool LIMIT 5"', highlight=False, markup=False)
    report = storage.join(loaded.run_dir, "report", "index.html")
    if storage.exists(report):
        console.print(f"The report: {visible(report)}", highlight=False, markup=False)


@app.command()
def report(run: str = typer.Argument(..., help="A run folder.")):
    """Write RUN/report/index.html (results table and plots) and RUN/results."""
    from pipelines.report import stage as report_stage

    with _reported(lambda: "report"):
        _open_logs(run, ["winnow", *sys.argv[1:]])
        with run_lock.held(run):  # it writes RUN/report and RUN/results
            report_stage.build(run)


@app.command()
def compare(
    run: str = typer.Argument(..., help="A run folder."),
    arm_a: str = typer.Argument(..., help="Any arm (base models too; all its seeds) or one run, e.g. sft_random@s1."),
    arm_b: str = typer.Argument(..., help="The arm or run to compare it with."),
):
    """Paired comparison of any two arms on the same questions, each question counted once:
    accuracies with 95% intervals, the difference with its interval (seeds and questions when
    both arms have seeds), the exact paired sign-flip p and the verdict."""
    from pipelines.report import compare as comparing

    try:
        columns, rows, note = comparing.compare_arms(run, arm_a, arm_b)
    except (FileNotFoundError, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    _print_result(f"{arm_a} against {arm_b}", columns, rows)
    console.print(note, highlight=False)


def _without_credentials(location: str) -> str:
    """A location argument with a user:password in it is refused before anything runs (exit 2)."""
    try:
        return uris.check(location)
    except uris.CredentialsInLocation as error:
        raise typer.BadParameter(str(error)) from None


@app.command()
def sql(
    run: str = typer.Argument(..., help="A run folder.", callback=_without_credentials),
    query: str = typer.Argument(None, help="SQL text, or the name of a query in sql/. Omit for a prompt."),
    param: list[str] = typer.Option(None, "--param", "-p", help="NAME=VALUE, bound to $NAME."),
):
    """Query a run's tables with DuckDB (one view per table)."""
    with _reported(lambda: "sql"):
        connection = views.connect(run)
        _open_logs(run, ["winnow", *sys.argv[1:]])
        parameters = _parameters(param or [])
        if query:
            title = query if query in views.named_queries() else "result"
            _print_result(title, *_query(connection, query, parameters))
            return
        _prompt(connection)


class QueryError(ValueError):
    """A query DuckDB refused (a typo, an unknown table or column, a parameter not given)."""


def _parameters(pairs: list[str]) -> dict[str, str]:
    malformed = [pair for pair in pairs if "=" not in pair]
    if malformed:
        raise QueryError(f"-p takes NAME=VALUE; got {', '.join(map(repr, malformed))}")
    return dict(pair.split("=", 1) for pair in pairs)


def _query(connection, query: str, parameters: dict | None = None):
    import duckdb

    try:
        return views.run_query(connection, query, parameters)
    except duckdb.Error as error:
        raise QueryError(f"in the query: {visible(str(error))}") from None  # DuckDB quotes the query


def _open_logs(run: str, command: list[str]) -> None:
    """Log into an existing local run folder; a read-only one (or a URI) just goes without."""
    with suppress(OSError):
        run_logs.start(run, command)


def _prompt(connection) -> None:
    names = f"views: {', '.join(views.views(connection))}; named queries: {', '.join(views.named_queries())}"
    console.print(Text(f"{visible(names)}; end a query with ';', Ctrl-D to leave"))
    buffer = ""
    for line in sys.stdin:
        buffer += line
        if not buffer.strip().endswith(";"):
            continue
        try:
            _print_result("result", *_query(connection, buffer.strip()))
        except QueryError as error:  # a typo in a query should not end the session
            errors.print(Text(str(error), style="red"))
        buffer = ""


def _print_result(title: str, columns: list[str], rows: list[tuple]) -> None:
    """Cells verbatim: no markup, and what would act on a terminal shown escaped (pipelines.display)."""
    console.print(display.result(title, columns, rows, console.width))


def main() -> None:
    global NATIVE_OUTPUT_TO_LOG
    NATIVE_OUTPUT_TO_LOG = True  # the `winnow` process itself, not a test's CliRunner
    app(args=_debug_first(sys.argv[1:]))


def _debug_first(arguments: list[str]) -> list[str]:
    """`--debug` belongs before the command for click; people type it anywhere, often last."""
    end = arguments.index("--") if "--" in arguments else len(arguments)
    if "--debug" not in arguments[:end]:
        return arguments
    rest = [a for i, a in enumerate(arguments) if not (a == "--debug" and i < end)]
    return ["--debug", *rest]


if __name__ == "__main__":
    main()
