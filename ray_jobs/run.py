"""Run an experiment, or some of its stages, on the Ray cluster this job was submitted to.

ray job submit --runtime-env ray_jobs/runtime_env.yaml --working-dir . -- \\
    python -m ray_jobs.run --config configs/demo.yaml [--run-dir s3://BUCKET/runs/demo] [--stage ingest]

Inside `ray job submit` (and on KubeRay), RAY_ADDRESS names the cluster and every stage
connects to it; run anywhere else, Winnow starts an embedded local Ray. The stage modules
beside this one (`python -m ray_jobs.ingest ...`) call `main` with their one stage.
"""

from __future__ import annotations

import argparse
import json
import sys

SUMMARY_KEYS = ("rows_in", "rows_out", "duplicates", "rows_rejected", "wall_seconds")


def main(argv: list[str] | None = None, stages: list[str] | None = None, prog: str | None = None) -> int:
    """Run `stages` (None: all, or those named with --stage) of the config; 0 on success, 2 on bad input."""
    parser = _parser(prog, stages)
    args = parser.parse_args(argv)
    chosen = stages or args.stage
    from pipelines import config, experiment  # after parsing, so --help stays instant

    unknown = [name for name in chosen or [] if name not in experiment.STAGES]
    if unknown:
        print(
            f"error: stage {', '.join(unknown)} is not available in this version of Winnow; "
            f"stages: {', '.join(experiment.STAGES)}",
            file=sys.stderr,
        )
        return 2
    try:
        loaded = config.load(args.config, args.run_dir)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    status, manifests = _run(loaded, chosen, [prog or "ray_jobs.run", *(argv or sys.argv[1:])], args.debug)
    if status:
        return status
    summary = {table: {k: m[k] for k in SUMMARY_KEYS if k in m} for table, m in manifests.items()}
    print(json.dumps({"run_dir": loaded.run_dir, "stages": summary}, indent=2))
    return 0


def _run(loaded, chosen: list[str] | None, command: list[str], debug: bool) -> tuple[int, dict]:
    """(exit status, manifests): an error is a few lines naming the stage, its traceback in the run's log."""
    from rich.console import Console

    from pipelines import experiment, failures, ray_runtime, run_logs

    run_logs.start(loaded.run_dir, command)
    try:
        ray_runtime.configure(loaded.run_dir)
        return 0, experiment.run(loaded, chosen)
    except KeyboardInterrupt:
        print(f"interrupted in {experiment.running['stage']}; run the same command to resume", file=sys.stderr)
        return 130, {}
    except Exception as error:
        where = experiment.running["stage"] or "winnow"
        return failures.report(error, where, Console(stderr=True, soft_wrap=True), debug), {}
    finally:
        ray_runtime.shutdown()
        run_logs.stop()


def _parser(prog: str | None, stages: list[str] | None) -> argparse.ArgumentParser:
    if stages:
        description = f"Run the {', '.join(stages)} stage of an experiment on the Ray cluster this job runs in."
    else:
        description = __doc__
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--run-dir", help="override the config's run_dir (local path or s3://, gs:// URI)")
    parser.add_argument("--debug", action="store_true", help="print tracebacks here too (always in the run's logs)")
    if not stages:
        parser.add_argument("--stage", action="append", help="run only this stage (repeatable)")
    return parser


if __name__ == "__main__":
    from ray_jobs import launch

    launch(None)
