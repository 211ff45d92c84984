"""Format adapters: one source row (a dict) -> turns, reference, and the row's other fields.

| format   | columns                                              | reference                   |
|----------|------------------------------------------------------|-----------------------------|
| cft      | question, solution, critique                         | a reference column          |
| openai   | messages: [{role, content}]                          | a reference column          |
| sharegpt | conversations: [{from, value}], optional system      | a reference column          |
| alpaca   | instruction, output, optional input/system/history   | a reference column          |
| math     | problem, solution, optional answer                   | answer, else last \\boxed{}  |
| gsm8k    | question, answer ending "#### N"                     | N                           |
| qa       | question/problem/prompt/query, optional response     | a reference column          |

Reference columns: reference, gt_answer, final_answer, gold. A format is detected from the
columns of a file, in the order above; a config can force one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipelines.critique.examples import cft_turns
from pipelines.evaluate.extract import last_boxed
from pipelines.ingest.normalize import RowError, role, text

REFERENCE_COLUMNS = ("reference", "gt_answer", "final_answer", "gold")
QA_PROMPTS = ("question", "problem", "prompt", "query")
QA_RESPONSES = ("response", "completion", "answer", "solution", "output")


@dataclass(frozen=True)
class Adapted:
    turns: list[tuple[str, str]]
    reference: str | None
    used: tuple[str, ...]  # columns consumed; the rest go to meta


class FormatError(ValueError):
    """No adapter fits a file: names the file and the columns it has."""


def _turn_text(value, field: str) -> str:
    """A turn's text: normalised, and rejected as an empty turn when nothing is left."""
    normalised = text(value, field)
    if not normalised:
        raise RowError("empty turn", field, "turn is empty after trimming")
    return normalised


def _required(record: dict, column: str, expected: type = str):
    if column not in record or record[column] is None:
        raise RowError("missing field", column, f"field {column!r} is missing")
    value = record[column]
    if not isinstance(value, expected):
        got = type(value).__name__
        raise RowError("wrong-typed field", column, f"expected {expected.__name__}, got {got}")
    return value


def _turn_list(record: dict, column: str, role_key: str, content_key: str) -> list[tuple[str, str]]:
    turns = []
    for index, turn in enumerate(_required(record, column, list)):
        where = f"{column}[{index}]"
        if not isinstance(turn, dict):
            raise RowError("wrong-typed field", where, f"expected an object, got {type(turn).__name__}")
        for key in (role_key, content_key):
            if turn.get(key) is None:
                raise RowError("missing field", f"{where}.{key}", f"turn has no {key!r}")
        turns.append(
            (role(turn[role_key], f"{where}.{role_key}"), _content(turn[content_key], f"{where}.{content_key}"))
        )
    return turns


def _content(value, field: str) -> str:
    """A turn's content: a string, or OpenAI's list of parts when every part is text."""
    if isinstance(value, list):
        parts = []
        for index, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise RowError("non-text content", f"{field}[{index}]", "only text parts are supported")
            parts.append(text(part.get("text"), f"{field}[{index}].text"))
        return _turn_text("\n".join(parts), field)
    return _turn_text(value, field)


def _system(record: dict) -> list[tuple[str, str]]:
    value = record.get("system")
    normalised = text(value, "system") if value is not None else ""
    return [("system", normalised)] if normalised else []  # an empty system prompt is none


def _reference_column(record: dict) -> tuple[str | None, tuple[str, ...]]:
    for column in REFERENCE_COLUMNS:
        value = record.get(column)
        if value is not None and not isinstance(value, (dict, list)):
            return text(str(value), column) or None, (column,)
    return None, ()


def _openai(record):
    return _turn_list(record, "messages", "role", "content"), None, ("messages",)


def _sharegpt(record):
    turns = _system(record) + _turn_list(record, "conversations", "from", "value")
    return turns, None, ("conversations", "system")


def _alpaca(record):
    instruction = _turn_text(_required(record, "instruction"), "instruction")
    extra_input = text(record["input"], "input") if record.get("input") else ""
    turns = _system(record)
    for index, pair in enumerate(record.get("history") or []):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise RowError("wrong-typed field", f"history[{index}]", "expected [prompt, response]")
        turns += [("user", _turn_text(pair[0], f"history[{index}][0]"))]
        turns += [("assistant", _turn_text(pair[1], f"history[{index}][1]"))]
    prompt = f"{instruction}\n{extra_input}" if extra_input else instruction  # LLaMA-Factory's join
    turns += [("user", prompt), ("assistant", _turn_text(_required(record, "output"), "output"))]
    # `input` is left to meta (fields.input): model_loss's `template: alpaca` renders the
    # instruction and the input apart, as the IFD reference's prompt does (score/alpaca.py)
    return turns, None, ("instruction", "output", "system", "history")


def _math(record):
    solution = _turn_text(_required(record, "solution"), "solution")
    answer = record.get("answer")
    reference = text(str(answer), "answer") if answer not in (None, "") else last_boxed(solution)
    turns = [("user", _turn_text(_required(record, "problem"), "problem")), ("assistant", solution)]
    return turns, reference, ("problem", "solution", "answer")


def _gsm8k(record):
    answer = _turn_text(_required(record, "answer"), "answer")
    marker = answer.rfind("####")
    reference = (answer[marker + 4 :].strip() or None) if marker >= 0 else None
    turns = [("user", _turn_text(_required(record, "question"), "question")), ("assistant", answer)]
    return turns, reference, ("question", "answer")


def _qa(record):
    prompt_column = next((c for c in QA_PROMPTS if c in record), QA_PROMPTS[0])
    turns = [("user", _turn_text(_required(record, prompt_column), prompt_column))]
    response_column = next((c for c in QA_RESPONSES if record.get(c) is not None), None)
    if response_column:
        turns.append(("assistant", _turn_text(_required(record, response_column), response_column)))
    return turns, None, (prompt_column,) + ((response_column,) if response_column else ())


def _cft(record):
    fields = [_turn_text(_required(record, c), c) for c in ("question", "solution", "critique")]
    return cft_turns(*fields), None, ("question", "solution", "critique")


Adapter = Callable[[dict], tuple[list[tuple[str, str]], str | None, tuple[str, ...]]]
ADAPTERS: dict[str, Adapter] = {
    "cft": _cft,
    "openai": _openai,
    "sharegpt": _sharegpt,
    "alpaca": _alpaca,
    "math": _math,
    "gsm8k": _gsm8k,
    "qa": _qa,
}
SIGNATURES: dict[str, Callable[[set[str]], bool]] = {
    "cft": lambda c: {"question", "solution", "critique"} <= c,
    "openai": lambda c: "messages" in c,
    "sharegpt": lambda c: "conversations" in c,
    "alpaca": lambda c: {"instruction", "output"} <= c,
    "math": lambda c: {"problem", "solution"} <= c,
    "gsm8k": lambda c: {"question", "answer"} <= c,
    "qa": lambda c: bool(c & set(QA_PROMPTS)) and bool(c & set(QA_RESPONSES + REFERENCE_COLUMNS)),
}


def detect(columns: set[str], location: str) -> str:
    for name, fits in SIGNATURES.items():
        if fits(columns):
            return name
    raise FormatError(
        f"{location}: no format fits the columns {sorted(columns)}; known formats: "
        + "; ".join(f"{name} ({_describe(name)})" for name in SIGNATURES)
        + ". Set `format:` on the source to force one."
    )


def _describe(name: str) -> str:
    return {
        "cft": "question, solution, critique",
        "openai": "messages",
        "sharegpt": "conversations",
        "alpaca": "instruction, output",
        "math": "problem, solution",
        "gsm8k": "question, answer",
        "qa": "question|problem|prompt|query with a response or reference column",
    }[name]


def adapt(format_name: str, record: dict) -> Adapted:
    turns, reference, used = ADAPTERS[format_name](record)
    if reference is None:
        reference, reference_used = _reference_column(record)
        used += reference_used
    return Adapted(turns=turns, reference=reference, used=used)
