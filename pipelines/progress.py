"""Stage progress for people: a live bar in a terminal; in a log (CI, `ray job submit`) a
line when the stage starts, one every 30 s while it runs (count, rate, time left; "nothing
done yet" while it waits, so a stalled stage is never silent) and a summary when it ends:
never a line per refresh.

Work done in Ray workers (actor calls, training steps) reports to the bar through a counter
actor (`StageProgress.counter()`): workers add to it as each batch or step finishes, and a
driver thread moves the bar, so it moves with the work rather than when a part is written.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY_SECONDS = 30.0
POLL_SECONDS = 0.5


def _duration(seconds: float) -> str:
    """A duration as a person reads it in a log line: 42 s, 3 min 05 s, 2 h 07 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class StageProgress:
    def __init__(self, stage: str, total: int | None, what: str, console: Console | None = None):
        self.stage, self.total, self.what, self.done, self.detail = stage, total, what, 0, ""
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.started = time.monotonic()
        self._counter = None
        self.counted, self.redone = 0, 0  # the counter's raw units; units a lost worker's retry did again
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self):
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{self.stage}: {self.what}", total=self.total, detail="", rate="")
        else:
            to_do = f", {self.total:,} to do" if self.total is not None else ""
            self.console.print(f"{self.stage}: started ({self.what}{to_do})", highlight=False, soft_wrap=True)
            threading.Thread(target=self._log_every, name=f"log {self.stage}", daemon=True).start()
        return self

    def advance(self, steps: int = 1, detail: str = "") -> None:
        self.update(self.done + steps, detail)

    def update(self, done: int, detail: str = "") -> None:
        """Set the count of units done (never backwards) and, optionally, the detail text."""
        with self._lock:
            self.done = max(self.done, done if self.total is None else min(done, self.total))
            self.detail = detail or self.detail
            if self.live:
                self.bar.update(self.task, total=self.total, completed=self.done, detail=self.detail, rate=self._rate())

    def _log_every(self) -> None:
        """Off a terminal: the state every LOG_EVERY_SECONDS, whether or not work moved."""
        while not self._stop.wait(LOG_EVERY_SECONDS):
            with self._lock:
                self.console.print(self._status_line(), highlight=False, soft_wrap=True)

    def _status_line(self) -> str:
        elapsed = time.monotonic() - self.started
        if not self.done:
            return f"{self.stage}: nothing done yet, {_duration(elapsed)} in"
        of = f"/{self.total:,}" if self.total is not None else ""
        line = f"{self.stage}: {self.done:,}{of} {self.what}, {self._rate()}"
        if self.total is not None and self.done < self.total:
            line += f", {_duration((self.total - self.done) * elapsed / self.done)} left"
        return f"{line} {self.detail}".rstrip()

    def _summary_line(self) -> str:
        of = f"/{self.total:,}" if self.total is not None else ""
        elapsed = time.monotonic() - self.started
        detail = f"; {self.detail}" if self.detail else ""
        return f"{self.stage}: {self.done:,}{of} {self.what} in {_duration(elapsed)}{detail}"

    def counter(self):
        """A Ray actor that workers add finished units to (`counter.add.remote(n)`); the bar
        follows it until the stage ends. One a stage; created on first use."""
        if self._counter is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # on the driver's node: it lives as long as the stage does, whatever workers are lost
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
            self._counter = ray.remote(num_cpus=0, scheduling_strategy=here)(_Counter).remote()
            threading.Thread(target=self._follow, name=f"progress {self.stage}", daemon=True).start()
        return self._counter

    def _follow(self) -> None:
        import ray

        while not self._stop.wait(POLL_SECONDS):
            if not self._read_counter(ray):
                return

    def _read_counter(self, ray) -> bool:
        try:
            done, total, restarted = ray.get(self._counter.value.remote(), timeout=5)
        except Exception:  # a lost counter only stops the bar's moving, never the stage
            return False
        self.counted, self.redone = done, restarted
        if total is not None:
            self.total = total  # known only once the workers have planned (training steps)
        self.update(done)
        return True

    def _rate(self) -> str:
        seconds = time.monotonic() - self.started
        return f"{self.done / seconds:,.1f} {self.what}/s" if self.done and seconds > 0 else ""

    def _say_redone(self) -> None:
        """Units counted more than once: a retried task or a restarted training attempt did
        again what a lost node or worker had already finished (in-flight work lost with it
        never reached the counter, so this is a lower bound on the work lost)."""
        counted_twice = max(0, self.counted - self.total) if self.total is not None else 0
        redone = self.redone + counted_twice
        if redone:
            note(f"{self.stage}: {redone:,} {self.what} redone after a lost worker or node")

    def __exit__(self, *exc):
        self._stop.set()
        if self._counter is not None:
            import ray

            self._read_counter(ray)  # the last calls' units, which the thread may not have seen
            ray.kill(self._counter)
        if self.live:
            self.bar.stop()
        else:
            with self._lock:
                self.console.print(self._summary_line(), highlight=False, soft_wrap=True)
        self._say_redone()
        return False


class _Counter:
    """Units finished so far, added to by workers; read by the driver's progress thread."""

    def __init__(self):
        self.count, self.total, self.redone = 0, None, 0

    def add(self, units: int) -> None:
        self.count += units

    def start(self, done: int, total: int) -> None:
        """Where the work starts (a resumed run's step) and how much there is in all. A
        restarted attempt starts below the count: the steps between are done again."""
        self.redone += max(0, self.count - done) if self.total is not None else 0
        self.count, self.total = done, total

    def value(self) -> tuple[int, int | None, int]:
        return self.count, self.total, self.redone


def note(message: str) -> None:
    """A whole line, never wrapped by rich: a log keeps it on one line, a terminal wraps it."""
    Console(stderr=True).print(message, highlight=False, soft_wrap=True)
