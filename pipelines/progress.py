"""Stage progress for people: a live bar in a terminal, a line every few seconds in logs."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LOG_EVERY_SECONDS = 5.0


class StageProgress:
    def __init__(self, stage: str, total: int, what: str, console: Console | None = None):
        self.stage, self.total, self.what, self.done, self.detail = stage, total, what, 0, ""
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal
        self.last_log = 0.0

    def __enter__(self):
        if self.live:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.bar.start()
            self.task = self.bar.add_task(f"{self.stage}: {self.what}", total=self.total, detail="")
        return self

    def advance(self, steps: int = 1, detail: str = "") -> None:
        self.done += steps
        self.detail = detail or self.detail
        if self.live:
            self.bar.update(self.task, advance=steps, detail=self.detail)
        elif time.monotonic() - self.last_log >= LOG_EVERY_SECONDS or self.done == self.total:
            self.last_log = time.monotonic()
            self.console.print(f"{self.stage}: {self.done}/{self.total} {self.what} {self.detail}", highlight=False)

    def __exit__(self, *exc):
        if self.live:
            self.bar.stop()
        return False


def note(message: str) -> None:
    Console(stderr=True).print(message, highlight=False)
