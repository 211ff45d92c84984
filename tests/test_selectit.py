"""SelectIT on two tiny Qwen2 models built here: every score equals a direct batch-of-one
computation from the model's logits, written out again in this file."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipelines.models import small
from pipelines.score import sampling, selectit
from pipelines.score.selectit_model import SelectitActor
from tests.conftest import CPU_ACTOR

PREFIX = "The answer is: "
ROWS = [
    [("user", "What is 12 + 30?"), ("assistant", "12 + 30 = 42. The answer is 42.")],
    [("system", "Be brief."), ("user", "Name a prime above 10."), ("assistant", "11")],
    [("user", "Q1?"), ("assistant", "A1."), ("user", "And 7 * 6?"), ("assistant", "7 * 6 = 42")],
    [("user", "A question with no answer yet?")],
    [("user", "Short."), ("assistant", " ".join(f"step {i} is done" for i in range(40)))],
]
TEXTS = [" ".join(c for _, c in row) for row in ROWS] * 20 + ["Rate it from 1 to 5: 1 2 3 4 5"] * 20
SETTINGS = {
    **CPU_ACTOR,
    "answer_prefix": PREFIX,
    "max_length": 256,
    "batch_size": 3,
    "max_batch_tokens": 800,
    "prompts": selectit.load_prompts(None, 5),
    "sample_fraction": 1.0,
    "sample_seed": 0,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    specs = [small.SmallModelSpec(vocab_size=400, seed=0), small.SmallModelSpec(vocab_size=400, hidden_size=64, seed=1)]
    return [str(small.build(TEXTS, tmp_path_factory.mktemp(f"m{i}"), spec)) for i, spec in enumerate(specs)]


def as_messages(row):
    return [{"role": r, "content": c} for r, c in row]


@functools.cache
def loaded(folder: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()


def direct_distribution(folder: str, rating_prompt: str, turns, max_length: int, chat: bool = True):
    """The rating prompt built by hand, one forward of one sequence, softmax of the last logits."""
    tokenizer, model = loaded(folder)
    conversation = "\n\n".join(f"{r.capitalize()}: {c}" for r, c in turns[:-1])
    instruction = turns[0][1] if len(turns) == 2 else conversation
    body = f"{rating_prompt}\nInstruction: {instruction}\nResponse: {turns[-1][1]}"
    user = [{"role": "user", "content": body}]
    if chat:
        text = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        ending = "<|im_end|>\n<|im_start|>assistant\n"  # what the tiny model's ChatML template puts after it
    else:
        text, ending = f"{body}\n", "\n"
    ids = tokenizer(text + PREFIX)["input_ids"]
    if len(ids) > max_length:
        ending_ids = tokenizer(ending + PREFIX)["input_ids"]
        ids = ids[: max_length - len(ending_ids)] + ending_ids
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    probabilities = torch.softmax(logits.double(), dim=-1).numpy()
    vocabulary = tokenizer.get_vocab()
    digits = [
        [i for token, i in vocabulary.items() if tokenizer.convert_tokens_to_string([token]) in (d, " " + d)]
        for d in "12345"
    ]
    q = np.array([probabilities[ids_].sum() for ids_ in digits])
    return q / q.sum(), q.sum()


def direct_scores(folders, row, prompts=None, max_length=None, alpha=0.2):
    """Token, sentence and model-level scores from the definitions in METHODS.md."""
    sentences, tokens_all, counts = [], [], []
    for folder in folders:
        counts.append(sum(p.numel() for p in loaded(folder)[1].parameters()))
        tokens = []
        for prompt in prompts or SETTINGS["prompts"]:
            p, _ = direct_distribution(folder, prompt, row, max_length or SETTINGS["max_length"])
            best = int(np.argmax(p))
            tokens.append((best + 1) * sum(p[best] - p[r] for r in range(5)) / 4)
        tokens_all.append(tokens)
        sentences.append(np.mean(tokens) / (1 + alpha * np.std(tokens)))
    weights = np.array(counts) / sum(counts)
    return tokens_all, sentences, float(np.dot(weights, sentences))


def score_batch(folders, rows, **settings):
    batch = pa.table({"id": [str(i) for i in range(len(rows))], "messages": [as_messages(r) for r in rows]})
    for index, folder in enumerate(folders):
        batch = SelectitActor(folder, False, index, {**SETTINGS, **settings})(batch)
    return selectit.combine(batch, len(folders), 0.2, None).to_pylist()


def test_digit_ids_are_read_from_the_tokenizer(models):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models[0])
    ids = selectit.digit_ids(tokenizer)
    for digit, tokens in zip("12345", ids, strict=True):
        assert tokens and all(tokenizer.decode([t]).strip() == digit for t in tokens)
        assert tokenizer.convert_tokens_to_ids(digit) in tokens


def test_every_score_equals_the_direct_computation_from_logits(models):
    results = score_batch(models, ROWS)
    assert results[3]["selectit"] is None and results[3]["rating_probs"] is None  # no response to rate
    assert results[4]["truncated"] and not results[0]["truncated"]
    for row, result in zip(ROWS, results, strict=True):
        if row[-1][0] != "assistant":
            continue
        tokens, sentences, mixed = direct_scores(models, row)
        assert np.allclose(result["token_scores"], tokens, atol=1e-5)
        assert np.allclose(result["model_sentence"], sentences, atol=1e-5)
        assert result["selectit"] == pytest.approx(mixed, abs=1e-5)
        assert result["selectit_sentence"] == pytest.approx(sentences[0], abs=1e-5)
        assert result["selectit_token"] == pytest.approx(tokens[0][0], abs=1e-5)
        for m, folder in enumerate(models):
            p, mass = direct_distribution(folder, SETTINGS["prompts"][1], row, SETTINGS["max_length"])
            assert np.allclose(result["rating_probs"][m][1], p, atol=1e-6)
            assert result["rating_mass"][m][1] == pytest.approx(mass, rel=1e-4)


def test_batching_does_not_change_the_scores(models):
    together = score_batch(models[:1], ROWS)
    alone = [score_batch(models[:1], [row])[0] for row in ROWS]
    for a, b in zip(together, alone, strict=True):
        assert (a["selectit"] is None) == (b["selectit"] is None)
        if a["selectit"] is not None:
            assert np.allclose(a["token_scores"], b["token_scores"], atol=1e-5)
            assert a["selectit"] == pytest.approx(b["selectit"], abs=1e-5)
            assert a["selectit"] == a["selectit_sentence"]  # one model: the model level is its sentence level


def test_the_plain_template_equals_the_direct_computation(models):
    results = score_batch(models[:1], ROWS, template="plain")
    assert results[4]["truncated"]
    for row, result in zip(ROWS, results, strict=True):
        if row[-1][0] == "assistant":
            for j, prompt in enumerate(SETTINGS["prompts"]):
                p, _ = direct_distribution(models[0], prompt, row, SETTINGS["max_length"], chat=False)
                assert np.allclose(result["rating_probs"][0][j], p, atol=1e-6)


def test_a_sample_of_the_pool_is_rated_and_the_other_rows_get_nulls(models):
    rows = ROWS * 4
    full = score_batch(models[:1], rows)
    sampled = score_batch(models[:1], rows, sample_fraction=0.5, sample_seed=3)
    drawn = [sampling.in_sample(str(i), 0.5, 3) for i in range(len(rows))]
    assert 0 < sum(drawn) < len(rows)
    for a, b, inside in zip(full, sampled, drawn, strict=True):
        if inside and a["selectit"] is not None:
            assert b["selectit"] == pytest.approx(a["selectit"], abs=1e-5)  # other rows in its batches
        else:
            assert b["selectit"] is None


def test_the_formulas_on_known_numbers():
    p = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    assert selectit.token_score(p) == pytest.approx(3 * (0.3 + 0.2 + 0 + 0.2 + 0.3) / 4)
    assert selectit.token_score(np.array([0.0, 0.0, 0.0, 0.0, 1.0])) == pytest.approx(5.0)
    assert selectit.token_score(np.full(5, 0.2)) == 0.0  # no certainty, no score
    assert selectit.sentence_score([1.0, 3.0], 0.2) == pytest.approx(2.0 / (1 + 0.2 * 1.0))
    # the reference's 7/20, 13/20, 70/90 for 7B, 13B, 70B models; proportional weights instead:
    assert np.allclose(selectit.model_weights(None, [7, 13, 70]), [7 / 90, 13 / 90, 70 / 90])
    assert np.allclose(selectit.model_weights([1, 3], [7, 13]), [0.25, 0.75])


def test_a_prompt_file_too_short_for_k_is_an_error(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("Rate it 1-5.\n\nScore it from 1 to 5.\n")
    assert selectit.load_prompts(str(path), 2) == ["Rate it 1-5.", "Score it from 1 to 5."]
    with pytest.raises(ValueError, match="has 2 prompts; k = 3"):
        selectit.load_prompts(str(path), 3)
