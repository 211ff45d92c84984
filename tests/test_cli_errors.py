"""Every mistake a user can make: a few lines naming what and where, a non-zero exit, no
traceback on the terminal (it goes to RUN/logs/winnow.log; --debug shows it)."""

from __future__ import annotations

import io
import os
import subprocess

import pytest
from ray.exceptions import RayTaskError, UserCodeException
from rich.console import Console

from pipelines import failures, run_logs
from pipelines.ingest.plan import InputError
from tests.conftest import BIN, cli_env, write_config


def winnow(*args, stdin: str | None = None, cwd=None, timeout: float = 300):
    return subprocess.run(
        [str(BIN / "winnow"), *map(str, args)],
        cwd=cwd,
        env=cli_env(COLUMNS="250"),  # rich wraps help and errors at the terminal's width
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _few_lines_no_traceback(done, status: int = 2) -> list[str]:
    assert done.returncode == status, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 6, done.stderr
    return lines


def test_a_path_that_matches_no_file_names_the_source_and_keeps_the_traceback_in_the_log(tmp_path):
    source = {"kind": "files", "name": "gone", "paths": [str(tmp_path / "nothing" / "*.jsonl")]}
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", [source])
    done = winnow("ingest", config)
    lines = _few_lines_no_traceback(done)
    assert lines == [f"error: ingest: source 'gone': ['{tmp_path}/nothing/*.jsonl'] matched no data files"]
    log = (tmp_path / "run" / "logs" / "winnow.log").read_text()
    assert "Traceback" in log and "InputError: source 'gone'" in log


@pytest.mark.parametrize("where", ["first", "last"])
def test_debug_shows_the_traceback_wherever_it_is_typed(tmp_path, where):
    source = {"kind": "files", "name": "gone", "paths": [str(tmp_path / "*.jsonl")]}
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", [source])
    arguments = ["--debug", "ingest", config] if where == "first" else ["ingest", config, "--debug"]
    done = winnow(*arguments)
    assert done.returncode == 2
    assert "Traceback" in done.stderr and "pipelines/ingest/plan.py" in done.stderr
    assert done.stderr.rstrip().endswith("matched no data files")


def test_an_unknown_stage_is_refused_naming_the_stages_and_help_lists_them(tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"kind": "mathematics", "rows": 5}])
    done = winnow("run", config, "--stage", "bogus")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = " ".join(done.stderr.replace("│", " ").split())
    assert "'bogus' is not one of 'ingest', 'models', 'score', 'select', 'critique', 'train', 'evaluate'" in message
    assert not (tmp_path / "run").exists()
    helped = " ".join(winnow("run", "--help").stdout.replace("│", " ").split())
    assert "ingest, models, score, select, critique, train, evaluate, report" in helped


def test_a_sql_typo_says_where_it_is_and_the_prompt_goes_on(tmp_path):
    typo = winnow("sql", tmp_path, "SELEC 1")
    lines = _few_lines_no_traceback(typo)
    assert lines[0] == 'error: sql: in the query: Parser Error: syntax error at or near "SELEC"'
    assert any("LINE 1: SELEC 1" in line for line in lines)
    unknown = _few_lines_no_traceback(winnow("sql", tmp_path, "SELECT * FROM nope"))
    assert unknown[0].startswith("error: sql: in the query: Catalog Error: Table with name nope does not exist")
    malformed = _few_lines_no_traceback(winnow("sql", tmp_path, "SELECT 1", "-p", "x"))
    assert malformed == ["error: sql: -p takes NAME=VALUE; got 'x'"]
    prompt = winnow("sql", tmp_path, stdin="SELEC 1;\nSELECT 6 * 7 AS answer;\n")
    assert prompt.returncode == 0 and "42" in prompt.stdout and "SELEC" in prompt.stderr
    missing = _few_lines_no_traceback(winnow("sql", tmp_path / "nowhere", "SELECT 1"))
    assert missing == [f"error: sql: {tmp_path / 'nowhere'}: no such run folder"]


def test_an_unreadable_file_is_named_with_the_reason(tmp_path):
    path = tmp_path / "locked.jsonl"
    if os.geteuid() == 0:  # root reads any file: a file whose reads fail stands in for one
        path.symlink_to("/proc/self/mem")
        reason = "Input/output error"
    else:
        path.write_text('{"question": "q", "answer": "a"}\n')
        path.chmod(0)
        reason = "Permission denied"
    source = {"kind": "files", "name": "locked", "paths": [str(path)]}
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", [source])
    lines = _few_lines_no_traceback(winnow("ingest", config))
    assert lines == [f"error: ingest: source 'locked': cannot read {path}: {reason}"]


def test_a_run_folder_that_is_a_file_is_named(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    config = write_config(tmp_path / "c.yaml", tmp_path / "taken", [{"kind": "mathematics", "rows": 5}])
    lines = _few_lines_no_traceback(winnow("ingest", config))
    assert len(lines) == 1 and lines[0].startswith("error: winnow: ") and "taken" in lines[0]


def test_an_unreachable_ray_address_fails_in_seconds_naming_it(tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path / "run", [{"kind": "mathematics", "rows": 5}])
    lines = _few_lines_no_traceback(winnow("ingest", config, "--address", "127.0.0.1:1", timeout=60))
    assert lines == ["error: ingest: cannot reach the Ray at 127.0.0.1:1 (from --address): Connection refused"]


def test_a_missing_config_is_named():
    done = winnow("ingest", "/nonexistent/config.yaml")
    assert _few_lines_no_traceback(done) == ["error: /nonexistent/config.yaml: no such config file"]


def _remote_traceback(error: Exception) -> str:
    """The text Ray Data hands the driver for a task that raised `error` (its frames, then Ray's)."""
    return (
        "ray::MapBatches(_map_batch)() (pid=1, ip=10.0.0.1)\n"
        '  File "/work/pipelines/ingest/units.py", line 9, in process\n'
        f"{type(error).__module__}.{type(error).__name__}: {error}\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "ray::MapBatches(_map_batch)() (pid=1, ip=10.0.0.1)\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block.\n"
    )


def test_an_error_from_a_ray_task_is_told_as_the_original_exception():
    cause = UserCodeException("UDF failed to process a data block.")
    wrapped = RayTaskError("MapBatches(_map_batch)", _remote_traceback(InputError("x.jsonl: cannot read")), cause)
    failure = failures.explain(wrapped.as_instanceof_cause())
    assert failure == failures.Failure("InputError", "x.jsonl: cannot read", True)
    bug = RayTaskError("MapBatches(f)", _remote_traceback(KeyError("unit")), cause)
    assert failures.explain(bug) == failures.Failure("KeyError", "'unit'", False)


def test_an_internal_error_points_at_the_traceback_and_exits_1(tmp_path):
    run_logs.start(str(tmp_path / "run"), ["winnow", "score", "c.yaml"])
    try:
        try:
            {}["unit"]
        except KeyError as error:
            out = io.StringIO()
            status = failures.report(error, "score", Console(file=out, width=200), debug=False)
    finally:
        run_logs.stop()
    log = tmp_path / "run" / "logs" / "winnow.log"
    assert status == 1
    assert out.getvalue().splitlines() == [
        "error: score: KeyError: 'unit'",
        f"  the traceback is in {log}; --debug prints it here",
    ]
    assert "Traceback" in log.read_text()
