"""Off a terminal (CI, `ray job submit`) a stage logs like a service: a start line, a line
every LOG_EVERY_SECONDS whatever the refresh rate, a summary; never a line per refresh."""

from __future__ import annotations

import io
import time

from rich.console import Console

from pipelines import progress as progress_module
from pipelines.progress import StageProgress


def _log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def test_a_thousand_refreshes_make_a_few_lines(monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.5)
    console, buffer = _log_console()
    with StageProgress("score embedding", 1000, "rows", console=console) as progress:
        for done in range(1, 1001):
            progress.update(done)
            progress.update(done)  # a poll that saw no change: still no line
            time.sleep(0.0012)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "score embedding: started (rows, 1,000 to do)"
    assert lines[-1].startswith("score embedding: 1,000/1,000 rows in ")
    heartbeats = lines[1:-1]
    assert 1 <= len(heartbeats) <= 6, lines  # ~1.2-2 s of work at a line every 0.5 s
    assert all(" rows/s" in line for line in heartbeats if "nothing done yet" not in line)


def test_a_stage_that_waits_says_so_and_its_time_left_appears_once_work_moves(monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.3)
    console, buffer = _log_console()
    with StageProgress("score model_loss", 10, "rows", console=console) as progress:
        time.sleep(0.45)  # the engine starting: nothing done
        progress.update(2)
        time.sleep(0.35)
    lines = buffer.getvalue().splitlines()
    assert any(line.startswith("score model_loss: nothing done yet, ") for line in lines), lines
    assert any(line.startswith("score model_loss: 2/10 rows, ") and line.endswith(" left") for line in lines), lines
    assert not any(line.startswith("score model_loss: 0/") for line in lines)
    assert lines[-1].startswith("score model_loss: 2/10 rows in ")


def test_durations_read_as_people_write_them():
    assert progress_module._duration(42.4) == "42 s"
    assert progress_module._duration(185) == "3 min 05 s"
    assert progress_module._duration(7620) == "2 h 07 min"
