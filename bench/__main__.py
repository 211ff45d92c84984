"""`python -m bench [NAME ...] [--quick]`: run the benchmarks (all by default)."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = (
    "ingest",
    "scoring",
    "costly",
    "selection",
    "generation",
    "training",
    "near_dup",
    "near_dup_datasketch",
    "near_dup_scale",
    "sql_selectors",
    "sql_scale",
    "embedding",
    "model_loss_reference",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run, of {BENCHMARKS} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    for name in args.names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main(quick=args.quick)


if __name__ == "__main__":
    main()
