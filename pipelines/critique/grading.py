"""Candidates graded against the pool's reference: the `verdict` a teacher's conclusion meets.

The final answer is extracted as evaluation does (last \\boxed{}, else "the answer is",
else the last number) and compared with the evaluation grader, each comparison under a
time limit. A short one-line solution is also compared whole: a pool's bare answer ("c",
"False", "-1, 2/3, 4") is its own final answer, which last-number extraction would miss.
Threads grade in parallel, each with its own math-verify worker process.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

BARE_ANSWER_CHARS = 100  # a one-line solution this short is also graded as a whole


class Grader:
    """`with Grader(timeout_s, workers) as grader: grader.verdicts([(solution, reference), ...])`."""

    def __init__(self, timeout_s: float = 5.0, workers: int = 2):
        self.timeout_s, self.workers = timeout_s, workers
        self.local, self.lock, self.checkers = threading.local(), threading.Lock(), []

    def __enter__(self) -> Grader:
        self.pool = ThreadPoolExecutor(max_workers=self.workers)
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()
        for checker in self.checkers:
            checker.close()

    def _checker(self):
        if not hasattr(self.local, "checker"):
            from pipelines.evaluate.symbolic import SymbolicChecker

            self.local.checker = SymbolicChecker()
            with self.lock:
                self.checkers.append(self.local.checker)
        return self.local.checker

    def verdict(self, solution: str | None, reference: str | None) -> str | None:
        """'right' or 'wrong'; None when there is no reference to grade against."""
        if reference is None or solution is None:
            return None
        from pipelines.evaluate.extract import final_answer
        from pipelines.evaluate.grade import is_equivalent

        answers = [final_answer(solution)]
        bare = solution.strip()
        if len(bare) <= BARE_ANSWER_CHARS and "\n" not in bare and bare not in answers:
            answers.append(bare)
        equal = any(is_equivalent(a, reference, self.timeout_s, self._checker()) for a in answers if a)
        return "right" if equal else "wrong"

    def verdicts(self, pairs: list[tuple[str | None, str | None]]) -> list[str | None]:
        return list(self.pool.map(lambda pair: self.verdict(*pair), pairs))
