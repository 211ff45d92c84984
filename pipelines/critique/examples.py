"""The CFT training example, as the Critique Fine-Tuning paper builds it."""

from __future__ import annotations

CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."


def cft_turns(question: str, solution: str, critique: str) -> list[tuple[str, str]]:
    """User: instruction + Question + Solution; assistant: "Critique:" + the critique."""
    user = f"{CFT_INSTRUCTION}\n\nQuestion:\n{question}\n\nSolution:\n{solution}"
    return [("user", user), ("assistant", f"Critique:\n{critique}")]
