"""Is a model's answer the gold answer? The CFT study's grading rules, in order:

1. exact string, after normalisation (`normalize.py`: units, degrees, `\\$`, `\\left`,
   `\\text{}`, thousands separators, "x = " and option parentheses removed; case ignored);
2. numeric (`numbers.py`): integers and fractions exactly; a tolerance only where a decimal
   is written, at the precision the gold is written with (gold 3.14 takes 3.1416; gold
   10000 takes 10000.0 but not 9999.9); when either side carries a percent sign, gold x100
   and gold /100 count too;
3. element-wise for tuples, intervals and lists (intervals must also agree on open and
   closed ends; sets and bare comma lists in any order);
4. symbolic equality with math-verify, in a worker process (`symbolic.py`), its float
   rounding set by the same precision rule (`numbers.symbolic_rounding`).

The whole comparison shares one time limit, so one pathological answer costs at most
`timeout_s` plus the worker's grace second, and counts as wrong (after a killed worker, the
next symbolic check also waits for a new one to start, about 1.5 s here). Words ("east", "True")
are compared as text only: read as symbols, "east" and "seat" would be the same product.
Multiple-choice answers are graded by letter (`grade(..., kind="choice")`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pipelines.evaluate.extract import choice_letter, final_answer, letter_of
from pipelines.evaluate.normalize import Answer, Elements, is_word, normalize, split_elements
from pipelines.evaluate.numbers import numbers_equal, read_number, symbolic_rounding
from pipelines.evaluate.symbolic import SymbolicChecker, default_checker

OPTION_LETTERS = "ABCDEFGHIJ"
CACHE_LIMIT = 100_000  # verdicts kept per process; critique grades many candidates per gold


@dataclass(frozen=True)
class Check:
    equal: bool
    rule: str  # which rule decided: exact, numeric, elements, text, symbolic, empty, timeout, killed, error: ...


@dataclass(frozen=True)
class _Context:
    deadline: float  # time.monotonic() by which the whole comparison ends
    checker: SymbolicChecker


_cache: dict[tuple[str, str], Check] = {}


def is_equivalent(
    predicted: str | None, gold: str, timeout_s: float = 5.0, checker: SymbolicChecker | None = None
) -> bool:
    """True when `predicted` is a correct rendering of the `gold` answer.

    `checker`: the math-verify worker to use (default: the process's shared one); give
    each thread its own to grade in parallel.
    """
    return check(predicted, gold, timeout_s, checker).equal


def check(predicted: str | None, gold: str, timeout_s: float = 5.0, checker: SymbolicChecker | None = None) -> Check:
    """`is_equivalent` with the rule that decided (for tables and debugging)."""
    if predicted is None or gold is None:
        return Check(False, "empty")
    key = (predicted, gold)
    if key in _cache:
        return _cache[key]
    context = _Context(time.monotonic() + timeout_s, checker or default_checker())
    verdict = _equivalent(normalize(predicted), normalize(gold), context)
    if verdict.rule not in ("timeout", "killed") and "worker" not in verdict.rule:  # may differ on a retry
        if len(_cache) >= CACHE_LIMIT:
            _cache.clear()
        _cache[key] = verdict
    return verdict


def grade(
    output_text: str | None,
    gold: str,
    kind: str = "free",
    choices: list[str] | None = None,
    timeout_s: float = 5.0,
    checker: SymbolicChecker | None = None,
) -> dict:
    """Extract the final answer of a model output and grade it: {extracted, correct, rule}.

    kind "free": `final_answer` against `gold` with `is_equivalent`. kind "choice": the
    option letter the output names (A, B, ... one per choice; ABCD without choices)
    against the gold letter; an output that writes out an option's text instead of its
    letter gets that option's letter.
    """
    if kind == "free":
        extracted = final_answer(output_text)
        verdict = check(extracted, gold, timeout_s, checker)
        return {"extracted": extracted, "correct": verdict.equal, "rule": verdict.rule}
    if kind != "choice":
        raise ValueError(f"grade: kind must be 'free' or 'choice', got {kind!r}")
    letters = OPTION_LETTERS[: len(choices)] if choices else "ABCD"
    gold_letter = letter_of(gold.strip(), letters)
    if gold_letter is None:
        raise ValueError(f"grade: a choice question's gold must be one of the letters {letters}, got {gold!r}")
    extracted = choice_letter(output_text, letters)
    if extracted is None and choices:
        extracted = _letter_by_text(final_answer(output_text), choices, letters)
    correct = extracted == gold_letter
    return {"extracted": extracted, "correct": correct, "rule": "letter" if extracted else "empty"}


def _letter_by_text(answer: str | None, choices: list[str], letters: str) -> str | None:
    if not answer:
        return None
    key = normalize(answer).key
    matches = [letter for letter, choice in zip(letters, choices, strict=False) if normalize(choice).key == key]
    return matches[0] if len(matches) == 1 else None


def _equivalent(predicted: Answer, gold: Answer, context: _Context) -> Check:
    if not predicted.key or not gold.key:
        return Check(False, "empty")
    if predicted.key == gold.key:
        return Check(True, "exact")
    predicted_number, gold_number = read_number(predicted.key), read_number(gold.key)
    if predicted_number is not None and gold_number is not None:
        equal = numbers_equal(predicted_number, gold_number, predicted.percent or gold.percent)
        return Check(equal, "numeric")
    if is_word(predicted) or is_word(gold):
        return Check(False, "text")
    elements = _elements_equal(predicted, gold, context)
    if elements is not None:
        return elements
    remaining = context.deadline - time.monotonic()
    rounding = symbolic_rounding(predicted.text, gold.text)
    verdict = context.checker.equal(predicted.text, gold.text, remaining, rounding)
    return Check(verdict.equal, "symbolic" if verdict.status == "ok" else verdict.status)


def _elements_equal(predicted: Answer, gold: Answer, context: _Context) -> Check | None:
    """Element-wise verdict for tuples, intervals and lists, or None to let the symbolic check decide."""
    mine, theirs = split_elements(predicted.text), split_elements(gold.text)
    if mine is None and theirs is not None and theirs.opening == "\\{" and len(theirs.items) == 1:
        mine = Elements([predicted.text], "", "")  # "5" against the set {5}
    if theirs is None and mine is not None and mine.opening == "\\{" and len(mine.items) == 1:
        theirs = Elements([gold.text], "", "")
    plus_minus = any("\\pm" in text or "\\mp" in text for text in (predicted.text, gold.text))
    if plus_minus:
        return None  # {1 \pm \sqrt{5}} stands for two elements: math-verify expands it
    if mine is None or theirs is None:
        several = mine if mine is not None else theirs
        return Check(False, "elements") if several is not None and len(several.items) > 1 else None
    if len(mine.items) != len(theirs.items):
        return Check(False, "elements")
    bracketed = mine.opening not in ("", "\\{") and theirs.opening not in ("", "\\{")
    if bracketed and len(mine.items) == 2 and (mine.opening, mine.closing) != (theirs.opening, theirs.closing):
        return Check(False, "elements")  # (a, b] is not [a, b]: an interval's ends matter
    ordered = (mine.opening, theirs.opening) != ("", "") and "\\{" not in (mine.opening, theirs.opening)
    match = _match_ordered if ordered else _match_any_order
    return match(mine.items, theirs.items, context)


def _item_equal(predicted: str, gold: str, context: _Context) -> Check:
    return _equivalent(normalize(predicted), normalize(gold), context)


def _match_ordered(predicted: list[str], gold: list[str], context: _Context) -> Check:
    for mine, theirs in zip(predicted, gold, strict=True):
        verdict = _item_equal(mine, theirs, context)
        if not verdict.equal:
            return Check(False, "elements" if verdict.rule not in ("timeout", "killed") else verdict.rule)
    return Check(True, "elements")


def _match_any_order(predicted: list[str], gold: list[str], context: _Context) -> Check:
    unused = list(predicted)
    for theirs in gold:
        found = next((mine for mine in unused if _item_equal(mine, theirs, context).equal), None)
        if found is None:
            return Check(False, "elements")
        unused.remove(found)
    return Check(True, "elements")
