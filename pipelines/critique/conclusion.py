"""The teacher's verdict out of a critique: 'right', 'wrong', or None when it gives none.

Teachers are asked to end with `Conclusion: right [END]` or `Conclusion: wrong [END]`, and
mostly do, in many dresses: `**Conclusion: right [END]**`, `Conclusion:** wrong`,
`Conclusion: **right**`. Some write a "Conclusion" heading and then a sentence ("The
student's solution is incorrect ..."). Both are read here, the last occurrence winning (a
teacher that changes its mind ends with its final word). `correct`/`incorrect` count as
`right`/`wrong`, and "not correct" as `wrong`. Text without either form has no conclusion:
the word "correct" in passing ("the correct answer is 4") is not a verdict.
"""

from __future__ import annotations

import re

END_MARKER = re.compile(r"[ \t]*\[END\]", re.IGNORECASE)
VERDICT = r"(?P<negation>not\s+)?(?P<word>right|correct|wrong|incorrect)\b"
LABELLED = re.compile(r"\bconclusion\b[\s:*_#.\-]{0,12}" + VERDICT, re.IGNORECASE)
HEADING = re.compile(r"\bconclusion\b", re.IGNORECASE)
SENTENCE = re.compile(r"\b(?:is|was|are)\s+[*_]{0,2}" + VERDICT, re.IGNORECASE)
WORDS = {"right": "right", "correct": "right", "wrong": "wrong", "incorrect": "wrong"}
FLIP = {"right": "wrong", "wrong": "right"}


def strip_end(critique: str) -> str:
    """The critique without its `[END]` markers and trailing whitespace."""
    return END_MARKER.sub("", critique).rstrip()


def parse(critique: str | None) -> str | None:
    """'right' or 'wrong' from the last `Conclusion: ...`, else from the last "is right/
    wrong/..." after the last "Conclusion" heading; None when neither is there."""
    if not critique:
        return None
    text = strip_end(critique)
    labelled = list(LABELLED.finditer(text))
    if labelled:
        return _verdict(labelled[-1])
    headings = list(HEADING.finditer(text))
    if not headings:
        return None
    sentences = list(SENTENCE.finditer(text, headings[-1].end()))
    return _verdict(sentences[-1]) if sentences else None


def _verdict(match: re.Match) -> str:
    word = WORDS[match.group("word").lower()]
    return FLIP[word] if match.group("negation") else word
