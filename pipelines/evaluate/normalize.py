"""Cheap, bounded text work for grading: normalise an answer, split lists.

Everything here is string handling on short strings (no sympy), so it cannot hang; the
symbolic check that can lives in `symbolic.py`, behind a timeout, and numbers are read
(exactly) in `numbers.py`. The normalisation follows the MATH benchmark's conventions:
units, degrees, dollar signs, `\\left`/`\\right`, spacing commands and thousands
separators carry no meaning for grading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ANSWER_CHARS = 2_000  # longer "answers" are runaway generations, compared as strings only

SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad\b|~")
SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr|bigg|Bigg)(?![a-zA-Z])")
DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree")
TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
UNIT_WORD = r"[a-zA-Z]{1,12}(?:[ /.\-][a-zA-Z]{1,12}){0,3}"
TRAILING_UNIT_COMMAND = re.compile(
    rf"(?<=[\d}}.])\s*\\(?:text|mbox|mathrm)\s*\{{\s*~?\s*(?:{UNIT_WORD})\s*\}}\s*(?:\^\s*\{{?\d\}}?)?\s*$"
)
TRAILING_UNIT_WORD = re.compile(rf"(?<=\d)\s+({UNIT_WORD})\s*(?:\^\s*\{{?\d\}}?)?\s*$")
NOT_UNITS = {"pi", "i", "e", "x", "y", "z", "n", "k", "sqrt", "and", "or", "to", "oo", "inf", "infinity"}
ASSIGNMENT = re.compile(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+)\s*(?:=|\\in)\s*(?!.*(?:=|\\in))")
OPTION = re.compile(r"^\(?([a-jA-J])\)?\.?$")
THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
SLASHED_MIXED = re.compile(r"^([-+]?\d+)\s+(\d+)\s*/\s*(\d+)$")  # "2 1/2": two and a half, not 21/2
WORD = re.compile(r"^[a-zA-Z][a-zA-Z '\-]{2,}$")


@dataclass(frozen=True)
class Answer:
    text: str  # normalised, spaces kept where LaTeX needs them (for the symbolic check)
    key: str  # `text` without spaces, lower-cased: the exact-match key
    percent: bool  # the answer carried a percent sign


def normalize(answer: str) -> Answer:
    """The answer with its meaningless decoration removed (see the module doc)."""
    text = answer.strip()[:MAX_ANSWER_CHARS]
    percent = bool(re.search(r"\\?%|\\text\{\s*percent\s*\}|\bpercent\b", text))
    text = _strip_delimiters(text)
    text = text.replace("\n", " ").replace("\\displaystyle", "")
    text = re.sub(r"\\(?:left|right)\.", "", text)
    text = SIZING.sub("", text)
    text = re.sub(r"\{,\}", ",", text)  # 1{,}000
    text = re.sub(r"(?<=\d),\\[!,]\s*(?=\d{3})", ",", text)  # 10,\!080
    text = SPACING.sub(" ", text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\b[bvBV]matrix\b", "pmatrix", text)
    text = DEGREES.sub("", text)
    text = re.sub(r"\\?%|\\text\{\s*percent\s*\}|\bpercent\b", "", text)
    text = text.replace("\\$", "").replace("$", "")
    text = TRAILING_UNIT_COMMAND.sub("", text)
    text = TEXT_COMMAND.sub(r"\1", text)
    text = _drop_trailing_unit_word(text)
    text = ASSIGNMENT.sub("", text.strip())
    text = _fix_fracs_and_roots(text).strip().rstrip(".").strip()
    option = OPTION.match(text)
    if option:  # "(B)", "B." -> "B"
        text = option.group(1)
    text = SLASHED_MIXED.sub(r"\1\\frac{\2}{\3}", text)
    compact = re.sub(r"\s+", "", text)
    if THOUSANDS.match(compact):
        text = compact = compact.replace(",", "")
    return Answer(text=text, key=compact.lower(), percent=percent)


def _strip_delimiters(text: str) -> str:
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            return text[len(left) : len(text) - len(right)].strip()
    return text


def _drop_trailing_unit_word(text: str) -> str:
    """ "27 miles" -> "27", "12 km/h" -> "12"; "2 pi" and "3 x" keep their letters."""
    match = TRAILING_UNIT_WORD.search(text)
    if not match or match.group(1).lower() in NOT_UNITS:
        return text
    return text[: match.start()]


def _fix_fracs_and_roots(text: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \frac1{x} -> \frac{1}{x}, \sqrt3 -> \sqrt{3}."""
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", text)
    text = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", text)
    return re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", text)


def is_word(answer: Answer) -> bool:
    """A word or phrase ("east", "True", "Evelyn"): compared as text, never as symbols."""
    return bool(WORD.match(answer.text)) and answer.key not in NOT_UNITS


# --- tuples, intervals, lists -------------------------------------------------------

BRACKETS = {"(": ")", "[": "]", "\\{": "\\}"}


@dataclass(frozen=True)
class Elements:
    items: list[str]
    opening: str  # "(", "[", "\\{", or "" for a bare comma list
    closing: str


def split_elements(text: str) -> Elements | None:
    """The top-level comma-separated items of a tuple, interval, set or bare list, or None."""
    text = text.strip()
    for opening, closing in (("\\{", "\\}"), ("(", ")"), ("[", "]"), ("(", "]"), ("[", ")")):
        if text.startswith(opening) and text.endswith(closing) and _outer_pair(text, opening):
            items = _top_level_split(text[len(opening) : len(text) - len(closing)])
            return Elements(items, opening, closing) if len(items) > 1 or opening == "\\{" else None
    if "\\begin" in text:
        return None  # a matrix's commas are not list separators
    items = _top_level_split(text)
    return Elements(items, "", "") if len(items) > 1 else None


def _outer_pair(text: str, opening: str) -> bool:
    """True when the first bracket closes at the very end: "(1,2)" yes, "(0,1) \\cup (2,3)" no."""
    depth = 0
    index = 0
    while index < len(text):
        if text.startswith("\\{", index) or (text[index] in "([" and not text.startswith("\\", index - 1)):
            depth += 1
        elif text.startswith("\\}", index) or text[index] in ")]":
            depth -= 1
            if depth == 0:
                end = index + (2 if text.startswith("\\}", index) else 1)
                return end == len(text)
        index += 2 if text.startswith(("\\{", "\\}"), index) else 1
    return False


def _top_level_split(text: str) -> list[str]:
    items, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item] if len(items) > 1 else items
