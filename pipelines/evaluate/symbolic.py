"""Symbolic equality (math-verify) in a worker process, so a timeout really bounds it.

math-verify parses LaTeX into sympy and compares; some inputs make sympy run for minutes
(`9^{9^{9^{9}}}` against a number ran past 60 s here). math-verify's own timeout is
`signal.alarm`: it only works in a main thread, and a signal cannot stop a long C call.
So each check runs in a long-lived worker process: the worker stops a slow check itself
with an interval timer and answers False, and the caller kills the worker when no answer
comes within the time limit plus `GRACE_S` (a check stuck in C), then starts a new one
for the next check. A check therefore returns within `timeout_s + GRACE_S`, from any
thread; a check that timed out counts as not equal.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass

from pipelines.evaluate.numbers import EXACT_ROUNDING

GRACE_S = 1.0  # beyond the check's own limit, before the caller kills the worker
START_TIMEOUT_S = 120.0  # importing sympy on a busy machine can take a while
REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER_CODE = f"import sys; sys.path.insert(0, {REPOSITORY!r}); from pipelines.evaluate.symbolic import serve; serve()"


@dataclass(frozen=True)
class Verdict:
    equal: bool
    status: str  # ok | timeout (the worker stopped it) | killed (the caller did) | error: ...
    seconds: float


class SymbolicChecker:
    """One worker process; thread-safe (checks take turns). Use several for parallelism."""

    def __init__(self, grace_s: float = GRACE_S):
        self.grace_s = grace_s
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._ready = False
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        _live.add(self)

    def equal(self, predicted: str, gold: str, timeout_s: float, float_rounding: int = EXACT_ROUNDING) -> Verdict:
        """math-verify's verdict on `predicted` against `gold`, within `timeout_s` (+ grace);
        where a side is a float, both are rounded to `float_rounding` decimal places first
        (math-verify's own default, 6, would call 1023.9999999 equal to 1024)."""
        started = time.monotonic()
        if timeout_s <= 0:
            return Verdict(False, "timeout", 0.0)
        with self._lock:
            process = self._worker()
            request = {"predicted": predicted, "gold": gold, "timeout_s": timeout_s, "float_rounding": float_rounding}
            request = json.dumps(request)
            try:
                process.stdin.write(request + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError) as error:
                self._kill(restart=True)
                return Verdict(False, f"error: worker gone ({error})", time.monotonic() - started)
            ready, _, _ = select.select([process.stdout], [], [], timeout_s + self.grace_s)
            line = process.stdout.readline() if ready else ""
            if not line:
                self._kill(restart=True)  # stuck past its own timer, or dead: start the next one now
                return Verdict(False, "killed" if not ready else "error: worker died", time.monotonic() - started)
        answer = json.loads(line)
        return Verdict(answer["equal"], answer["status"], time.monotonic() - started)

    def _worker(self) -> subprocess.Popen:
        if self._owner_pid != os.getpid():  # a forked copy must not share the parent's pipes
            self._process, self._owner_pid = None, os.getpid()
        if self._process is None or self._process.poll() is not None:
            self._start()
        if not self._ready:
            ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_S)
            if not ready or self._process.stdout.readline().strip() != "ready":
                self._kill(restart=False)
                raise RuntimeError(f"the math-verify worker did not start within {START_TIMEOUT_S:.0f} s")
            self._ready = True
        return self._process

    def _start(self) -> None:
        """Start a worker; it imports sympy while the caller goes on (`_worker` waits for it)."""
        self._process = subprocess.Popen(
            [sys.executable, "-c", WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._ready = False
        self.starts += 1

    def _kill(self, restart: bool) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if restart:
            self._start()

    def close(self) -> None:
        if self._owner_pid == os.getpid():
            self._kill(restart=False)


_live: weakref.WeakSet[SymbolicChecker] = weakref.WeakSet()  # closed at exit: no orphaned workers


@atexit.register
def _close_all() -> None:
    for checker in list(_live):
        checker.close()


_default: SymbolicChecker | None = None
_default_lock = threading.Lock()


def default_checker() -> SymbolicChecker:
    """The process's shared checker, started on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SymbolicChecker()
        return _default


# --- the worker side -----------------------------------------------------------------


class _CheckTimeout(BaseException):
    """A BaseException, so that sympy's and math-verify's `except Exception` cannot swallow it."""


REPEAT_S = 0.05  # after the limit the timer keeps firing, in case a bare `except:` swallowed it


def serve() -> None:
    """Worker loop: one JSON request a line on stdin, one JSON verdict a line on stdout."""
    import logging
    import signal

    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    logging.disable(logging.CRITICAL)  # math-verify warns when its own timeout is off
    checking = [False]  # the timer only interrupts a check, never the loop around it

    def on_alarm(signum, frame):
        if checking[0]:
            raise _CheckTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    _parse("0")  # import and warm sympy before saying ready
    protocol.write("ready\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            equal, status = _timed_check(request, checking, signal)
        except _CheckTimeout:  # the timer fired while the check was being left
            equal, status = False, "timeout"
        protocol.write(json.dumps({"equal": bool(equal), "status": status}) + "\n")


def _timed_check(request: dict, checking: list[bool], signal) -> tuple[bool, str]:
    try:
        checking[0] = True
        signal.setitimer(signal.ITIMER_REAL, request["timeout_s"], REPEAT_S)
        return _verify(request["predicted"], request["gold"], request["float_rounding"]), "ok"
    except _CheckTimeout:
        return False, "timeout"
    except Exception as error:  # a parse or compare failure is a "not equal" verdict
        return False, f"error: {type(error).__name__}"
    finally:
        checking[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def _parse(text: str):
    """math-verify's parse of one answer: as LaTeX between `$`, else as a plain expression."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    parsed = parse(f"${text}$", [LatexExtractionConfig()], parsing_timeout=None)
    if any(not isinstance(item, str) for item in parsed):
        return parsed
    return parse(text, [ExprExtractionConfig()], parsing_timeout=None) or parsed  # "sqrt(2)/2"


def _verify(predicted: str, gold: str, float_rounding: int) -> bool:
    from math_verify import verify

    gold_parsed, predicted_parsed = _parse(gold), _parse(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    return verify(gold_parsed, predicted_parsed, float_rounding=float_rounding, timeout_seconds=None)
