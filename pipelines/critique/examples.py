"""The CFT training example, as the Critique Fine-Tuning paper builds it."""

from __future__ import annotations

CFT_INSTRUCTION = "Please critique whether the following solution to the question is correct."


def cft_turns(question: str, solution: str, critique: str) -> list[tuple[str, str]]:
    """User: instruction + Question + Solution; assistant: "Critique:" + the critique."""
    user = f"{CFT_INSTRUCTION}\n\nQuestion:\n{question}\n\nSolution:\n{solution}"
    return [("user", user), ("assistant", f"Critique:\n{critique}")]


def parse_cft(messages: list[dict]) -> tuple[str, str, str]:
    """(question, solution, critique) of a CFT example in chat form; ValueError when it is not one."""
    turns = [(m["role"], m["content"]) for m in messages]
    if [role for role, _ in turns] != ["user", "assistant"]:
        raise ValueError(f"a CFT example is one user and one assistant turn, got {[r for r, _ in turns]}")
    user, assistant = turns[0][1], turns[1][1]
    head = f"{CFT_INSTRUCTION}\n\nQuestion:\n"
    if not user.startswith(head) or "\n\nSolution:\n" not in user:
        raise ValueError("the user turn lacks the CFT instruction, Question: or Solution: sections")
    if not assistant.startswith("Critique:\n"):
        raise ValueError("the assistant turn does not start with 'Critique:'")
    question, solution = user[len(head) :].split("\n\nSolution:\n", 1)
    return question, solution, assistant[len("Critique:\n") :]
