"""Helpers shared by benchmarks: peak memory of a process tree, results on disk."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


class Sampler:
    """A thread that calls `sample()` every `every` seconds between `with` entry and exit
    (`sample` returns False to stop early)."""

    every = 0.2

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set() and self.sample() is not False:
            time.sleep(self.every)

    def sample(self) -> bool | None:
        raise NotImplementedError


class TreeMemory(Sampler):
    """Samples the summed PSS (shared pages split fairly) of a process and its descendants."""

    def __init__(self, pid: int, every_seconds: float = 0.2):
        super().__init__()
        self.root, self.every = psutil.Process(pid), every_seconds
        self.peak_pss = self.peak_root_rss = self.peak_process_rss = 0

    def sample(self) -> bool | None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
            self.peak_root_rss = max(self.peak_root_rss, self.root.memory_info().rss)
        except psutil.NoSuchProcess:
            return False
        total = 0
        for process in processes:
            try:
                memory = process.memory_full_info()
                total += memory.pss
                self.peak_process_rss = max(self.peak_process_rss, memory.rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        self.peak_pss = max(self.peak_pss, total)
        return None


def run_measured(command: list[str], env: dict | None = None) -> tuple[float, TreeMemory]:
    """Run a command to completion; (wall seconds, its tree's memory peaks)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeMemory(process.pid) as memory:
        _, errors = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{command} failed: {errors[-3000:]}")
    return time.perf_counter() - started, memory


def write_config(folder: Path, name: str, paths: list[Path], **sections) -> Path:
    """A run config in `folder` (its run folder `folder/run`) ingesting `paths` as one files
    source, with `sections` (score:, select:, ...) beside; its path."""
    import yaml

    source = {"kind": "files", "name": "pool", "paths": [str(p) for p in paths]}
    document = {"name": name, "run_dir": str(folder / "run"), "ingest": {"sources": [source]}, **sections}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def run_winnow(command: str, config_path: Path) -> tuple[float, TreeMemory]:
    """`winnow COMMAND CONFIG` as a user runs it (this venv's bin first on PATH, for `ray
    start`), in a subprocess: (wall seconds, its tree's memory peaks)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return run_measured([str(bin_dir / "winnow"), command, str(config_path)], env)


def machine() -> str:
    return f"{platform.machine()}, {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB"


def save(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2))
    return path


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def run_parts(name: str, parts: dict, chosen: tuple[str, ...], argument) -> dict:
    """Run the chosen parts of a benchmark (each prints its lines); save what they return,
    under the benchmark's name when all ran, else under `name-part-...`."""
    print(f"{name} benchmark on {machine()}")
    results = {part: parts[part](argument) for part in chosen}
    label = name if set(chosen) == set(parts) else "-".join((name, *chosen))
    print(f"  results: {save(label, results)}")
    return results


def parts_from_argv(parts: dict, argv: list[str]) -> tuple[str, ...]:
    """Part names given on the command line (all when none); an unknown name is an error,
    not a silent full run."""
    named = tuple(a for a in argv if not a.startswith("--"))
    if unknown := [a for a in named if a not in parts]:
        raise SystemExit(f"unknown benchmark part(s) {unknown}; choose from {list(parts)}")
    return named or tuple(parts)
