"""Run an experiment on the Ray cluster this job was submitted to.

ray job submit --working-dir . -- python -m ray_jobs.run --config configs/demo.yaml
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines import config, experiment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--run-dir", help="override the config's run_dir (local path or URI)")
    parser.add_argument("--stage", action="append", help="run only this stage (repeatable)")
    args = parser.parse_args(argv)
    try:
        loaded = config.load(args.config, args.run_dir)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifests = experiment.run(loaded, args.stage)
    summary = {
        name: {k: m[k] for k in ("rows_in", "rows_out", "rows_rejected", "wall_seconds")}
        for name, m in manifests.items()
    }
    print(json.dumps({"run_dir": loaded.run_dir, "stages": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
