"""Files and config values that could run code: a crafted train_state/optimizer.pt, and a
`select_checkpoint.validation` naming any importable function (issue 26, items 5 and 6).

Real files, real torch and real config loading; no Ray (these are the functions the train loop
and the config loader call).
"""

from __future__ import annotations

import os
import textwrap

import pytest
import torch
import yaml

from pipelines import config as config_module
from pipelines.models import small
from pipelines.train import checkpoints, modeling, validate

TEXTS = ["What is 12 + 30? 12 + 30 = 42. The answer is 42."] * 20 + ["Name a prime above 10. 11 is prime."] * 20


class RunsAShellCommand:
    """Unpickled in full, this object is `os.system(command)`: what a planted file can hold."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_planted_optimizer_file_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    state_dir = tmp_path / "checkpoint" / checkpoints.STATE_DIR
    state_dir.mkdir(parents=True)
    planted = {"optimizer": RunsAShellCommand(f"touch {marker}"), "scheduler": {}}
    torch.save(planted, state_dir / "optimizer.pt")

    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.read_optimizer(str(tmp_path / "checkpoint"))

    assert not marker.exists()
    message = str(refused.value)
    assert str(state_dir / "optimizer.pt") in message and "refusing to unpickle" in message
    assert "posix.system" in message  # names what it refused, in one line
    assert "\n" not in message


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    spec = small.SmallModelSpec(vocab_size=300, hidden_size=32, intermediate_size=64)
    return str(small.build(TEXTS, tmp_path_factory.mktemp("base"), spec))


SETTINGS = {"fsdp": False, "precision": "fp32", "lora": None, "gradient_checkpointing": False}
SETTINGS |= {"lr": 1e-2, "weight_decay": 0.1, "warmup_ratio": 0.5}


def _trained_step(base: str):
    """The loop's model, AdamW and cosine schedule after two real steps."""
    torch.manual_seed(0)
    tokenizer, model = modeling.load(base, SETTINGS, False, None)
    optimizer, schedule = modeling.optimizer_and_schedule(model.train(), SETTINGS, 10)
    input_ids = torch.tensor([tokenizer("What is 12 + 30? 42.")["input_ids"]])
    for _ in range(2):
        model(input_ids=input_ids, labels=input_ids).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return tokenizer, model, optimizer, schedule


def test_the_states_the_loop_saves_load_back_weights_only(base, tmp_path):
    tokenizer, model, optimizer, schedule = _trained_step(base)
    _, optimizer_state = modeling.full_states(model, optimizer, SETTINGS, rank=0)
    folder = str(tmp_path / "checkpoint")
    checkpoints.write(folder, model, tokenizer, None, optimizer_state, schedule.state_dict(), {"step": 2})

    saved = checkpoints.read_optimizer(folder)

    _, restored_model = modeling.load(base, SETTINGS, False, folder)
    restored_optimizer, restored_schedule = modeling.optimizer_and_schedule(restored_model.train(), SETTINGS, 10)
    modeling.restore_optimizer(restored_model, restored_optimizer, saved["optimizer"])
    restored_schedule.load_state_dict(saved["scheduler"])
    assert restored_schedule.get_last_lr() == schedule.get_last_lr()
    assert restored_schedule.last_epoch == schedule.last_epoch == 2
    restored_moments = list(restored_optimizer.state.values())
    original_moments = list(optimizer.state.values())
    assert len(restored_moments) == len(original_moments) > 0
    for restored, original in zip(restored_moments, original_moments, strict=True):
        assert torch.equal(restored["exp_avg"], original["exp_avg"])
        assert torch.equal(restored["exp_avg_sq"], original["exp_avg_sq"])
        assert torch.equal(torch.as_tensor(restored["step"]), torch.as_tensor(original["step"]))


def _config(tmp_path, reference: str, **train) -> str:
    arm = {"model": "m", "data": "cft", "select_checkpoint": {"validation": reference, "metric": "acc", "mode": "max"}}
    document = {
        "name": "fences",
        "run_dir": str(tmp_path / "run"),
        "ingest": {"sources": [{"kind": "mathematics", "rows": 5}]},
        "train": {"arms": {"a": arm}, **train},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return str(path)


def test_a_validation_callable_outside_the_project_is_refused_naming_the_key(tmp_path):
    with pytest.raises(config_module.ConfigError) as refused:
        config_module.load(_config(tmp_path, "pydoc:pipepager"))
    message = str(refused.value)
    assert "train: Value error, arms.a.select_checkpoint.validation: 'pydoc:pipepager' is outside" in message
    assert "train.allow_validation_modules" in message


@pytest.mark.parametrize(
    "reference", ["pipelines.train.validate:held_out_loss\n", "pipelines.train.validate", "pipelines..x:f", "a:b:c"]
)
def test_a_validation_that_is_not_one_module_and_function_is_refused_naming_the_key(tmp_path, reference):
    with pytest.raises(config_module.ConfigError) as refused:
        config_module.load(_config(tmp_path, reference))
    assert "arms.a.select_checkpoint.validation:" in str(refused.value)
    assert 'is not "package.module:function"' in str(refused.value)


def test_the_projects_own_validation_functions_need_no_allow_list(tmp_path):
    loaded = config_module.load(_config(tmp_path, "pipelines.train.validate:held_out_loss"))
    reference = loaded.train.arms["a"].select_checkpoint.validation
    assert validate.import_callable(reference) is validate.held_out_loss


def test_a_module_listed_in_the_config_is_allowed(tmp_path, monkeypatch):
    package = tmp_path / "site" / "mymetrics"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "accuracy.py").write_text(
        textwrap.dedent(
            """
            def score(checkpoint, **kwargs):
                return {"acc": 1.0}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    config_path = _config(tmp_path, "mymetrics.accuracy:score", allow_validation_modules=["mymetrics"])

    loaded = config_module.load(config_path)

    function = validate.import_callable(loaded.train.arms["a"].select_checkpoint.validation)
    assert function(None) == {"acc": 1.0}


def test_the_standard_library_cannot_be_allowed(tmp_path):
    with pytest.raises(config_module.ConfigError) as refused:
        config_module.load(_config(tmp_path, "pydoc:pipepager", allow_validation_modules=["pydoc"]))
    assert "train.allow_validation_modules" in str(refused.value)
    assert "'pydoc' is in Python's standard library" in str(refused.value)


@pytest.mark.parametrize(
    "reference",
    [
        "pipelines.train.checkpoints:contextmanager",
        "pipelines.train.checkpoints:json",
        "pipelines.train.validate:importlib",
    ],
)
def test_a_name_a_project_module_only_imports_is_not_a_validation_function(reference):
    with pytest.raises(ValueError, match="is not a function defined in"):
        validate.import_callable(reference)


def test_an_export_to_an_object_store_leaves_no_temporary_copy_even_when_it_fails(tmp_path, monkeypatch):
    """checkpoints.export stages an object-store export in a temporary folder: a model's copy
    that must go whether the upload succeeds or fails (memory:// is fsspec's in-process store)."""
    import tempfile

    from pipelines import storage, uris

    checkpoint = tmp_path / "checkpoint"
    (checkpoint / checkpoints.STATE_DIR).mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / checkpoints.STATE_DIR / "state.json").write_text("{}")
    staging_root = tmp_path / "tmp"
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))

    checkpoints.export(str(checkpoint), "memory://bucket/export-test/models/a", "unused", False)
    assert storage.read_json("memory://bucket/export-test/models/a/config.json") == {}
    assert not storage.exists(f"memory://bucket/export-test/models/a/{checkpoints.STATE_DIR}")
    assert list(staging_root.iterdir()) == []

    with pytest.raises(uris.CredentialsInLocation):  # the upload fails after the copy is staged
        checkpoints.export(str(checkpoint), "memory://KEY:SECRET@bucket/models/a", "unused", False)
    assert list(staging_root.iterdir()) == []
