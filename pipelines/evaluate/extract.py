"""Final answers out of model or reference text.

`final_answer` follows the CFT study's evaluation: the last `\\boxed{}` (braces matched),
else what follows the last "the answer is", else the last number in the text.
`choice_letter` finds the letter a multiple-choice answer names.
"""

from __future__ import annotations

import re

BOX_COMMANDS = ("\\boxed", "\\fbox")
LETTERS = "ABCD"

# "The answer is 5", "the final answer is $\frac{1}{2}$", "Final Answer: The final answer is 3."
ANSWER_IS = re.compile(r"answer\s*(?:is\b|:)\s*:?", re.IGNORECASE)
# Signed integers and decimals, with thousands separators, and simple fractions (3/4).
NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|(?<![\w.])-?\.\d+")
SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
EMPHASIS = re.compile(r"^[\s*_:]+|[\s*_]+$")  # Markdown bold/italic markers around an answer


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`), braces matched."""
    start = max(text.rfind(command) for command in BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in BOX_COMMANDS if text.startswith(c, start))
    rest = text[start + len(command) :]
    if rest.startswith(" "):  # `\boxed 5`: the answer runs to the next space or `$`
        return rest[1:].split("$")[0].split()[0] if rest.strip() else None
    if not rest.startswith("{"):
        return None
    depth = 0
    for index, char in enumerate(rest):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return rest[1:index].strip()
    return None  # unbalanced braces: no answer rather than half of one


def final_answer(text: str | None) -> str | None:
    """The answer a solution ends with, as text, or None when it names none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return boxed
    stated = answer_is(text)
    if stated:
        return stated
    return last_number(text)


def answer_is(text: str) -> str | None:
    """What follows the last "answer is" / "answer:", up to the end of its sentence."""
    matches = list(ANSWER_IS.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].lstrip()
    boxed = last_boxed(rest)  # "the answer is $\boxed{5}$" was caught earlier; keep the box's
    if boxed:
        return boxed
    end = _sentence_end(rest)
    answer = EMPHASIS.sub("", rest[:end]).strip()
    answer = _strip_math_delimiters(answer).rstrip(".").strip()
    return answer or None


def last_number(text: str) -> str | None:
    """The last number in the text, thousands separators dropped ("1,234.5" -> "1234.5")."""
    matches = NUMBER.findall(text)
    return matches[-1].replace(",", "") if matches else None


def _sentence_end(text: str) -> int:
    """Index where the first sentence ends: a period before a space, a newline or the end.

    A period inside `$...$` is not an end, so "$3.5$." keeps its decimal point.
    """
    in_math = False
    for index, char in enumerate(text):
        if char == "$":
            in_math = not in_math
        elif not in_math and (char == "\n" or (char == "." and (index + 1 == len(text) or text[index + 1].isspace()))):
            return index
    return len(text)


def _strip_math_delimiters(answer: str) -> str:
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right) and len(answer) > len(left) + len(right):
            return answer[len(left) : -len(right)].strip()
    return answer.strip("$").strip()


# --- multiple choice ---------------------------------------------------------------


def choice_letter(text: str | None, letters: str = LETTERS) -> str | None:
    """The option letter an answer names ("(B)", "B.", "The answer is B", "\\boxed{B}"), or None.

    Looks, in order, at the last box, the last "answer is"/"answer:", then the last letter
    written as an option marker such as "(B)"; a bare letter elsewhere in prose is ignored.
    """
    if not text:
        return None
    options = "".join(sorted(set(letters.upper())))
    boxed = last_boxed(text)
    if boxed is not None:
        found = letter_of(boxed, options)
        if found:
            return found
    matches = list(ANSWER_IS.finditer(text))
    if matches:
        rest = text[matches[-1].end() :].lstrip()
        found = letter_of(rest[: _sentence_end(rest) + 1], options, leading=True)
        if found:
            return found
    marked = re.findall(rf"\(([{options}])\)|\*\*([{options}])\*\*|^([{options}])[.)]\s", text, re.MULTILINE)
    if marked:
        return next(letter for letter in marked[-1] if letter)
    return None


def letter_of(answer: str, options: str = LETTERS, leading: bool = False) -> str | None:
    """The letter a short answer consists of: "B", "(b)", "\\text{(B)}", "B.", "**B**", "B) 42".

    With `leading`, the letter may be followed by the option's text ("B. 10^-4 eV").
    """
    text = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", answer)
    text = text.replace("$", "").replace("*", "").strip()
    # A lower-case letter counts only in parentheses: "(b)", never the article in "a number".
    pattern = rf"\(([{options}{options.lower()}])\)|([{options}])(?=[.:)]|\s|$)"
    match = re.match(pattern, text)
    if not match:
        return None
    if not leading and text[match.end() :].strip(" .:)"):
        return None  # "B is wrong because..." in a box is not an answer letter
    return (match.group(1) or match.group(2)).upper()
