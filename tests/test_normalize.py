import hashlib
import json

import pytest

from pipelines.ingest import normalize
from pipelines.ingest.normalize import RowError


def test_text_is_nfc_trimmed_and_unix_line_ended():
    decomposed = "  Cafe\u0301\r\nau lait \n"
    assert normalize.text(decomposed, "f") == "Caf\u00e9\nau lait"


def test_text_rejects_non_strings_and_lone_surrogates():
    with pytest.raises(RowError) as wrong_type:
        normalize.text(3, "output")
    assert (wrong_type.value.reason, wrong_type.value.field) == ("wrong-typed field", "output")
    with pytest.raises(RowError) as surrogate:
        normalize.text("bad \ud800 text", "messages[1].content")
    assert surrogate.value.reason == "undecodable bytes"


@pytest.mark.parametrize(
    "alias,role", [("human", "user"), ("GPT", "assistant"), (" System ", "system"), ("model", "assistant")]
)
def test_role_aliases(alias, role):
    assert normalize.role(alias, "from") == role


def test_unknown_role_is_an_error_naming_the_field():
    with pytest.raises(RowError) as error:
        normalize.role("function_call", "conversations[2].from")
    assert error.value.reason == "unknown role" and error.value.field == "conversations[2].from"


@pytest.mark.parametrize(
    "roles",
    [["user", "assistant"], ["system", "user", "assistant"], ["user"], ["user", "assistant", "user", "assistant"]],
)
def test_orders_that_are_allowed(roles):
    turns = [(r, "x") for r in roles]
    assert normalize.conversation(turns, "messages") == turns


@pytest.mark.parametrize(
    "roles,index",
    [(["assistant", "user"], 0), (["user", "user"], 1), (["user", "system", "assistant"], 1), (["system"], None)],
)
def test_orders_that_are_rejected(roles, index):
    with pytest.raises(RowError) as error:
        normalize.conversation([(r, "x") for r in roles], "messages")
    assert error.value.reason == "roles out of order"
    assert error.value.field == ("messages" if index is None else f"messages[{index}]")


def test_text_over_the_limit_is_rejected():
    normalize.check_size([("user", "abc"), ("assistant", "de")], 5, "messages")
    with pytest.raises(RowError) as error:
        normalize.check_size([("user", "abc"), ("assistant", "def")], 5, "messages")
    assert error.value.reason == "text too long"


def test_id_is_the_documented_hash_and_ignores_nothing_but_formatting():
    turns = [("user", "What is 2+2?"), ("assistant", "4")]
    canonical = json.dumps([["user", "What is 2+2?"], ["assistant", "4"]], separators=(",", ":"))
    assert normalize.example_id(turns) == hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert normalize.example_id(turns) != normalize.example_id([("user", "What is 2+2?"), ("assistant", "5")])
    assert normalize.example_id(turns) != normalize.example_id([("system", "What is 2+2?"), ("assistant", "4")])
