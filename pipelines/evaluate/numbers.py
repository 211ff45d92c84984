"""Numeric answers, compared exactly unless a side is a rounded decimal.

A relative tolerance (the reference graders' 1e-4) calls 9999 right for a gold of 10,000;
so numbers are read as exact fractions, and a tolerance exists only where a decimal is
written, at the precision it is written with:

- gold and answer both exact (integers, fractions, mixed numbers, 10^k, decimals that equal
  them): equal values only (10000 = 10000.0 = 1.0e4; 9999.9, 9999 6/7 and 10001 are wrong);
- gold a decimal ("3.14", "4.1e-08"): the answer within half a unit of the gold's last digit
  (3.1416 and 22/7 round to 3.14; 3.1 and 3.15 do not);
- gold exact but with no finite decimal form (1/3) and the answer a decimal: the answer is the
  gold correctly rounded to the answer's own last digit, written with at least
  `MIN_ROUNDED_DIGITS` significant digits (0.3333 yes; 0.33 and 0.3334 no). A gold with a
  finite decimal form (1/8, 10000) is never matched by a rounding of it.

With `percent` (either side carried a percent sign), gold x100 and gold /100 count too.
Everything is `Fraction` arithmetic on short strings: exact, and it cannot hang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_EXPONENT = 300  # 10^e past this is no answer we read; the symbolic check gets it instead
MIN_ROUNDED_DIGITS = 4  # a rounded 1/3 must say at least 0.3333
EXACT_ROUNDING = 12  # math-verify's float_rounding when no side writes a usable decimal

PLAIN_NUMBER = re.compile(r"^([-+]?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?$")
SCIENTIFIC = re.compile(r"^(?:([-+]?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot|\*))?10\^\{?([-+]?\d+)\}?$")
FRACTION = re.compile(r"^([-+]?)\\frac\{([-+]?[\d.]+)\}\{([-+]?[\d.]+)\}$|^([-+]?[\d.]+)/([-+]?[\d.]+)$")
MIXED = re.compile(r"^([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")
DECIMAL_IN_TEXT = re.compile(r"(?<![\d.])(\d*)\.(\d+)")


@dataclass(frozen=True)
class Number:
    value: Fraction
    half_unit: Fraction | None  # half a unit of the last written decimal digit; None: exact
    digits: int = 0  # significant digits a decimal is written with (0 for an exact number)


def read_number(key: str) -> Number | None:
    """The value of a numeric answer key (integer, decimal, scientific, fraction, mixed
    number) and how precisely it is written, or None when the key is not a plain number."""
    try:
        return _read(key)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _read(key: str) -> Number | None:
    match = PLAIN_NUMBER.match(key)
    if match and (match.group(2) or match.group(3)):
        sign, whole, decimals, exponent = match.groups()
        return _decimal(sign + (whole or "0"), decimals, int(exponent or 0))
    match = SCIENTIFIC.match(key)
    if match:
        mantissa = PLAIN_NUMBER.match(match.group(1) or "1")
        sign, whole, decimals, _ = mantissa.groups()
        return _decimal(sign + (whole or "0"), decimals, int(match.group(2)))
    match = MIXED.match(key)
    if match:
        sign, whole, top, bottom = match.groups()
        value = int(whole) + Fraction(int(top), int(bottom))
        return Number(-value if sign == "-" else value, None)
    match = FRACTION.match(key)
    if match:
        sign, top, bottom = match.group(1, 2, 3) if match.group(2) else ("", *match.group(4, 5))
        value = Fraction(top) / Fraction(bottom)  # "1.5/2" is 3/4, written exactly
        return Number(-value if sign == "-" else value, None)
    return None


def _decimal(whole: str, decimals: str | None, exponent: int) -> Number | None:
    """whole.decimals x 10^exponent; exact when no digit follows the point."""
    if abs(exponent) > MAX_EXPONENT:
        return None
    decimals = decimals or ""
    value = Fraction(int(whole + decimals), 10 ** len(decimals)) * Fraction(10) ** exponent
    if not decimals:
        return Number(value, None)
    half_unit = Fraction(1, 2) * Fraction(10) ** (exponent - len(decimals))
    significant = (whole.lstrip("+-") + decimals).lstrip("0")
    return Number(value, half_unit, len(significant))


def numbers_equal(predicted: Number, gold: Number, percent: bool) -> bool:
    """Equal by the module's rules; with `percent`, gold x100 and gold /100 count too."""
    scales = (Fraction(1), Fraction(100), Fraction(1, 100)) if percent else (Fraction(1),)
    return any(_equal(predicted, gold, scale) for scale in scales)


def _equal(predicted: Number, gold: Number, scale: Fraction) -> bool:
    target = gold.value * scale
    if predicted.value == target:
        return True
    if gold.half_unit is not None:  # a rounded gold: the answer must round to it
        return abs(predicted.value - target) <= gold.half_unit * scale
    if predicted.half_unit is None or terminates(target):
        return False  # exact against exact; or a rounding of a gold that has an exact decimal
    return predicted.digits >= MIN_ROUNDED_DIGITS and abs(predicted.value - target) <= predicted.half_unit


def terminates(value: Fraction) -> bool:
    """True when the value has a finite decimal form (its denominator is 2^a 5^b)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def symbolic_rounding(predicted: str, gold: str) -> int:
    """Decimal places math-verify rounds to when a side is a float (its default, 6, would call
    1023.9999999 equal to 2^{10}): the gold's places where the gold writes a decimal (the
    rounded-gold rule); else the answer's where it writes one with at least
    MIN_ROUNDED_DIGITS significant digits (the correctly-rounded rule); else EXACT_ROUNDING."""
    gold_places = _places(gold)
    if gold_places:
        return max(gold_places)
    written = DECIMAL_IN_TEXT.findall(predicted)
    answer_places = [len(decimals) for whole, decimals in written if _enough(whole, decimals)]
    return max(answer_places) if answer_places else EXACT_ROUNDING


def _places(text: str) -> list[int]:
    return [len(decimals) for _, decimals in DECIMAL_IN_TEXT.findall(text)]


def _enough(whole: str, decimals: str) -> bool:
    return len((whole + decimals).lstrip("0")) >= MIN_ROUNDED_DIGITS
