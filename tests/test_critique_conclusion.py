"""Conclusions, prompts and the CFT format, on hand-written cases and the real critiques in
../shared/data/critiques (600 rows a file, written by a teacher in the paper's format)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from pipelines.critique import conclusion, prompts
from pipelines.critique.examples import CFT_INSTRUCTION, cft_turns, parse_cft

CASES = [
    ("The steps hold.\nConclusion: right [END]", "right"),
    ("**Conclusion: wrong [END]**", "wrong"),
    ("### Final\n**Conclusion:** right [END]", "right"),
    ("Conclusion: **Correct**", "right"),
    ("Conclusion: incorrect", "wrong"),
    ("Conclusion: not correct [END]", "wrong"),
    ("Conclusion: right. On second thought the sign flips.\nConclusion: wrong [END]", "wrong"),  # last wins
    ("### Conclusion\n\nThe student's solution is **right**.\n\n[END]", "right"),
    ("### Conclusion\n\nThe solution is incorrect. The correct answer is \\(\\boxed{5}\\). [END]", "wrong"),
    ("In conclusion, the student's answer is wrong.", "wrong"),
    ("The correct answer is 4, and that is what the student wrote.", None),  # "correct" in passing
    ("Conclusion: [END]", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_conclusion_cases(text, expected):
    assert conclusion.parse(text) == expected


def test_end_marker_is_stripped():
    assert conclusion.strip_end("Fine.\nConclusion: right [END]\n\n") == "Fine.\nConclusion: right"
    assert conclusion.strip_end("**Conclusion: wrong [END]**") == "**Conclusion: wrong**"


def real_examples(shared_data):
    folder = shared_data / "critiques"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (the real CFT examples live beside the checkout in CI)")
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            rows += [(path.name, number, json.loads(line)) for number, line in enumerate(handle, 1)]
    return rows


def test_every_real_critique_has_a_conclusion(shared_data):
    rows = real_examples(shared_data)
    assert len(rows) == 1800
    labels = Counter()
    for name, number, row in rows:
        critique = row["messages"][1]["content"]
        found = conclusion.parse(critique)
        assert found in ("right", "wrong"), f"{name} row {number}: no conclusion in ...{critique[-300:]!r}"
        labels[found] += 1
        tail = conclusion.strip_end(critique)[-60:]
        if "Conclusion: right" in tail or "Conclusion: wrong" in tail:  # the plain form agrees with the parse
            assert tail.rsplit("Conclusion: ", 1)[1].startswith(found)
    assert labels["right"] > labels["wrong"] > 100  # these files are mostly right answers


def test_real_examples_round_trip_through_the_cft_format(shared_data):
    for name, number, row in real_examples(shared_data):
        question, solution, critique = parse_cft(row["messages"])
        rebuilt = [{"role": role, "content": content} for role, content in cft_turns(question, solution, critique)]
        assert rebuilt == row["messages"], f"{name} row {number}"


def test_parse_cft_rejects_other_conversations():
    with pytest.raises(ValueError, match="one user and one assistant"):
        parse_cft([{"role": "user", "content": "hi"}])
    with pytest.raises(ValueError, match="CFT instruction"):
        parse_cft([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Critique:\nok"}])
    good_user = f"{CFT_INSTRUCTION}\n\nQuestion:\nQ\n\nSolution:\nS"
    with pytest.raises(ValueError, match="Critique:"):
        parse_cft([{"role": "user", "content": good_user}, {"role": "assistant", "content": "fine"}])


def test_builtin_prompts_and_templates(tmp_path):
    system = prompts.load("teacher_system")
    assert "Conclusion: right [END]" in system.text and "Conclusion: wrong [END]" in system.text
    assert system.source == "builtin:teacher_system" and len(system.sha256) == 64
    user = prompts.load("teacher_user", needs=("question", "solution"))
    filled = prompts.fill(user.text, question="What is {x}^2 when x = 3?", solution="$\\boxed{9}$ {solution}")
    assert filled == "Question:\nWhat is {x}^2 when x = 3?\n\nSolution:\n$\\boxed{9}$ {solution}"
    custom = tmp_path / "mine.txt"
    custom.write_text("Q: {question}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"\{solution\}"):
        prompts.load(str(custom), needs=("question", "solution"))
    with pytest.raises(FileNotFoundError, match="not a built-in"):
        prompts.load("no_such_prompt")
