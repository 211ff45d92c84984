import pytest

from pipelines.evaluate.extract import last_boxed


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
