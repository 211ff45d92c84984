import pytest

from pipelines.evaluate.extract import answer_is, choice_letter, final_answer, last_boxed, last_number, letter_of


@pytest.mark.parametrize(
    "text,answer",
    [
        (r"so $\boxed{5}$.", "5"),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\fbox{x+1}", "x+1"),
        (r"$\boxed 7$", "7"),
        ("no box here", None),
        (r"\boxed{unbalanced", None),
    ],
)
def test_last_boxed(text, answer):
    assert last_boxed(text) == answer


@pytest.mark.parametrize(
    "text,answer",
    [
        # the last box wins, whatever follows it
        (r"First \boxed{2}, then \boxed{\dfrac{3}{4}} of the 5 apples.", r"\dfrac{3}{4}"),
        (r"The answer is 4, so $\boxed{5}$", "5"),
        # no box: "the answer is ..." up to the end of its sentence
        ("So the answer is 42.", "42"),
        ("Therefore, the final answer is $\\frac{1}{2}$. I hope it is correct.", r"\frac{1}{2}"),
        ("Final Answer: The final answer is $3.5$. I hope it is correct.", "3.5"),
        ("The answer is: **17**\nDone.", "17"),
        ("The answer is 3.75 dollars.", "3.75 dollars"),
        ("answer: (B)", "(B)"),
        ("The answer is $x = 2$.", "x = 2"),
        # "answer isn't" is not an answer statement: falls back to the last number
        ("The answer isn't 5, it is 6", "6"),
        # no box, no statement: the last number
        ("She makes 9 * 2 = $18 every day.", "18"),
        ("In total 1,234,567 people came.", "1234567"),
        ("The ratio is 3/4", "3/4"),
        ("It drops to -2.5 degrees", "-2.5"),
        ("a list 1,2,3", "3"),
        ("no numbers at all", None),
        ("", None),
        (None, None),
        (r"empty box \boxed{} then 7", "7"),
    ],
)
def test_final_answer(text, answer):
    assert final_answer(text) == answer


def test_answer_is_keeps_a_box_after_the_statement():
    assert answer_is(r"the answer is \boxed{12} and more text") == "12"
    assert last_number("x2 and y") is None  # digits inside a word are not a number


@pytest.mark.parametrize(
    "text,letter",
    [
        ("so the answer is (A).", "A"),
        ("The answer is B", "B"),
        ("The answer is: C. 10^-8 eV", "C"),
        (r"Therefore $\boxed{D}$", "D"),
        (r"\boxed{\text{(B)}}", "B"),
        (r"\boxed{(c)}", "C"),
        ("Answer: **D**", "D"),
        ("A is tempting, but the correct choice is (C) because...", "C"),
        ("Looking at the options:\nB. is right", "B"),
        ("The answer is a large energy gap, (D).", "D"),
        ("I am not sure.", None),
        ("The answer is E", None),  # not one of A-D
        (r"\boxed{B is wrong}", None),  # a box holding prose is not a letter
        ("", None),
    ],
)
def test_choice_letter(text, letter):
    assert choice_letter(text) == letter


def test_choice_letter_with_more_options_and_letter_of():
    assert choice_letter("The answer is E", "ABCDE") == "E"
    assert letter_of("(b)") == "B"
    assert letter_of("b") is None  # a lone lower-case letter is a variable, not an option
    assert letter_of("B. 10^-4 eV", leading=True) == "B"
    assert letter_of("B. 10^-4 eV") is None
