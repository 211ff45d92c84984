"""LESS gradient features on a tiny Qwen2 with a LoRA checkpoint written as the trainer writes
it (adapter + train_state/optimizer.pt after real AdamW steps): each feature equals the
autograd gradient (Adam-preconditioned for pool rows) projected by the same matrix, and two
Ray actors derive identical features from the seed."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from pipelines.models import small
from pipelines.score import projection
from pipelines.score.gradients import GradientFeaturizer
from pipelines.train import checkpoints, masking, modeling

LORA = {"r": 4, "alpha": 8, "dropout": 0.1, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
ROWS = [
    [("user", "What is 12 + 30?"), ("assistant", "12 + 30 = 42. The answer is 42.")],
    [("user", "Q1?"), ("assistant", "A1."), ("user", "And 7 * 6?"), ("assistant", "7 * 6 = 42")],
    [("system", "Be brief."), ("user", "Name a prime above 10."), ("assistant", "11")],
]
TEXTS = [" ".join(c for _, c in row) for row in ROWS] * 30
SETTINGS = {
    "device": "cpu",
    "num_gpus": 0,
    "num_cpus": 1,
    "threads": 1,
    "template": "auto",
    "max_length": 64,
    "dim": 96,
    "seed": 11,
    "batch_size": 4,
    "rows_per_chunk": 1000,
    "cache_mb": 64,
    "sample_fraction": 1.0,
    "sample_seed": 0,
}


def messages(row):
    return [{"role": r, "content": c} for r, c in row]


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A base model and two LoRA checkpoints after one and two AdamW steps (dropout on)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("less")
    base = small.build(TEXTS, root / "base", small.SmallModelSpec(vocab_size=400))
    tokenizer, model = AutoTokenizer.from_pretrained(base), AutoModelForCausalLM.from_pretrained(base)
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=LORA["targets"], task_type="CAUSAL_LM")
    model = get_peft_model(model, config).train()
    settings = {"weight_decay": 0.0, "lr": 1e-2, "warmup_ratio": 0.0, "fsdp": False}
    optimizer, schedule = modeling.optimizer_and_schedule(model, settings, total_steps=4)
    folders = []
    for step in (1, 2):
        encoded = masking.encode(tokenizer, ROWS[step - 1], True, 64)
        ids, labels = torch.tensor([encoded.input_ids]), torch.tensor([encoded.labels])
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        _, optimizer_state = modeling.full_states(model, optimizer, settings, rank=0)
        folder = root / f"step-{step}"
        checkpoints.write(str(folder), model, tokenizer, None, optimizer_state, schedule.state_dict(), {"step": step})
        folders.append(str(folder))
    return str(base), folders


def direct_feature(base: str, folder: str, row, adam: bool) -> np.ndarray:
    """HF's own shifted mean loss, autograd, METHODS.md's m / sqrt(v + eps), the whole matrix at once."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder, is_trainable=True).eval()
    encoded = masking.encode(tokenizer, row, True, SETTINGS["max_length"])
    loss = model(input_ids=torch.tensor([encoded.input_ids]), labels=torch.tensor([encoded.labels])).loss
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, [p for _, p in named])]).double()
    if adam:
        saved = checkpoints.read_optimizer(folder)["optimizer"]
        state = saved["state"]
        m = torch.cat([state[n]["exp_avg"].reshape(-1) for n, _ in named]).double()
        v = torch.cat([state[n]["exp_avg_sq"].reshape(-1) for n, _ in named]).double()
        m_next = 0.9 * m + 0.1 * gradient  # AdamW's default betas and eps, as the warm-up's optimizer
        v_next = 0.999 * v + 0.001 * gradient**2
        gradient = m_next / torch.sqrt(v_next + 1e-8)
    matrix = projection.rademacher_rows(SETTINGS["seed"], 0, gradient.numel(), SETTINGS["dim"]).double().numpy()
    projected = gradient.numpy() @ matrix / math.sqrt(SETTINGS["dim"])
    return projected / np.linalg.norm(projected)


def test_features_equal_the_autograd_gradient_projected_by_the_same_matrix(warm):
    base, folders = warm
    featurizer = GradientFeaturizer(base, False, folders, SETTINGS)
    examples = [featurizer.encode(messages(row)) for row in ROWS]
    assert featurizer.n_features == 2 * (4 * 128 + 128 * 4 + 2 * (4 * 128 + 64 * 4) + 4 * 128 + 128 * 4)
    for adam in (True, False):
        features = featurizer.features(examples, adam=adam)
        assert features.shape == (2, len(ROWS), SETTINGS["dim"])
        assert np.allclose(np.linalg.norm(features, axis=2), 1.0, atol=1e-5)
        for c, folder in enumerate(folders):
            for e, row in enumerate(ROWS):
                assert np.abs(features[c, e] - direct_feature(base, folder, row, adam)).max() < 1e-4
    assert not np.allclose(featurizer.features(examples[:1], adam=True), featurizer.features(examples[:1], adam=False))


def splitmix64(seed: int, word: int) -> int:
    """SplitMix64's output number `word`, in Python integers (exact, no wrapping to trust)."""
    mask = (1 << 64) - 1
    z = (seed + (word + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_the_matrix_is_the_documented_function_of_the_seed_not_of_the_chunks():
    assert splitmix64(1234567, 0) == 0x599ED017FB08FC85  # SplitMix64's published first output for this seed
    words = projection.splitmix64_words(1234567, 10**12, 300)  # far into the stream: the tensor arithmetic wraps
    assert [w & (2**64 - 1) for w in words.tolist()] == [splitmix64(1234567, 10**12 + i) for i in range(300)]
    whole = projection.rademacher_rows(5, 0, 300, 70).numpy()
    assert set(np.unique(whole)) == {-1.0, 1.0} and abs(whole.mean()) < 0.02
    # entry k = i * dim + j is bit k % 64 of word k // 64
    bits = np.array([(splitmix64(5, k // 64) >> (k % 64)) & 1 for k in range(300 * 70)])
    assert np.array_equal(whole.reshape(-1), np.where(bits == 1, 1.0, -1.0))
    for rows_per_chunk in (1, 7, 64, 299):
        chunks = [
            projection.rademacher_rows(5, s, min(rows_per_chunk, 300 - s), 70).numpy()
            for s in range(0, 300, rows_per_chunk)
        ]
        assert np.array_equal(np.vstack(chunks), whole)
    assert not np.array_equal(projection.rademacher_rows(6, 0, 300, 70).numpy(), whole)
    octets = projection.splitmix64_words(5, 0, 1000).view(torch.uint8)
    assert torch.equal(projection.unpack_torch(octets), projection.unpack_numpy(octets))  # a GPU's path, on CPU
    vectors = torch.randn(3, 300)
    for rows_per_chunk, cache in ((300, 2**30), (13, 0), (64, 10_000)):
        projector = projection.Projector(5, 300, 70, rows_per_chunk, cache)
        assert torch.allclose(projector.project(vectors), vectors @ torch.from_numpy(whole) / math.sqrt(70), atol=1e-5)


@pytest.mark.ray
def test_two_ray_actors_derive_identical_features(warm, ray_local):
    import sys

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    base, folders = warm

    @ray.remote(num_cpus=0.5)
    class Worker:
        def __init__(self):
            self.featurizer = GradientFeaturizer(base, False, folders, SETTINGS)

        def features(self, rows):
            examples = [self.featurizer.encode(messages(row)) for row in rows]
            return self.featurizer.features(examples, adam=True), os.getpid()

    first, second = Worker.remote(), Worker.remote()
    (a, pid_a), (b, pid_b) = ray.get([first.features.remote(ROWS), second.features.remote(ROWS)])
    assert pid_a != pid_b and np.array_equal(a, b)
    local = GradientFeaturizer(base, False, folders, SETTINGS)
    assert np.array_equal(a, local.features([local.encode(messages(row)) for row in ROWS], adam=True))


def test_a_target_file_is_read_in_any_ingest_format_and_a_bad_row_is_named(tmp_path):
    from pipelines.score import less_targets
    from pipelines.score.settings import LessTarget

    good = tmp_path / "gsm8k.jsonl"
    good.write_text(
        '{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\\n#### 5"}\n'
        '{"question": "What is 4 * 2?", "answer": "4 * 2 = 8\\n#### 8"}\n'
        '{"question": "And 9 - 1?", "answer": "9 - 1 = 8\\n#### 8"}\n'
    )
    rows = less_targets.read("gsm", LessTarget(path=str(good), rows=2), str(tmp_path))
    assert rows == [
        [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5\n#### 5"}],
        [{"role": "user", "content": "What is 4 * 2?"}, {"role": "assistant", "content": "4 * 2 = 8\n#### 8"}],
    ]
    assert less_targets.fingerprint(rows) != less_targets.fingerprint(rows[:1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "What is 2 + 3?", "answer": "5"}\n{"question": "Q?", "answer": 5}\n')
    with pytest.raises(less_targets.TargetError, match=r"bad.jsonl, row 2, field answer"):
        less_targets.read("bad", LessTarget(path=str(bad), format="gsm8k"), str(tmp_path))
    with pytest.raises(less_targets.TargetError, match="no JSON Lines"):
        less_targets.read("none", LessTarget(path=str(tmp_path / "absent.jsonl")), str(tmp_path))


def test_without_a_built_warm_up_the_scorer_stops_naming_the_config_block(tmp_path):
    """The LESS scorer reads the warm-up by path; the models stage builds it (issue 27)."""
    import yaml

    from pipelines import config as config_module
    from pipelines import failures
    from pipelines.models import less_checkpoints
    from pipelines.score import costly

    document = {
        "name": "less-unbuilt",
        "run_dir": str(tmp_path / "run"),
        "ingest": {"sources": [{"kind": "mathematics", "name": "math", "rows": 8}]},
        "models": {"tiny": {"build": {"vocab_size": 400}}},
        "score": {"less": {"model": "tiny", "targets": {"own": {"pool_source": "math"}}}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    config = config_module.load(tmp_path / "config.yaml")
    with pytest.raises(less_checkpoints.WarmupNotBuilt) as refused:
        costly.less_scorer(config, config.score.less)
    message = str(refused.value)
    assert f"{config.run_dir}/models/less_warmup" in message and "score.less.warmup" in message
    assert "the models stage builds it" in message and not (tmp_path / "run" / "models").exists()
    assert failures.explain(refused.value).user_error  # a user's error: exit 2, no traceback
