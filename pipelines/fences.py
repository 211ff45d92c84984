"""Two fences that keep a run's writes and deletes inside its run folder.

1. Names. Every name a config gives that becomes part of a path (models, arms, warm-ups,
   selections, sources, benchmarks, LESS targets, the experiment's own name) follows one
   rule, checked when the config loads: `Name` (and `RunName` for `<arm>@s<seed>`).
2. Paths. Before a stage creates, moves onto or deletes anything, the path is normalised
   (a local one with symlinks resolved) and checked to lie inside the run folder
   (`check_inside`), so a name that slipped past the first fence still touches nothing
   outside it.

This module imports nothing of Winnow's: config models, storage and runs all use it.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Annotated

from pydantic import AfterValidator

MAX_NAME_CHARS = 64
NAME_RULE = (
    f"1 to {MAX_NAME_CHARS} characters of letters, digits, '_', '.' and '-', starting with a letter or digit, "
    "with no '..'"
)
# fullmatch, ASCII only: `$` with re.match lets a trailing newline through, and \d, \w take other scripts' digits
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_CHARS - 1}}}", re.ASCII)
SEED_MARK = "@s"  # <arm>@s<seed>: a name has no "@", so the arm's name is what precedes it
_SEED = re.compile(r"[0-9]{1,9}", re.ASCII)


class PathOutsideRunError(ValueError):
    """A stage was about to touch a path outside its run folder; nothing was touched."""


def is_name(name) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name


def check_name(name: str) -> str:
    if not is_name(name):
        raise ValueError(f"not an allowed name: {NAME_RULE}")  # the config error shows the name
    return name


def is_run_name(name) -> bool:
    """An arm's name, or `<arm>@s<seed>` for one seed's run of it."""
    if not isinstance(name, str):
        return False
    arm, mark, seed = name.partition(SEED_MARK)
    return is_name(arm) and (not mark or _SEED.fullmatch(seed) is not None)


def check_run_name(name: str) -> str:
    if not is_run_name(name):
        raise ValueError(f"not an allowed name: {NAME_RULE}; a seed's run adds {SEED_MARK}<seed>")
    return name


Name = Annotated[str, AfterValidator(check_name)]
RunName = Annotated[str, AfterValidator(check_run_name)]


def check_inside(run_dir: str, location: str) -> str:
    """`location` unchanged when it lies strictly inside `run_dir`; else PathOutsideRunError.

    Local paths are compared after os.path.realpath (symlinks resolved, `..` folded), so a
    symlink inside the run folder that points elsewhere counts as elsewhere. Object-store
    URIs are compared as normalised POSIX keys in the same scheme: a `..` that climbs above
    the run's prefix is outside, whatever the store would make of it.
    """
    root_scheme, root = _comparable(run_dir)
    scheme, target = _comparable(location)
    if scheme == root_scheme and target.startswith(root.rstrip("/") + "/"):
        return location
    shown = "" if target == location else f" (it resolves to {target})"
    raise PathOutsideRunError(
        f"{location}{shown} is not inside the run folder {run_dir}: refused to write, move or delete it"
    )


def _comparable(location: str) -> tuple[str, str]:
    """(scheme, normalised path): scheme "" for a local path or a file:// URI."""
    if "://" not in location:
        return "", os.path.realpath(os.path.expanduser(location))
    scheme, rest = location.split("://", 1)
    if scheme == "file":
        return "", os.path.realpath(rest)
    return scheme, posixpath.normpath("/" + rest)
