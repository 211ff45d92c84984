"""Numbers read exactly, and where a tolerance comes from (issue 20: no relative tolerance)."""

from fractions import Fraction

import pytest

from pipelines.evaluate.numbers import (
    EXACT_ROUNDING,
    Number,
    numbers_equal,
    read_number,
    symbolic_rounding,
    terminates,
)


@pytest.mark.parametrize(
    "key,value,half_unit,digits",
    [
        ("10000", Fraction(10000), None, 0),
        ("10000.0", Fraction(10000), Fraction(1, 20), 6),
        ("3.14", Fraction(314, 100), Fraction(1, 200), 3),
        ("-0.0005", Fraction(-5, 10000), Fraction(1, 20000), 1),
        (".5", Fraction(1, 2), Fraction(1, 20), 1),
        ("4.1e-08", Fraction(41, 10**9), Fraction(1, 2 * 10**9), 2),
        ("1e6", Fraction(10**6), None, 0),
        ("3.83\\times10^{35}", Fraction(383) * 10**33, Fraction(1, 2) * 10**33, 3),
        ("10^{9}", Fraction(10**9), None, 0),
        ("\\frac{-2}{3}", Fraction(-2, 3), None, 0),
        ("-\\frac{1}{1997}", Fraction(-1, 1997), None, 0),
        ("270/7", Fraction(270, 7), None, 0),
        ("9999\\frac{6}{7}", 9999 + Fraction(6, 7), None, 0),
    ],
)
def test_read_number_keeps_the_exact_value_and_the_written_precision(key, value, half_unit, digits):
    assert read_number(key) == Number(value, half_unit, digits)


@pytest.mark.parametrize("key", ["x", "", ".", "-", "e5", "1e999", "10^{400}", "\\frac{1}{0}", "2\\sqrt{2}"])
def test_what_is_not_a_plain_number_reads_as_none(key):
    assert read_number(key) is None


def test_exact_numbers_compare_exactly_at_every_magnitude():
    for exponent in range(3, 10):
        gold = read_number(str(10**exponent))
        for off in (-1, 1):
            assert not numbers_equal(read_number(str(10**exponent + off)), gold, percent=False)
            assert not numbers_equal(read_number(f"{10**exponent + off / 10:.1f}"), gold, percent=False)
        assert numbers_equal(read_number(f"{10**exponent}.00"), gold, percent=False)


def test_a_decimal_gold_takes_answers_within_half_its_last_digit():
    gold = read_number("3.14")
    assert numbers_equal(read_number("3.1416"), gold, False)
    assert numbers_equal(read_number("3.145"), gold, False)  # a tie may round either way
    assert not numbers_equal(read_number("3.1451"), gold, False)
    assert not numbers_equal(read_number("3.1"), gold, False)


def test_a_gold_with_no_finite_decimal_takes_only_correct_roundings_of_four_digits_or_more():
    third = read_number("1/3")
    assert numbers_equal(read_number("0.3333"), third, False)
    assert numbers_equal(read_number("0.33333333333"), third, False)
    assert not numbers_equal(read_number("0.333"), third, False)  # three digits: too few
    assert not numbers_equal(read_number("0.3334"), third, False)
    assert numbers_equal(read_number("0.125"), read_number("1/8"), False)  # exact: equal
    assert not numbers_equal(read_number("0.13"), read_number("1/8"), False)  # 1/8 has an exact decimal


def test_percent_scales_the_gold_and_its_precision():
    assert numbers_equal(read_number("5"), read_number("0.05"), percent=True)
    assert numbers_equal(read_number("17.46"), read_number("0.175"), percent=True)  # 17.5 at 0.05
    assert not numbers_equal(read_number("17.56"), read_number("0.175"), percent=True)
    assert not numbers_equal(read_number("100"), read_number("1"), percent=False)


def test_terminates():
    assert terminates(Fraction(1, 8)) and terminates(Fraction(7, 20)) and terminates(Fraction(10000))
    assert not terminates(Fraction(1, 3)) and not terminates(Fraction(1, 14))


def test_symbolic_rounding_follows_the_same_precision_rule():
    assert symbolic_rounding("\\frac{\\sqrt{2}}{2}", "0.7071") == 4  # the gold's places
    assert symbolic_rounding("1.41421349", "\\sqrt{2}") == 8  # the answer's own places
    assert symbolic_rounding("1.41", "\\sqrt{2}") == EXACT_ROUNDING  # too few digits to be a rounding
    assert symbolic_rounding("2^{10}", "1024") == EXACT_ROUNDING
