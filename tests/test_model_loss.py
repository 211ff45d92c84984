"""model_loss against a plain batch-of-one HF forward with masked labels, on a tiny Qwen2."""

from __future__ import annotations

import pytest
import torch

from pipelines.models import small
from pipelines.score import model_loss, spans
from pipelines.score.render import split_last_response
from tests.conftest import cpu_model_loss_settings

MARKER = "Assistant: "
MAX_LENGTH = 64
ROWS = [
    [("user", "What is 12 + 30?"), ("assistant", "12 + 30 = 42. The answer is 42.")],
    [("user", "Say nothing."), ("assistant", "")],  # no response tokens: later rows keep their own losses
    [("system", "Be brief."), ("user", "Name a prime above 10."), ("assistant", "11")],
    [("user", "Q1?"), ("assistant", "A1."), ("user", "And 7 * 6?"), ("assistant", "7 * 6 = 42")],
    [("user", "A question with no answer yet?")],
    [("user", "Count: " + " ".join(str(i) for i in range(60))), ("assistant", "That is sixty numbers in a row.")],
    [("user", "Short."), ("assistant", " ".join(f"step {i} is done" for i in range(30)))],
    [("user", "Trailing spaces and café ünïcödé"), ("assistant", "Ça va, merci; 3.5 + 1.5 = 5")],
]
TEXTS = [" ".join(c for _, c in row) for row in ROWS] * 20 + ["The answer is 42. What is the sum?"] * 20


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return small.build(TEXTS, tmp_path_factory.mktemp("tiny"), small.SmallModelSpec(vocab_size=400))


@pytest.fixture(scope="module")
def tiny(tiny_folder):
    settings = cpu_model_loss_settings(
        response_marker=MARKER, max_length=MAX_LENGTH, batch_size=3, max_batch_tokens=100
    )
    return model_loss.ModelLossActor(str(tiny_folder), False, settings)


def reference_loss(tokenizer, model, text: str, char_start: int, char_stop: int, special: bool, max_length=None):
    """Batch of one: labels are the ids at response positions, -100 elsewhere; HF shifts.

    The response's tokens are those overlapping its characters (its end-of-turn token is not).
    Returns (loss or None when no response token fits, whether a response token was cut).
    """
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=special)
    offsets = encoded["offset_mapping"]
    response = [i for i, (a, b) in enumerate(offsets) if b > a and b > char_start and a < char_stop]
    max_length = max_length or MAX_LENGTH
    ids = encoded["input_ids"][:max_length]
    labels = [token if i in response else -100 for i, token in enumerate(ids)]
    cut = response[-1] >= max_length
    if all(label == -100 for label in labels[1:]):
        return None, cut
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item(), cut


def reference_row(actor, turns):
    tokenizer, model = actor.tokenizer, actor.model
    prompt, response = split_last_response(turns)
    messages = [{"role": r, "content": c} for r, c in turns]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    start = len(tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True))
    assert full.startswith(response, start)
    given, given_cut = reference_loss(tokenizer, model, full, start, start + len(response), special=False)
    text = MARKER + response
    alone, alone_cut = reference_loss(tokenizer, model, text, len(MARKER), len(text), special=True)
    return given, alone, given_cut or alone_cut


def test_every_row_matches_the_batch_of_one_reference(tiny):
    results = tiny.score(
        [[{"role": r, "content": c} for r, c in row] for row in ROWS], [str(i) for i in range(len(ROWS))]
    )
    assert any(r["truncated"] for r in results) and not all(r["truncated"] for r in results)
    assert any(r["loss_given_prompt"] is None and r["n_response_tokens"] for r in results)  # prompt fills it
    for row, result in zip(ROWS, results, strict=True):
        if row[-1][0] != "assistant":
            assert result["loss_given_prompt"] is None and result["n_response_tokens"] == 0
            assert result["n_prompt_tokens"] > 0
            continue
        if not row[-1][1]:
            assert result["n_response_tokens"] == 0 and not result["truncated"]
            assert result["loss_given_prompt"] is None and result["loss_alone"] is None and result["ifd"] is None
            continue
        given, alone, cut = reference_row(tiny, row)
        assert result["truncated"] == cut
        assert result["loss_alone"] == pytest.approx(alone, abs=1e-4)
        if given is None:
            assert result["loss_given_prompt"] is None  # the prompt alone fills max_length
        else:
            assert result["loss_given_prompt"] == pytest.approx(given, abs=1e-4)
        if result["truncated"]:
            assert result["ifd"] is None
        else:
            assert result["ifd"] == pytest.approx(given / alone, rel=1e-4)


def test_counts_come_from_one_tokenisation(tiny):
    turns = ROWS[2]  # the answer "11"
    span = spans.with_prompt(tiny.tokenizer, turns, use_chat_template=True)
    (result,) = tiny.score([[{"role": r, "content": c} for r, c in turns]], ["x"])
    assert (result["n_prompt_tokens"], result["n_response_tokens"]) == (span.start, span.stop - span.start)
    decoded = tiny.tokenizer.decode(span.ids[span.start : span.stop])
    assert decoded == "11"


def test_a_token_merged_across_the_boundary_belongs_to_the_response(tiny):
    """Re-tokenising the prefix would put the boundary elsewhere; offsets do not."""
    span = spans.alone(tiny.tokenizer, "42", "The answer is ")
    text = "The answer is 42"
    encoded = tiny.tokenizer(text, return_offsets_mapping=True)
    first = encoded["offset_mapping"][span.start]
    assert first[1] > len("The answer is ") and encoded["input_ids"] == span.ids


def reference_prefix_loss(tokenizer, model, text: str, char_start: int, special: bool):
    """The IFD reference's count (Cherry_LLM): -100 on as many tokens as text[:char_start]
    has tokenised alone, the rest of the sequence scored."""
    ids = tokenizer(text, add_special_tokens=special)["input_ids"][:MAX_LENGTH]
    start = len(tokenizer(text[:char_start], add_special_tokens=special)["input_ids"])
    labels = [-100] * start + ids[start:]
    if all(label == -100 for label in labels[1:]):
        return None
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()


def test_response_tokens_prefix_counts_as_the_reference_does(tiny, tiny_folder):
    settings = cpu_model_loss_settings(
        response_marker=MARKER, max_length=MAX_LENGTH, batch_size=3, max_batch_tokens=100, response_tokens="prefix"
    )
    actor = model_loss.ModelLossActor(str(tiny_folder), False, settings)
    tokenizer, model = actor.tokenizer, actor.model
    rows = [row for row in ROWS if row[-1][0] == "assistant" and row[-1][1]]
    results = actor.score(
        [[{"role": r, "content": c} for r, c in row] for row in rows], [str(i) for i in range(len(rows))]
    )
    for turns, result in zip(rows, results, strict=True):
        messages = [{"role": r, "content": c} for r, c in turns]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        start = len(tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True))
        given = reference_prefix_loss(tokenizer, model, full, start, special=False)
        alone = reference_prefix_loss(tokenizer, model, MARKER + turns[-1][1], len(MARKER), special=True)
        assert result["loss_given_prompt"] == pytest.approx(given, abs=1e-5)
        assert result["loss_alone"] == pytest.approx(alone, abs=1e-5)
    # where one token spans the boundary (" sum" holds the marker's last space), the reference's
    # count skips it: the response's first token goes unscored
    located = spans.text_alone("sum", "The answer is ")
    overlap, prefix = (spans.token_spans(tokenizer, [located], True, count=c)[0] for c in ("overlap", "prefix"))
    assert tokenizer.convert_ids_to_tokens(overlap.ids[overlap.start : overlap.stop]) == ["Ġsum"]
    assert prefix.start == overlap.start + 1 == prefix.stop  # nothing left to score


def test_padding_and_batching_do_not_change_the_numbers(tiny, monkeypatch):
    messages = [[{"role": r, "content": c} for r, c in row] for row in ROWS]
    together = tiny.score(messages, [str(i) for i in range(len(ROWS))])
    monkeypatch.setattr(model_loss, "CE_POSITIONS", 7)  # cross-entropy over a few positions at a time
    one_by_one = [tiny.score([m], [str(i)])[0] for i, m in enumerate(messages)]
    for a, b in zip(together, one_by_one, strict=True):
        for key in ("loss_given_prompt", "loss_alone"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], abs=1e-5)


def test_a_sample_gets_the_same_losses_and_the_other_rows_only_token_counts(tiny):
    from pipelines.score import sampling

    messages = [[{"role": r, "content": c} for r, c in row] for row in ROWS]
    ids = [f"row-{i}" for i in range(len(ROWS))]
    sampled_actor = model_loss.ModelLossActor.__new__(model_loss.ModelLossActor)
    sampled_actor.__dict__.update(tiny.__dict__, settings={**tiny.settings, "sample_fraction": 0.5, "sample_seed": 3})
    everything, sample = tiny.score(messages, ids), sampled_actor.score(messages, ids)
    drawn = [sampling.in_sample(i, 0.5, 3) for i in ids]
    assert any(drawn) and not all(drawn)
    for full, part, in_sample in zip(everything, sample, drawn, strict=True):
        assert (part["n_prompt_tokens"], part["n_response_tokens"], part["truncated"]) == (
            full["n_prompt_tokens"],
            full["n_response_tokens"],
            full["truncated"],
        )
        for key in ("loss_given_prompt", "loss_alone", "ifd"):
            if not in_sample or full[key] is None:
                assert part[key] is None, key
            else:
                assert part[key] == pytest.approx(full[key], abs=1e-5), key


@pytest.mark.ray
@pytest.mark.slow
def test_the_vllm_engine_gives_the_transformers_losses(ray_local, tiny, tiny_folder):
    """Same tokenisation and scored positions; vLLM's prompt logprobs for the forward passes
    (in a Ray actor, as the scorer runs it: vLLM's CPU build pins its process's threads)."""
    import ray

    settings = {**tiny.settings, "engine": "vllm", "cpu_kv_cache_gib": 1}
    actor = ray.remote(num_cpus=1)(model_loss.ModelLossActor).remote(str(tiny_folder), False, settings)
    messages = [[{"role": r, "content": c} for r, c in row] for row in ROWS]
    ids = [str(i) for i in range(len(ROWS))]
    try:
        through_vllm = ray.get(actor.score.remote(messages, ids), timeout=600)
    finally:
        ray.kill(actor)
    for expected, got in zip(tiny.score(messages, ids), through_vllm, strict=True):
        assert {k: got[k] for k in ("n_prompt_tokens", "n_response_tokens", "truncated")} == {
            k: expected[k] for k in ("n_prompt_tokens", "n_response_tokens", "truncated")
        }
        for key in ("loss_given_prompt", "loss_alone", "ifd"):
            if expected[key] is None:
                assert got[key] is None, key
            else:
                assert got[key] == pytest.approx(expected[key], abs=1e-4), key


def test_logits_at_scored_positions_only_give_the_model_logits_losses(tiny):
    """The output head applied apart, at scored positions only, gives the losses the model's
    own logits give (its logits_to_keep window): the same numbers, without the window."""
    assert tiny.apart is not None  # Qwen2's logits are its head on the base model's output
    messages = [[{"role": r, "content": c} for r, c in row] for row in ROWS]
    ids = [str(i) for i in range(len(ROWS))]
    apart = tiny.score(messages, ids)
    whole_actor = model_loss.ModelLossActor.__new__(model_loss.ModelLossActor)
    whole_actor.__dict__.update(tiny.__dict__, apart=None)
    for a, b in zip(apart, whole_actor.score(messages, ids), strict=True):
        for key in ("loss_given_prompt", "loss_alone", "ifd"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                assert a[key] == pytest.approx(b[key], abs=1e-6)


def test_a_model_that_caps_its_logits_keeps_its_own_forward():
    """Gemma2 soft-caps the head's logits: the head applied apart would give other losses."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    config = Gemma2Config(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        final_logit_softcapping=0.5,
    )
    torch.manual_seed(0)
    model = Gemma2ForCausalLM(config).eval()
    assert model_loss.head_apart(model) is None
    model.config.final_logit_softcapping = None
    assert model_loss.head_apart(model) is not None
