"""What a person is told when a command fails: a few lines naming what and where.

The traceback goes to the run's log (run_logs.write_traceback) and to the terminal only with
`--debug`. A user's mistake (a config key, a path that matches nothing, an unreadable file,
a file no format fits, an unreachable Ray) exits 2; anything else is reported the same way
with a pointer to the traceback and exits 1. An error raised inside a Ray task reaches the
driver as Ray's wrapper, whose text holds the original traceback: the original exception's
type and message are read back out of it, so the user sees "InputError: x.jsonl: ...",
not a page of Ray's frames.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer
from rich.console import Console

from pipelines import run_logs

USER_ERRORS = {
    "ConfigError",  # pipelines.config: a key or value of the YAML
    "InputError",  # pipelines.ingest.plan: paths, unreadable files, splits
    "FormatError",  # pipelines.ingest.adapters: no format fits a file's columns
    "RayAddressError",  # pipelines.ray_runtime: --address / RAY_ADDRESS unreachable
    "QueryError",  # pipelines.cli: a query DuckDB refused, a malformed -p
    "CredentialsInLocation",  # pipelines.uris: user:password in a URI (also inside a stage)
    "RunLockedError",  # pipelines.run_lock: another command holds the run folder
    "PathOutsideRunError",  # pipelines.fences: a path outside the run folder was refused
    "FileNotFoundError",
    "PermissionError",
    "IsADirectoryError",
    "NotADirectoryError",
}
MAX_MESSAGE_LINES = 6
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit)(?:\([\w.]+\))?): (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Failure:
    kind: str  # the exception's class name, e.g. "InputError"
    message: str  # a few lines
    user_error: bool


def explain(error: BaseException) -> Failure:
    if _is_ray_wrapper(error):
        found = _original_in_text(_ANSI.sub("", str(error)))
        if found is not None:
            kind, message = found
            return Failure(kind, message, kind in USER_ERRORS)
    kind = type(error).__name__
    user_error = any(cls.__name__ in USER_ERRORS for cls in type(error).__mro__)
    return Failure(kind, _short(str(error)) or kind, user_error)


def _is_ray_wrapper(error: BaseException) -> bool:
    return type(error).__module__.startswith("ray.")


def _original_in_text(text: str) -> tuple[str, str] | None:
    """The first "Type: message" line of a remote traceback (the innermost cause comes first)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _EXCEPTION_LINE.match(line.strip())
        if match is None or match.group(1).startswith("ray."):
            continue
        kind = match.group(1).rsplit(".", 1)[-1]
        following = []
        for more in lines[index + 1 :]:
            if not more.strip() or more.startswith("The above exception"):
                break
            following.append(more)
        return kind, _short("\n".join([match.group(2), *following]))
    return None


def _short(message: str) -> str:
    lines = message.strip().splitlines()
    if len(lines) > MAX_MESSAGE_LINES:
        lines = [*lines[:MAX_MESSAGE_LINES], f"... ({len(lines) - MAX_MESSAGE_LINES} more lines in the log)"]
    return "\n".join(lines)


@contextmanager
def reported(where: Callable[[], str | None], console: Console, debug: Callable[[], bool]) -> Iterator[None]:
    """Turn a failure inside into a few lines naming `where()` (the stage) and an exit status:
    130 for Ctrl-C, 2 for a user's mistake, 1 otherwise; the traceback goes to the run's log."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        console.print(f"interrupted in {where() or 'winnow'}; run the same command to resume", highlight=False)
        raise typer.Exit(130) from None
    except Exception as error:
        raise typer.Exit(report(error, where() or "winnow", console, debug())) from None


def report(error: Exception, where: str, console: Console, debug: bool) -> int:
    """Print what failed where (and the traceback when `debug`); returns the exit status."""
    failure = explain(error)
    log = run_logs.write_traceback(error, where)
    if debug:
        console.print("".join(traceback.format_exception(error)), highlight=False, markup=False)
    label = "" if failure.user_error else f"{failure.kind}: "
    console.print(f"[red]error:[/red] {where}: ", end="", highlight=False)
    console.print(f"{label}{failure.message}", highlight=False, markup=False)
    if not failure.user_error:
        where_traceback = f"the traceback is in {log}" if log else "no run log was open"
        console.print(f"  {where_traceback}; --debug prints it here", highlight=False, markup=False)
    return 2 if failure.user_error else 1
