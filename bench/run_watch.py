"""Watch a long `winnow run` and write its per-stage table (issue 28's 1M run).

    python -m bench.run_watch OUT -- winnow run configs/pool_1m.yaml ...   # run it, watched
    python -m bench.run_watch OUT --table RUN_DIR                          # the table so far

Watching: the command's console goes to OUT/console.log, each line stamped with the seconds
since the epoch; every 15 s a sample of the command's process tree goes to OUT/samples.jsonl
(the largest process's RSS and command, the tree's summed RSS and PSS, the load average).
Several watched attempts (a killed run, then its resume) append to the same files.

The table: each finished stage's manifest (wall seconds of its last attempt, rows, finish
time) and the memory peaks of the samples taken while it ran, one row a table. An attempt a
kill ended adds its console time to the stage it was in: see `attempts` in the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil

SAMPLE_SECONDS = 15


def sample(root: psutil.Process) -> dict:
    """The tree's memory now: its largest process (RSS) and the sums over all of it."""
    largest, rss_sum, pss_sum = (0, ""), 0, 0
    for process in [root, *root.children(recursive=True)]:
        try:
            memory = process.memory_full_info()
            name = " ".join(process.cmdline())[:120]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss_sum, pss_sum = rss_sum + memory.rss, pss_sum + memory.pss
        largest = max(largest, (memory.rss, name))
    return {
        "t": time.time(),
        "largest_rss": largest[0],
        "largest": largest[1],
        "tree_rss": rss_sum,
        "tree_pss": pss_sum,
        "load1": os.getloadavg()[0],
    }


def watch(out: Path, command: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "console.log", "a") as console, open(out / "samples.jsonl", "a") as samples:
        console.write(f"{time.time():.0f} # run_watch: {' '.join(command)}\n")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done = threading.Event()

        def sampler():
            root = psutil.Process(process.pid)
            while not done.wait(SAMPLE_SECONDS):
                samples.write(json.dumps(sample(root)) + "\n")
                samples.flush()

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        for line in process.stdout:  # a log, not a terminal: the stages print now and then
            console.write(f"{time.time():.0f} {line}")
            console.flush()
        code = process.wait()
        done.set()
        thread.join()
        console.write(f"{time.time():.0f} # run_watch: exit {code}\n")
    return code


def manifests(run_dir: Path) -> list[dict]:
    """Every finished table's manifest, in finishing order."""
    found = []
    for path in run_dir.rglob("_SUCCESS.json"):
        if "_work" in path.parts:
            continue
        manifest = json.loads(path.read_text())
        manifest["table"] = str(path.parent.relative_to(run_dir))
        found.append(manifest)
    return sorted(found, key=lambda m: m.get("finished_at", ""))


def table(out: Path, run_dir: Path) -> list[dict]:
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line]
    rows = []
    for m in manifests(run_dir):
        end = datetime.strptime(m["finished_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()  # with its offset
        start = end - m["wall_seconds"]
        during = [s for s in samples if start <= s["t"] <= end]
        rows.append(
            {
                "table": m["table"],
                "wall_seconds": m["wall_seconds"],
                "rows": m.get("rows_scored", m.get("rows_out")),
                "finished_at": m["finished_at"],
                "largest_rss": max((s["largest_rss"] for s in during), default=None),
                "largest": max(during, key=lambda s: s["largest_rss"])["largest"] if during else None,
                "tree_pss": max((s["tree_pss"] for s in during), default=None),
                "load1_mean": sum(s["load1"] for s in during) / len(during) if during else None,
            }
        )
    return rows


def line(r: dict) -> str:
    def gib(n):
        return f"{n / 2**30:.2f}" if n else "-"

    rate = f"{r['rows'] / r['wall_seconds']:,.0f}" if r["rows"] else "-"
    return (
        f"{r['table']:32} {r['wall_seconds']:9.1f} s {r['rows'] or '-':>10} rows {rate:>8} rows/s largest "
        f"{gib(r['largest_rss'])} GiB tree PSS {gib(r['tree_pss'])} GiB load {r['load1_mean'] or 0:.1f}"
    )


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    if argv[1] == "--table":
        rows = table(out, Path(argv[2]))
        (out / "table.json").write_text(json.dumps(rows, indent=2))
        for r in rows:
            print(line(r))
        return 0
    if argv[1] != "--":
        raise SystemExit(__doc__)
    return watch(out, argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
