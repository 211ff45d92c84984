import pytest

from pipelines.critique.examples import CFT_INSTRUCTION
from pipelines.ingest import adapters
from pipelines.ingest.adapters import FormatError
from pipelines.ingest.normalize import RowError


@pytest.mark.parametrize(
    "columns,expected",
    [
        ({"messages"}, "openai"),
        ({"conversations", "system"}, "sharegpt"),
        ({"instruction", "input", "output"}, "alpaca"),
        ({"question", "answer"}, "gsm8k"),
        ({"problem", "solution", "answer", "level"}, "math"),
        ({"question", "gt_answer", "level"}, "qa"),
        ({"prompt", "response"}, "qa"),
        ({"question", "solution", "critique"}, "cft"),
    ],
)
def test_detect(columns, expected):
    assert adapters.detect(columns, "f.jsonl") == expected


def test_detect_names_the_file_and_columns_when_nothing_fits():
    with pytest.raises(FormatError) as error:
        adapters.detect({"text", "label"}, "data/x.jsonl")
    message = str(error.value)
    assert "data/x.jsonl" in message and "['label', 'text']" in message and "format:" in message


def test_openai_with_text_parts_and_a_reference_column():
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hello"},
        ],
        "gt_answer": 42,
    }
    adapted = adapters.adapt("openai", record)
    assert adapted.turns == [("user", "Hi\nthere"), ("assistant", "Hello")]
    assert adapted.reference == "42" and set(adapted.used) == {"messages", "gt_answer"}


def test_openai_rejects_images_and_missing_keys():
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]}
    with pytest.raises(RowError) as error:
        adapters.adapt("openai", image)
    assert error.value.reason == "non-text content" and error.value.field == "messages[0].content[0]"
    with pytest.raises(RowError) as error:
        adapters.adapt("openai", {"messages": [{"role": "user"}]})
    assert error.value.reason == "missing field" and error.value.field == "messages[0].content"


def test_sharegpt_with_system():
    record = {"system": "Be brief.", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    assert adapters.adapt("sharegpt", record).turns == [("system", "Be brief."), ("user", "Q"), ("assistant", "A")]


def test_alpaca_joins_input_like_llama_factory_and_keeps_history():
    record = {"instruction": "Translate", "input": "bonjour", "output": "hello", "history": [["hi", "hey"]]}
    assert adapters.adapt("alpaca", record).turns == [
        ("user", "hi"),
        ("assistant", "hey"),
        ("user", "Translate\nbonjour"),
        ("assistant", "hello"),
    ]
    assert adapters.adapt("alpaca", {"instruction": "Say hi", "input": "", "output": "hi"}).turns[0] == (
        "user",
        "Say hi",
    )


def test_alpaca_empty_output_is_an_empty_turn():
    with pytest.raises(RowError) as error:
        adapters.adapt("alpaca", {"instruction": "x", "output": "   "})
    assert (error.value.reason, error.value.field) == ("empty turn", "output")


def test_gsm8k_reference_from_the_hashes():
    record = {"question": "2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"}
    adapted = adapters.adapt("gsm8k", record)
    assert adapted.reference == "5" and adapted.turns[1] == ("assistant", "2+3=<<2+3=5>>5\n#### 5")


def test_math_reference_is_the_answer_column_else_the_last_box():
    solution = r"First \boxed{1}, finally $\boxed{\frac{3}{4}}$."
    assert adapters.adapt("math", {"problem": "p", "solution": solution}).reference == r"\frac{3}{4}"
    assert adapters.adapt("math", {"problem": "p", "solution": solution, "answer": "0.75"}).reference == "0.75"


def test_qa_prompt_only_row_keeps_its_reference():
    adapted = adapters.adapt("qa", {"question": "What is 6*7?", "gt_answer": "42", "level": "3"})
    assert adapted.turns == [("user", "What is 6*7?")] and adapted.reference == "42"


def test_cft_builds_the_papers_example():
    adapted = adapters.adapt("cft", {"question": "Q?", "solution": "S.", "critique": "Fine.\nConclusion: right [END]"})
    user, assistant = adapted.turns
    assert user == ("user", f"{CFT_INSTRUCTION}\n\nQuestion:\nQ?\n\nSolution:\nS.")
    assert assistant == ("assistant", "Critique:\nFine.\nConclusion: right [END]")


def test_wrong_types_name_the_field():
    with pytest.raises(RowError) as error:
        adapters.adapt("gsm8k", {"question": ["not", "text"], "answer": "1"})
    assert (error.value.reason, error.value.field) == ("wrong-typed field", "question")
    with pytest.raises(RowError) as error:
        adapters.adapt("sharegpt", {"conversations": "oops"})
    assert (error.value.reason, error.value.field) == ("wrong-typed field", "conversations")
