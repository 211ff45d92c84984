"""`template: alpaca`: the IFD reference's Alpaca prompt and "### Response:" marker from a config alone.

The reference (Cherry_LLM cherry_seletion/data_analysis.py, `--prompt alpaca --mod cherry`)
scores `PROMPT_DICT[...].format_map(row) + output` against `"### Response:" + output`, each the
mean NLL of the output's tokens (HF's shifted loss, labels -100 before the output). The
prompts below are written out by hand, not taken from the code under test.
"""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import config as config_module
from pipelines import experiment
from pipelines.ingest import adapters
from pipelines.score import alpaca, render
from pipelines.score.settings import ModelLossScorer
from pipelines.score.spans import TemplateError

WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nAdd the two numbers.\n\n### Input:\n12 and 30\n\n### Response:"
)
WITHOUT_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nName a prime above 10.\n\n### Response:"
)
ROWS = [
    {"instruction": "Add the two numbers.", "input": "12 and 30", "output": "12 + 30 = 42. The answer is 42."},
    {"instruction": "Name a prime above 10.", "input": "", "output": "11 is a prime above 10."},
    {"instruction": "Translate to French.\nKeep it short.", "input": "  good morning \r\n", "output": "Bonjour."},
]


def test_the_prompts_are_the_references_word_for_word():
    assert render.alpaca_prompt("Add the two numbers.", "12 and 30") == WITH_INPUT
    assert render.alpaca_prompt("Name a prime above 10.", "") == WITHOUT_INPUT
    assert ModelLossScorer(model="m", template="alpaca").response_marker == "### Response:"
    assert ModelLossScorer(model="m", template="alpaca", response_marker="R: ").response_marker == "R: "
    assert ModelLossScorer(model="m").response_marker == "Assistant: "


def meta_of(record: dict) -> str:
    """The meta ingest writes for an alpaca row: the fields its adapter did not use."""
    used = adapters.adapt("alpaca", record).used
    return json.dumps({"format": "alpaca", "fields": {k: v for k, v in record.items() if k not in used}})


def test_instruction_and_input_come_back_apart_from_the_pool_row():
    for record, expected in zip(
        ROWS,
        [
            ("Add the two numbers.", "12 and 30"),
            ("Name a prime above 10.", ""),
            ("Translate to French.\nKeep it short.", "good morning"),  # the input as ingest normalised it
        ],
        strict=True,
    ):
        turns = adapters.adapt("alpaca", record).turns
        assert alpaca.instruction_and_input(turns, meta_of(record)) == expected
    chat_row = [("user", "What is 2+2?\nShow work."), ("assistant", "4")]
    assert alpaca.instruction_and_input(chat_row, json.dumps({"format": "openai", "fields": {}})) == (
        "What is 2+2?\nShow work.",
        "",
    )


OTHER_INPUT = json.dumps({"format": "alpaca", "fields": {"input": "3 and 4"}})  # not the user turn's end


@pytest.mark.parametrize(
    "turns,meta,message",
    [
        ([("system", "Be brief."), ("user", "Q"), ("assistant", "A")], None, "system -> user -> assistant"),
        ([("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2")], None, "one user turn"),
        ([("user", "Add.\n1 and 2"), ("assistant", "3")], OTHER_INPUT, "end"),
        ([("user", "Q"), ("assistant", "A")], "{not json", "not JSON"),
    ],
)
def test_a_row_without_an_alpaca_rendering_is_an_error(turns, meta, message):
    with pytest.raises(TemplateError, match=message):
        alpaca.text_with_prompt(turns, meta)


def test_the_error_names_the_row_and_its_file():
    error = alpaca.row_error(TemplateError("bad"), "abc123", json.dumps({"file": "/data/a.json", "row": 7}))
    assert str(error) == "model_loss: row abc123 (/data/a.json row 7): bad"


def reference_ifd(tokenizer, model, prompt: str, output: str) -> float:
    """The reference's computation, by hand: two forward passes with HF's shifted loss."""
    import torch

    def loss_of(text: str) -> float:
        ids = tokenizer(text)["input_ids"]  # the tokenizer's own special tokens, as `encode`
        start = len(tokenizer(text[: text.rfind(output)])["input_ids"])  # the reference's boundary
        labels = [-100] * start + ids[start:]
        with torch.inference_mode():
            return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()

    return loss_of(prompt + output) / loss_of("### Response:" + output)


@pytest.mark.ray
@pytest.mark.slow
def test_a_config_alone_reproduces_the_reference_ifd(ray_local, tmp_path):
    """Ingest an Alpaca file, score it with `template: alpaca`, and pin the IFD by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / "alpaca.json").write_text(json.dumps(ROWS))
    document = {
        "name": "alpaca-ifd",
        "run_dir": str(tmp_path / "run"),
        "ray": {"num_cpus": 2},
        "ingest": {
            "sources": [
                {"kind": "files", "name": "alpaca", "paths": [str(tmp_path / "alpaca.json")]},
                {"kind": "mathematics", "rows": 120, "seed": 3},
            ]
        },
        "models": {"tiny": {"build": {"vocab_size": 400, "train_rows": 123}}},
        "score": {"model_loss": {"model": "tiny", "template": "alpaca", "threads": 1, "max_length": 256}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    config = config_module.load(tmp_path / "config.yaml")
    assert config.score.model_loss.response_marker == "### Response:"
    experiment.run(config)

    pool = {row["id"]: row for row in pq.read_table(f"{config.run_dir}/pool").to_pylist()}
    scores = {row["id"]: row for row in pq.read_table(f"{config.run_dir}/scores/model_loss").to_pylist()}
    assert set(scores) == set(pool)
    folder = f"{config.run_dir}/models/tiny"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    by_output = {row["messages"][-1]["content"]: scores[row["id"]] for row in pool.values()}
    for prompt, record in ((WITH_INPUT, ROWS[0]), (WITHOUT_INPUT, ROWS[1])):
        row = by_output[record["output"]]
        assert not row["truncated"] and row["ifd"] is not None
        assert row["ifd"] == pytest.approx(reference_ifd(tokenizer, model, prompt, record["output"]), abs=1e-6)
