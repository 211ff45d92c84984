"""Entry points for `ray job submit`: `run` for the whole experiment, one module a stage.

Run them as modules from the project root (`python -m ray_jobs.select ...`). Run as a file
path instead, this folder would come first on sys.path and ray_jobs/select.py would shadow
the standard library's `select`, breaking Ray in ways that are hard to trace; `launch`
refuses that with a message saying what to type.
"""

from __future__ import annotations

import sys


def launch(stage: str | None) -> None:
    """Exit with the runner's status for `stage` (None: every stage), given sys.argv."""
    name = stage or "run"
    if getattr(sys.modules["__main__"], "__spec__", None) is None:
        print(f"error: run this as a module from the project root: python -m ray_jobs.{name} ...", file=sys.stderr)
        sys.exit(2)
    from ray_jobs.run import main

    sys.exit(main(stages=[stage] if stage else None, prog=f"python -m ray_jobs.{name}"))
