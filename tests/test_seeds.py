"""Seeds and the baseline in the config: an arm with `seeds` becomes one run a seed, each its
own arm for the train and evaluate stages; `evaluate.baseline` must name an evaluated arm."""

from __future__ import annotations

import pytest
import yaml

from pipelines import config as config_module
from pipelines import experiment
from pipelines.train.settings import TrainConfig, arm_of, resolve, seed_of

ARM = {"model": "tiny", "data": "selection:random", "preset": "none"}


def write(tmp_path, **sections) -> str:
    document = {
        "name": "seeds",
        "run_dir": str(tmp_path / "run"),
        "ingest": {"sources": [{"kind": "mathematics", "name": "m", "rows": 10}]},
        "models": {"tiny": {"build": {"vocab_size": 300, "train_rows": 10}}},
        "select": {"random": {"method": "random", "budget": 5}},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def test_an_arm_with_seeds_is_one_run_a_seed_named_arm_at_s_seed(tmp_path):
    arms = {"sft_random": {**ARM, "seeds": [0, 1]}, "cft": {**ARM, "data": "cft"}}
    loaded = config_module.load(write(tmp_path, train={"arms": arms}))
    runs = loaded.train.arms
    assert list(runs) == ["sft_random@s0", "sft_random@s1", "cft"]
    assert [runs[name].seed for name in runs] == [0, 1, 0]
    assert resolve(runs["sft_random@s1"])["seed"] == 1 and "seeds" not in resolve(runs["sft_random@s1"])
    evaluated = experiment.evaluation_arms(loaded)  # the evaluate stage sees each seed's model
    assert list(evaluated) == ["base-tiny", "sft_random@s0", "sft_random@s1", "cft"]
    assert evaluated["sft_random@s1"].endswith("/models/sft_random@s1")
    again = TrainConfig.model_validate(loaded.train.model_dump(mode="json"))  # re-validation keeps the runs
    assert list(again.arms) == list(runs)
    assert (arm_of("sft_random@s1"), seed_of("sft_random@s1"), arm_of("cft"), seed_of("cft")) == (
        "sft_random",
        1,
        "cft",
        None,
    )


def test_an_arm_without_seeds_keeps_its_identity():
    """`seeds` is not part of a run's settings, so adding the field retrains nothing."""
    plain = TrainConfig.model_validate({"arms": {"a": ARM}}).arms["a"]
    assert "seeds" not in resolve(plain) and resolve(plain)["seed"] == 0


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({**ARM, "seeds": [0, 0]}, "seeds must be distinct; repeated: [0]"),
        ({**ARM, "seeds": []}, "at least 1 item"),
        ({**ARM, "seeds": [-1]}, "seeds must be >= 0"),
        ({**ARM, "seeds": [0, 1], "seed": 3}, "give `seed` or `seeds`, not both"),
    ],
)
def test_bad_seeds_are_clear_errors(tmp_path, arm, message):
    with pytest.raises(config_module.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_module.load(write(tmp_path, train={"arms": {"a": arm}}))


def test_a_run_cannot_start_from_an_arm_with_seeds(tmp_path):
    arms = {"a": {**ARM, "seeds": [0, 1]}, "b": {**ARM, "model": "a"}}
    with pytest.raises(config_module.ConfigError, match="'a' has seeds; name one run, e.g. a@s0"):
        config_module.load(write(tmp_path, train={"arms": arms}))


def test_the_baseline_must_be_an_evaluated_arm(tmp_path):
    evaluate = {"benchmarks": [{"kind": "mathematics", "rows": 5}], "engine": {"kind": "vllm"}}
    train = {"arms": {"sft_random": {**ARM, "seeds": [0, 1]}}}
    loaded = config_module.load(write(tmp_path, train=train, evaluate={**evaluate, "baseline": "sft_random"}))
    assert loaded.evaluate.baseline == "sft_random" and loaded.evaluate.alpha == 0.05
    assert loaded.evaluate.resamples == 10_000
    assert config_module.load(write(tmp_path, train=train, evaluate={**evaluate, "baseline": "base-tiny"}))
    with pytest.raises(config_module.ConfigError, match=r"'sft_top' is not an evaluated arm; allowed: \['base-tiny'"):
        config_module.load(write(tmp_path, train=train, evaluate={**evaluate, "baseline": "sft_top"}))
    with pytest.raises(config_module.ConfigError, match="evaluate.alpha"):
        config_module.load(write(tmp_path, train=train, evaluate={**evaluate, "alpha": 1.5}))


def test_the_evaluate_stage_takes_seeded_run_names():
    from pipelines.evaluate.stage import _check_arms

    _check_arms({"sft_random@s0": "x", "base-tiny": "y"})
    with pytest.raises(ValueError, match=r"arm names must be .* with @s<seed> for a seed.s run; got \[.sft@x.\]"):
        _check_arms({"sft@x": "x"})


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_each_seed_trains_its_own_model_through_ray_train(tmp_path, ray_local):
    """Two short runs of one arm on one worker: both land under their own names, each with
    its seed in its settings, trained in a different order (so different losses)."""
    import pyarrow.parquet as pq

    from pipelines import runs, views
    from pipelines.train import stage as train_stage
    from tests.test_train_stage import make_run, write_selection

    config = make_run(tmp_path / "run", pool_rows=120)
    write_selection(config.run_dir, "random", 48)
    arm = {"model": "tiny", "data": "selection:random", "lr": 1e-3, "global_batch": 8, "micro_batch": 4,
           "max_length": 96, "max_steps": 4, "num_workers": 1, "cpus_per_worker": 1, "torch_threads": 1,
           "seeds": [0, 1]}  # fmt: skip
    manifests = train_stage.run(config, TrainConfig.model_validate({"arms": {"sft": arm}}))
    assert sorted(manifests) == ["models/sft@s0", "models/sft@s1"]
    assert [manifests[f"models/sft@s{seed}"]["settings"]["seed"] for seed in (0, 1)] == [0, 1]
    assert runs.read_manifest(config.run_dir, "models/sft@s1")["steps"] == 4
    losses = [pq.read_table(f"{config.run_dir}/train_metrics/sft@s{seed}")["loss"].to_pylist() for seed in (0, 1)]
    assert len(losses[0]) == len(losses[1]) == 4 and losses[0] != losses[1]
    assert {"train_metrics_sft@s0", "train_metrics_sft@s1"} <= set(views.views(views.connect(config.run_dir)))
