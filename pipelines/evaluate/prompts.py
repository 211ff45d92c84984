"""Evaluation prompts as chat messages; the engine applies the model's chat template.

Free-form questions get the CFT study's zero-shot chain-of-thought prompt: the system turn
"Please reason step by step, and put your final answer within \\boxed{}." and the question
as the user turn. Multiple-choice questions (GPQA) list the options under letters, in the
order the loader fixed from the question id, and ask for the letter in the box.
"""

from __future__ import annotations

COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
CHOICE_INSTRUCTION = "Answer with the letter of the correct option, e.g. \\boxed{A}."
LETTERS = "ABCDEFGHIJ"
PROMPT_VERSION = 1  # part of the evaluation's identity: a changed prompt re-runs generation


def cot_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": question.strip()}]


def choice_messages(question: str, choices: list[str]) -> list[dict[str, str]]:
    if not 2 <= len(choices) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2 to {len(LETTERS)} options, got {len(choices)}")
    options = "\n".join(f"({letter}) {choice.strip()}" for letter, choice in zip(LETTERS, choices, strict=False))
    user = f"{question.strip()}\n\n{options}\n\n{CHOICE_INSTRUCTION}"
    return [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": user}]


def messages_for(row: dict) -> list[dict[str, str]]:
    """The prompt of one benchmark row (schemas/evaluate.py BENCHMARK)."""
    if row["kind"] == "choice":
        return choice_messages(row["question"], row["choices"] or [])
    return cot_messages(row["question"])
