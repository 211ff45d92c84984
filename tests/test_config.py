from pathlib import Path

import pytest
import yaml

from pipelines import config
from tests.conftest import REPO


def _load(tmp_path, document):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    return config.load(path)


BASE = {"name": "t", "run_dir": "/tmp/r", "ingest": {"sources": [{"kind": "mathematics", "rows": 10}]}}


def test_every_shipped_config_is_valid():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        assert config.load(path).name


def test_defaults(tmp_path):
    loaded = _load(tmp_path, BASE)
    source = loaded.ingest.sources[0]
    assert (source.name, source.seed, source.split, loaded.ray.address) == ("mathematics", 0, "train", None)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 10, "colour": 1}]}},
            "ingest.sources[0].colour: unknown key; allowed here: kind, name, rows",
        ),
        (
            {"ingest": {"sources": [{"kind": "files", "name": "a", "paths": ["x"], "format": "csv"}]}},
            "ingest.sources[0].format: Input should be 'auto', 'openai'",
        ),
        (
            {"ingest": {"sources": [{"kind": "file", "name": "a"}]}},
            "ingest.sources[0].kind: 'file' is not allowed; allowed: 'files', 'mathematics'",
        ),
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 1, "modules": ["nope"]}]}},
            "unknown modules ['nope']; allowed: algebra__linear_1d",
        ),
        (
            {"ingest": {"sources": [{"kind": "mathematics", "rows": 1}, {"kind": "mathematics", "rows": 2}]}},
            "source names must be unique; repeated: ['mathematics']",
        ),
        ({"rayy": {}}, "rayy: unknown key; allowed here: name, run_dir, ray, ingest, models, score, select, train"),
        ({"name": None}, "name: Input should be a valid string"),
        (
            {"models": {"tiny": {"build": {"vocab_sise": 1}}}},
            "models.tiny.build.vocab_sise: unknown key; allowed here: vocab_size, hidden_size",
        ),
        ({"models": {"tiny": {"path": "x", "build": {}}}}, "models.tiny: Value error, give exactly one of"),
        (
            {"score": {"model_loss": {"model": "m", "dtype": "fp8"}}},
            "score.model_loss.dtype: Input should be 'auto', 'float32', 'bfloat16' or 'float16'",
        ),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(tmp_path, change, message):
    with pytest.raises(config.ConfigError) as error:
        _load(tmp_path, {**BASE, **change})
    assert str(tmp_path / "c.yaml") in str(error.value)
    assert message in str(error.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(config.ConfigError, match="no such config file"):
        config.load(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(config.ConfigError, match="not valid YAML"):
        config.load(tmp_path / "bad.yaml")


def test_run_dir_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    assert config.load(path, run_dir="s3://bucket/run").run_dir == "s3://bucket/run"
    assert config.load(path, run_dir="runs/x").run_dir == str(Path.cwd() / "runs" / "x")
