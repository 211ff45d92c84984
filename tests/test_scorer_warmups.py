"""The scorers' warm-ups (LESS's LoRA, a train.warmup model that score.model_loss names) are
built by the models stage, and only for a run that scores; the score stage reads them by path
and stops, naming the config block, when one is missing (issue 27).

Cheap on purpose: no pool is ingested, so a warm-up the models stage sets out to build stops at
its first step (the pool is not finished), which shows it was asked for; one it is not asked
for leaves no trace. The training itself is tested in test_less_stage.py and
test_train_variants.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines import config as config_module
from pipelines import experiment, failures
from pipelines.models import less_checkpoints, scorer_models, scorer_warmups
from pipelines.score import stage as score_stage

TINY = {"path": "models-not-needed/tiny"}  # never loaded: every refusal comes first
WARM = {"model": "tiny", "rows": 8, "max_steps": 2}


def load(tmp_path, score: dict, train: dict | None = None):
    document = {
        "name": "warmups",
        "run_dir": str(tmp_path / "run"),
        "ingest": {"sources": [{"kind": "mathematics", "name": "math", "rows": 8}]},
        "models": {"tiny": TINY},
        "score": score,
        **({"train": train} if train else {}),
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(document))
    return config_module.load(tmp_path / "config.yaml")


@pytest.fixture
def less(tmp_path):
    return load(tmp_path, {"less": {"model": "tiny", "targets": {"own": {"pool_source": "math"}}}})


@pytest.fixture
def ifd(tmp_path):
    return load(tmp_path, {"model_loss": {"model": "warm"}}, {"warmup": {"warm": WARM}})


@pytest.mark.parametrize("others", [["train"], ["critique"], ["evaluate"], ["train", "evaluate"]])
def test_a_run_that_does_not_score_builds_no_warm_up(less, ifd, others):
    for config in (less, ifd):
        assert experiment.run(config, ["models", *others]) == {}
        assert not (Path(config.run_dir) / "models").exists()
        assert not (Path(config.run_dir) / "_work").exists()


@pytest.mark.parametrize("stages", [["models", "score"], ["models"]])
def test_a_run_that_scores_or_builds_models_alone_builds_the_less_warm_up(less, stages):
    with pytest.raises(RuntimeError, match="less warm-up: the pool is not finished"):
        experiment.run(less, stages)


@pytest.mark.parametrize("stages", [["models", "score"], ["models"]])
def test_a_run_that_scores_builds_the_train_warmup_model_loss_names(ifd, stages):
    assert scorer_warmups.ifd_warmups(ifd) == ["warm"]
    with pytest.raises(RuntimeError, match="warmup warm: pool is not finished"):
        experiment.run(ifd, stages)


def test_a_train_warmup_no_scorer_names_is_left_to_its_own_users(tmp_path):
    config = load(tmp_path, {"model_loss": {"model": "tiny"}}, {"warmup": {"warm": WARM}})
    assert scorer_warmups.ifd_warmups(config) == []
    assert scorer_warmups.build(config) == {}
    assert scorer_models.resolve(config, "tiny", "score.model_loss.model").location.endswith("models-not-needed/tiny")


def test_the_score_stage_reads_a_missing_warm_up_model_as_a_users_error(ifd):
    with pytest.raises(less_checkpoints.WarmupNotBuilt) as refused:
        score_stage.BUILDERS["model_loss"](ifd, ifd.score.model_loss)
    message = str(refused.value)
    assert message.startswith("score.model_loss.model: 'warm' is the model of train.warmup.warm")
    assert f"not built in {ifd.run_dir}/models/warm" in message and "the models stage builds it" in message
    assert failures.explain(refused.value).user_error  # exit 2, no traceback
    assert not (Path(ifd.run_dir) / "models").exists()  # read only: nothing trained


def test_an_arm_a_scorer_names_must_be_trained_first(tmp_path):
    arm = {"model": "tiny", "data": "cft"}
    config = load(tmp_path, {"model_loss": {"model": "sft"}}, {"arms": {"sft": arm}})
    assert scorer_warmups.ifd_warmups(config) == []  # the train stage trains arms, not the models stage
    with pytest.raises(less_checkpoints.WarmupNotBuilt, match=r"train\.arms\.sft.*the train stage trains it"):
        scorer_models.resolve(config, "sft", "score.model_loss.model")
